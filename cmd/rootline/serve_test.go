package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var goodRefs = `{"version":1,"products":{"sku-a":{
  "bootloader":{"digests":["` + hex32 + `"],"minSVN":1},
  "os":{"digests":["` + hex32 + `","` + hex48 + `"],"minSVN":2},
  "app":{"digests":["` + hex32 + `"],"minSVN":0}}}}`

var (
	hex32 = strings.Repeat("ab", 32)
	hex48 = strings.Repeat("cd", 48)
)

func TestParseReferenceValues(t *testing.T) {
	refs, err := parseReferenceValues([]byte(goodRefs))
	if err != nil {
		t.Fatal(err)
	}
	if os := refs["sku-a"]["os"]; os.MinSVN != 2 || len(os.Digests) != 2 || len(os.Digests[1]) != 48 {
		t.Fatalf("os reference %+v", os)
	}
	for name, bad := range map[string]string{
		"version":       strings.Replace(goodRefs, `"version":1`, `"version":2`, 1),
		"unknown field": strings.Replace(goodRefs, `"version":1`, `"version":1,"x":0`, 1),
		"unknown layer": strings.Replace(goodRefs, `"os"`, `"kernel"`, 1),
		"short digest":  strings.Replace(goodRefs, hex48, "abcd", 1),
		"not hex":       strings.Replace(goodRefs, hex48, strings.Repeat("zz", 32), 1),
		"no digest":     `{"version":1,"products":{"sku-a":{"os":{"digests":[]}}}}`,
		"no layer":      `{"version":1,"products":{"sku-a":{}}}`,
		"no product":    `{"version":1,"products":{}}`,
		"bad name":      `{"version":1,"products":{"a b":{"os":{"digests":["` + hex32 + `"]}}}}`,
		"trailing":      goodRefs + "{}",
	} {
		if _, err := parseReferenceValues([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseReferenceValues(f *testing.F) {
	f.Add([]byte(goodRefs))
	f.Add([]byte(`{"version":1,"products":{"sku-a":{}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := parseReferenceValues(b)
		if err != nil {
			return
		}
		for _, layers := range refs {
			for _, l := range layers {
				if len(l.Digests) == 0 {
					t.Fatal("a layer without digests")
				}
			}
		}
	})
}

func TestServeConfig(t *testing.T) {
	dir := t.TempDir()
	good := `{"version":1,"listen":"127.0.0.1:0",
	 "tls":{"certificate":"server.pem","key":"server.key","stationCA":"/abs/stations.pem"},
	 "registry":"registry.db","caDir":"ca","log":{"dir":"log","signingKey":"log.key"},
	 "nonceKey":"nonce.key","referenceValues":"refs.json"}`
	path := filepath.Join(dir, "provision.json")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadServeConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.CADir != filepath.Join(dir, "ca") || c.TLS.StationCA != "/abs/stations.pem" || c.Log.SigningKey != filepath.Join(dir, "log.key") {
		t.Fatalf("paths not resolved: %+v", c)
	}
	hsmCfg := strings.Replace(good, `"signingKey":"log.key"`, `"hsmKey":"pkcs11:token=factory;object=log?pin-source=file:/run/pin","name":"log.example"`, 1)
	if err := os.WriteFile(path, []byte(hsmCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := loadServeConfig(path); err != nil || c.Log.SigningKey != "" {
		t.Fatalf("HSM log key config: %v %+v", err, c)
	}
	for name, bad := range map[string]string{
		"version":       strings.Replace(good, `"version":1`, `"version":0`, 1),
		"listen":        strings.Replace(good, `"127.0.0.1:0"`, `"nowhere"`, 1),
		"no registry":   strings.Replace(good, `"registry.db"`, `""`, 1),
		"no station CA": strings.Replace(good, `"/abs/stations.pem"`, `""`, 1),
		"unknown field": strings.Replace(good, `"version":1`, `"version":1,"stations":[]`, 1),
		"no log key":    strings.Replace(good, `"signingKey":"log.key"`, `"name":"x"`, 1),
		"two log keys":  strings.Replace(good, `"signingKey":"log.key"`, `"signingKey":"log.key","hsmKey":"pkcs11:token=t;object=l","name":"x"`, 1),
		"hsm no name":   strings.Replace(good, `"signingKey":"log.key"`, `"hsmKey":"pkcs11:token=t;object=l"`, 1),
		"hsm bad uri":   strings.Replace(good, `"signingKey":"log.key"`, `"hsmKey":"file:/x","name":"x"`, 1),
	} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadServeConfig(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReadNonceKey(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		content string
		ok      bool
	}{
		"good":    {strings.Repeat("0f", 32) + "\n", true},
		"short":   {strings.Repeat("0f", 31), false},
		"not hex": {strings.Repeat("zz", 32), false},
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if k, err := readNonceKey(p); (err == nil) != tc.ok || (tc.ok && len(k) != 32) {
			t.Errorf("%s: %x, %v", name, k, err)
		}
	}
}
