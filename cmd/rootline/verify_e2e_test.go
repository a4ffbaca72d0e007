package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/attest/api"
	"github.com/rootline/rootline/internal/testdep"
)

// TestServeVerifyCLI runs rootline serve verify from a configuration file
// (CA and EAR keys in SoftHSM2, the registry export of a provisioned chip,
// its firmware's endorsements, the CA's CRL) and rootline device agent
// --once against it.
func TestServeVerifyCLI(t *testing.T) {
	testdep.LookPath(t, "softhsm2-util")
	ctx := t.Context()
	w := t.TempDir()
	if err := os.MkdirAll(filepath.Join(w, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(w, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(w, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	t.Setenv("CA_PIN", "123456")
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "factory", "--pin", "123456", "--so-pin", "12345678").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	uri := func(o string) string { return "pkcs11:token=factory;object=" + o + "?pin-source=env:CA_PIN" }
	exe := func(args ...string) string {
		t.Helper()
		c := newRootCommand("test")
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		if err := run(t, ctx, c, args...); err != nil {
			t.Fatalf("rootline %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	caDir := filepath.Join(w, "ca")
	exe("ca", "init", "--out", caDir, "--generate", "--organization", "Rootline", "--product", "sku-a",
		"--hwtype", "1.3.6.1.4.1.32473.1.1", "--root-key", uri("root"), "--intermediate-key", uri("sku-a"))
	exe("ca", "crl", "--dir", caDir, "--out", filepath.Join(w, "sku-a.crl"))
	exe("hsm", "keygen", "--uri", uri("ear"), "--alg", "p256")

	// A chip booted with signed firmware, given its IDevID by the CA (as
	// the factory would), and the registry export of it.
	fw, err := newFactoryFirmware("sku-a")
	if err != nil {
		t.Fatal(err)
	}
	chip := filepath.Join(w, "chip")
	d, err := fw.bootChip(ctx, chip, nil)
	if err != nil {
		t.Fatal(err)
	}
	caCfg, err := loadCAConfig(caDir)
	if err != nil {
		t.Fatal(err)
	}
	kr := newKeyring(nil)
	local, err := openLocal(ctx, caDir, caCfg, kr, nil, "sku-a")
	if err != nil {
		t.Fatal(err)
	}
	chain, ueid, err := giveIDevID(ctx, d, local, "sku-a")
	kr.Close()
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	fws := map[string]*factoryFirmware{"sku-a": fw}
	if err := writeExportFile(filepath.Join(w, "devices.json"), []exportDevice{{UEID: ueid, Product: "sku-a", Chain: chain}}, fws); err != nil {
		t.Fatal(err)
	}
	refs, err := firmwareEndorsements(fws)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := refs.Marshal()
	if err := os.WriteFile(filepath.Join(w, "endorsements.json"), rb, 0o600); err != nil {
		t.Fatal(err)
	}

	// The server's TLS certificate and an operator's, each from a CA of
	// its own.
	tlsCA, tlsCAKey := testCA(t, w, "tls-ca")
	testLeaf(t, w, "verifier", tlsCA, tlsCAKey, x509.ExtKeyUsageServerAuth)
	opCA, opKey := testCA(t, w, "operators")
	testLeaf(t, w, "alice", opCA, opKey, x509.ExtKeyUsageClientAuth)
	if err := os.WriteFile(filepath.Join(w, "nonce.key"), []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w, "verify.json"), []byte(`{"version": 1, "listen": "127.0.0.1:0",
	 "tls": {"certificate": "verifier.pem", "key": "verifier.key", "operatorCA": "operators.pem"},
	 "registry": "devices.json", "roots": ["ca/root.pem"], "crls": ["sku-a.crl"],
	 "endorsements": "endorsements.json", "ear": {"hsmKey": "`+uri("ear")+`"},
	 "operationalCA": {"caDir": "ca", "products": ["sku-a"]},
	 "store": "verdicts.db", "nonceKey": "nonce.key", "nonceLifetime": "2m", "maxNonces": 65536}`), 0o600); err != nil {
		t.Fatal(err)
	}

	g := &globals{logLevel: "warn", logFormat: "text"}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var serveOut bytes.Buffer
	addrFile := filepath.Join(w, "addr")
	go func() {
		c := newServeVerifyCommand(g)
		c.SetOut(&serveOut)
		c.SetErr(&serveOut)
		done <- run(t, sctx, c, "--config", filepath.Join(w, "verify.json"), "--addr-file", addrFile)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve verify: %v\n%s", err, serveOut.String())
		}
	}()
	var addr string
	for deadline := time.Now().Add(20 * time.Second); ; {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			addr = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve verify exited: %v\n%s", err, serveOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("serve verify did not start")
		}
	}

	agent := func() (string, error) {
		f := &deviceFlags{globals: g}
		parent := &cobra.Command{Use: "device"}
		parent.PersistentFlags().StringVar(&f.state, "state", "", "")
		parent.AddCommand(newDeviceAgentCommand(f))
		var out bytes.Buffer
		parent.SetOut(&out)
		parent.SetErr(&out)
		err := run(t, ctx, parent, "agent", "--state", chip, "--verifier", "https://"+addr, "--ca", filepath.Join(w, "tls-ca.pem"), "--once")
		return out.String(), err
	}
	for i := range 2 {
		out, err := agent()
		if err != nil || !strings.Contains(out, "status: affirming") || !strings.Contains(out, "release: factory-1") {
			t.Fatalf("agent run %d: %v\n%s", i+1, err, out)
		}
	}

	// The EAR the agent stored verifies with the key set the verifier
	// publishes (go-jose, an independent JOSE implementation).
	serverCA, _ := readCertPool(filepath.Join(w, "tls-ca.pem"))
	opCert, err := tls.LoadX509KeyPair(filepath.Join(w, "alice.pem"), filepath.Join(w, "alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := api.Dial(&api.ClientConfig{URL: "https://" + addr, ServerCA: serverCA, Certificate: &opCert})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	jwks, err := c.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", jwks, err)
	}
	ear, err := os.ReadFile(filepath.Join(chip, agentEARFile))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := attest.ParseEAR(bytes.TrimSpace(ear), set.Keys[0].Key.(*ecdsa.PublicKey), time.Now(), time.Hour)
	if err != nil || claims.Submods[attest.EARSubmod].Status != attest.StatusAffirming {
		t.Fatalf("EAR: %+v, %v", claims, err)
	}

	// The operational certificate for the Alias key: 24 hours, chaining to
	// the factory root.
	pemChain, err := os.ReadFile(filepath.Join(chip, agentCertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemChain)
	if blk == nil {
		t.Fatal("operational.pem holds no certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.NotAfter.Sub(cert.NotBefore) > 25*time.Hour {
		t.Fatalf("operational certificate: %v", err)
	}

	// The verifier recorded both verdicts; operators can read them.
	page, err := c.Verdicts(ctx, ueid, 0, 10)
	if err != nil || len(page.Verdicts) != 2 || page.Verdicts[0].Status != attest.StatusAffirming {
		t.Fatalf("verdicts %+v, %v", page, err)
	}

	// The factory retires the device: a new export without it, SIGHUP, and
	// the verifier no longer knows it.
	if err := writeExportFile(filepath.Join(w, "devices.json"), nil, fws); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, err := agent()
		if isExit(err, 2) && strings.Contains(out, "unknown-device") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the export without the device and SIGHUP: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testCA(t *testing.T, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k := ecKey(t, filepath.Join(dir, name+".key"))
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	c, _ := x509.ParseCertificate(der)
	return c, k
}

func testLeaf(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, eku x509.ExtKeyUsage) {
	t.Helper()
	k := ecKey(t, filepath.Join(dir, name+".key"))
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{eku},
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, ca, k.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
}
