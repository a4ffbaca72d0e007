package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyConfig(t *testing.T) {
	dir := t.TempDir()
	good := `{"version":1,"listen":"127.0.0.1:0",
	 "tls":{"certificate":"server.pem","key":"server.key","operatorCA":"/abs/operators.pem"},
	 "registry":"devices.json","roots":["ca/root.pem"],"crls":["sku-a.crl"],
	 "endorsements":"endorsements.json","ear":{"keyFile":"ear.key"},
	 "operationalCA":{"caDir":"ca","products":["sku-a"]},
	 "store":"verdicts.db","nonceKey":"nonce.key"}`
	path := filepath.Join(dir, "verify.json")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadVerifyConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.NonceLifetime != "" || c.MaxNonces != 0 {
		t.Fatalf("nonce settings: %+v", c)
	}
	if c.Roots[0] != filepath.Join(dir, "ca/root.pem") || c.CRLs[0] != filepath.Join(dir, "sku-a.crl") || c.TLS.OperatorCA != "/abs/operators.pem" ||
		c.OperationalCA.CADir != filepath.Join(dir, "ca") || c.EAR.KeyFile != filepath.Join(dir, "ear.key") || c.Store != filepath.Join(dir, "verdicts.db") {
		t.Fatalf("paths not resolved: %+v", c)
	}
	minimal := `{"version":1,"listen":":8444","tls":{"certificate":"s.pem","key":"s.key"},"registry":"d.json","roots":["r.pem"],
	 "endorsements":"e.json","ear":{"hsmKey":"pkcs11:token=verifier;object=ear?pin-source=file:/run/pin"},"store":"v.db","nonceKey":"n.key"}`
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := loadVerifyConfig(path); err != nil || c.OperationalCA != nil || c.TLS.OperatorCA != "" {
		t.Fatalf("minimal config: %v %+v", err, c)
	}
	for name, bad := range map[string]string{
		"version":          strings.Replace(good, `"version":1`, `"version":2`, 1),
		"listen":           strings.Replace(good, `"127.0.0.1:0"`, `"nowhere"`, 1),
		"no registry":      strings.Replace(good, `"devices.json"`, `""`, 1),
		"no roots":         strings.Replace(good, `["ca/root.pem"]`, `[]`, 1),
		"empty root":       strings.Replace(good, `["ca/root.pem"]`, `[""]`, 1),
		"empty CRL":        strings.Replace(good, `["sku-a.crl"]`, `[""]`, 1),
		"no endorsements":  strings.Replace(good, `"endorsements.json"`, `""`, 1),
		"no store":         strings.Replace(good, `"verdicts.db"`, `""`, 1),
		"no nonce key":     strings.Replace(good, `"nonce.key"`, `""`, 1),
		"no EAR key":       strings.Replace(good, `{"keyFile":"ear.key"}`, `{}`, 1),
		"two EAR keys":     strings.Replace(good, `{"keyFile":"ear.key"}`, `{"keyFile":"ear.key","hsmKey":"pkcs11:token=t;object=e"}`, 1),
		"bad EAR URI":      strings.Replace(good, `{"keyFile":"ear.key"}`, `{"hsmKey":"file:/x"}`, 1),
		"CA no products":   strings.Replace(good, `"products":["sku-a"]`, `"products":[]`, 1),
		"CA bad product":   strings.Replace(good, `"products":["sku-a"]`, `"products":["a/b"]`, 1),
		"unknown field":    strings.Replace(good, `"version":1`, `"version":1,"stations":[]`, 1),
		"trailing data":    good + `{}`,
		"not JSON":         `version: 1`,
		"short nonces":     strings.Replace(good, `"version":1`, `"version":1,"nonceLifetime":"1s"`, 1),
		"bad nonce life":   strings.Replace(good, `"version":1`, `"version":1,"nonceLifetime":"soon"`, 1),
		"negative nonces":  strings.Replace(good, `"version":1`, `"version":1,"maxNonces":-1`, 1),
		"unknown TLS item": strings.Replace(good, `"key":"server.key"`, `"key":"server.key","stationCA":"x"`, 1),
	} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadVerifyConfig(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReadEARKey(t *testing.T) {
	dir := t.TempDir()
	ecKey(t, filepath.Join(dir, "p256.key"))
	if k, err := readEARKey(filepath.Join(dir, "p256.key")); err != nil || k.Public().(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatal(k, err)
	}
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k384)
	writePEM(t, filepath.Join(dir, "p384.key"), "EC PRIVATE KEY", der)
	writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", []byte{1})
	os.WriteFile(filepath.Join(dir, "junk"), []byte("junk"), 0o600)
	for _, f := range []string{"p384.key", "cert.pem", "junk", "missing"} {
		if _, err := readEARKey(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s: accepted", f)
		}
	}
}

func TestServeVerifyHelp(t *testing.T) {
	c := newServeVerifyCommand(&globals{logLevel: "warn", logFormat: "text"})
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetArgs([]string{"--help"})
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"operationalCA": {"caDir": "ca", "products": ["sku-a"]}`, "POST /v1/attest", "SIGHUP"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	// Without --config: an error, not a panic.
	c = newServeVerifyCommand(&globals{logLevel: "warn", logFormat: "text"})
	c.SetArgs(nil)
	c.SetOut(&out)
	c.SetErr(&out)
	if err := c.Execute(); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("no --config: %v", err)
	}
}
