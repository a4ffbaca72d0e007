package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/provision"
)

// The products' identity settings of the serve provision configuration
// are decoded and checked strictly.
func TestServeConfigProducts(t *testing.T) {
	dir := t.TempDir()
	base := `{"version":1,"listen":"127.0.0.1:0",
	 "tls":{"certificate":"server.pem","key":"server.key","stationCA":"/abs/stations.pem"},
	 "registry":"registry.db","caDir":"ca","log":{"dir":"log","signingKey":"log.key"},
	 "nonceKey":"nonce.key","referenceValues":"refs.json","products":PRODUCTS}`
	with := func(products string) string { return strings.Replace(base, "PRODUCTS", products, 1) }
	path := filepath.Join(dir, "provision.json")
	load := func(cfg string) (*serveConfig, error) {
		t.Helper()
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return loadServeConfig(path)
	}
	const hsmURI = `"hsm":"pkcs11:token=factory?pin-source=file:/run/pin"`
	const master = `"secretMaster":"pkcs11:token=factory;object=m;type=secret-key?pin-source=file:/run/pin"`
	good := with(`{"sku-a":{"identity":"on-chip"},
	  "sku-b":{"identity":"injected","injection":{` + hsmURI + `,"keyAlgorithm":"p384","keyName":"dev-key",` + master + `,"secrets":["join-key","wifi"]}},
	  "sku-c":{"identity":"injected","injection":{` + hsmURI + `}}}`)
	c, err := load(good)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Products["sku-b"]
	if c.Products["sku-a"].Identity != "on-chip" || b.Injection.KeyAlgorithm != "p384" || len(b.Injection.Secrets) != 2 {
		t.Fatalf("products: %+v", c.Products)
	}
	if alg, err := injectionAlgorithm(b.Injection.KeyAlgorithm); err != nil || alg != pluton.ECDSAP384 {
		t.Fatalf("key algorithm %v, %v", alg, err)
	}
	if alg, err := injectionAlgorithm(""); err != nil || alg != pluton.ECDSAP256 {
		t.Fatalf("default key algorithm %v, %v", alg, err)
	}
	if _, err := load(strings.Replace(base, `,"products":PRODUCTS`, "", 1)); err != nil {
		t.Fatalf("no products: %v", err)
	}

	for name, bad := range map[string]string{
		"unknown identity":       with(`{"sku-a":{"identity":"tpm"}}`),
		"empty identity":         with(`{"sku-a":{"identity":""}}`),
		"null product":           with(`{"sku-a":null}`),
		"bad product name":       with(`{"sku a":{"identity":"on-chip"}}`),
		"on-chip with injection": with(`{"sku-a":{"identity":"on-chip","injection":{` + hsmURI + `}}}`),
		"injected without":       with(`{"sku-a":{"identity":"injected"}}`),
		"injected without hsm":   with(`{"sku-a":{"identity":"injected","injection":{"keyAlgorithm":"p256"}}}`),
		"bad hsm uri":            with(`{"sku-a":{"identity":"injected","injection":{"hsm":"file:/x"}}}`),
		"bad algorithm":          with(`{"sku-a":{"identity":"injected","injection":{` + hsmURI + `,"keyAlgorithm":"ed25519"}}}`),
		"secrets without master": with(`{"sku-a":{"identity":"injected","injection":{` + hsmURI + `,"secrets":["a"]}}}`),
		"bad master uri":         with(`{"sku-a":{"identity":"injected","injection":{` + hsmURI + `,"secretMaster":"m"}}}`),
		"unknown field":          with(`{"sku-a":{"identity":"injected","injection":{` + hsmURI + `,"pin":"1234"}}}`),
		"unknown product field":  with(`{"sku-a":{"identity":"on-chip","quota":3}}`),
		"duplicate-free array":   with(`["sku-a"]`),
	} {
		if _, err := load(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// applyIdentities refuses a product the reference values file does not
// name, and leaves on-chip products as they are.
func TestApplyIdentities(t *testing.T) {
	c := &serveConfig{Products: map[string]*productConfig{"sku-x": {Identity: "on-chip"}}}
	products := map[string]*provision.ProductPolicy{"sku-a": {}}
	if err := c.applyIdentities(t.Context(), products, newKeyring(nil)); err == nil || !strings.Contains(err.Error(), "sku-x") {
		t.Fatalf("unknown product: %v", err)
	}
	c.Products = map[string]*productConfig{"sku-a": {Identity: "on-chip"}}
	if err := c.applyIdentities(t.Context(), products, newKeyring(nil)); err != nil || products["sku-a"].Identity != provision.OnChip || products["sku-a"].Injection != nil {
		t.Fatalf("on-chip product: %v, %+v", err, products["sku-a"])
	}
}

// bench provision --identity injected provisions chips whose keys the
// token makes, and leaves no key in it.
func TestBenchProvisionInjected(t *testing.T) {
	out, _ := runBenchForTest(t, "--stepca=false", "--identity", "injected", "--secrets", "2")
	for _, re := range []string{
		`(?m)^identity +injected \(P-256 device keys made and wrapped in SoftHSM2; per-device secrets: 2\)$`,
		`(?m)^hsm +0 device keys left$`,
		`(?m)^injected +[0-9.]+ chips/s, on-chip [0-9.]+ chips/s \(ratio [0-9.]+\)$`,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("stdout does not match %s:\n%s", re, out)
		}
	}
}

func TestBenchProvisionIdentityFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--identity", "tpm"}, {"--identity", "x"}, {"--secrets", "2"},
		{"--identity", "injected", "--secrets", "17"}, {"--identity", "injected", "--secrets", "-1"},
	} {
		cmd := newBenchCommand(&globals{logLevel: "warn", logFormat: "text"})
		cmd.SetArgs(append([]string{"provision", "--chips", "1", "--stepca=false", "--dir", t.TempDir()}, args...))
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		if err := cmd.ExecuteContext(t.Context()); err == nil {
			t.Errorf("bench provision %v: no error", args)
		}
	}
}

func TestStationProvisionIdentityFlags(t *testing.T) {
	dir := t.TempDir()
	common := []string{"provision", "--server", "https://127.0.0.1:1", "--cert", "c", "--key", "k", "--ca", "a", "--product", "p", "--lot", "l"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--chip", dir, "--identity", "dice"}, "--identity"},
		{[]string{"--chip-port", "unix:/x", "--tpm", "127.0.0.1:2321", "--identity", "tpm"}, "--tpm goes with --chip"},
	} {
		cmd := newStationCommand(&globals{logLevel: "warn", logFormat: "text"})
		cmd.SetArgs(append(append([]string{}, common...), tc.args...))
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		if err := cmd.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("station %v: %v, want an error about %s", tc.args, err, tc.want)
		}
	}
}
