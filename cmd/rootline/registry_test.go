package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
)

// registryFixture writes what rootline serve provision reads (a CA
// directory with certificates only, reference values, a configuration) and
// a registry with two COMPLETE devices, one ISSUED, one ISSUING and one clone
// incident. It returns the configuration's path and the issued UEIDs.
func registryFixture(t *testing.T) (string, [][]byte) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	if err := writeCert(caDir, "root.pem", h.Root); err != nil {
		t.Fatal(err)
	}
	caCfg := &caConfig{Version: 1, Root: caKeyCert{Certificate: "root.pem", Key: "pkcs11:token=t;object=root"}, Revocations: "revocations.json"}
	for _, p := range h.Products {
		if err := writeCert(caDir, p.Name+".pem", p.Certificate); err != nil {
			t.Fatal(err)
		}
		caCfg.Products = append(caCfg.Products, caProduct{Name: p.Name, HWType: p.HWType.String(),
			caKeyCert: caKeyCert{Certificate: p.Name + ".pem", Key: "pkcs11:token=t;object=" + p.Name}})
	}
	if err := caCfg.save(caDir); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("refs.json", goodRefs) // sku-a only
	write("provision.json", `{"version":1,"listen":"127.0.0.1:0",
	 "tls":{"certificate":"server.pem","key":"server.key","stationCA":"stations.pem"},
	 "registry":"registry.db","caDir":"ca","log":{"dir":"log","signingKey":"log.key"},
	 "nonceKey":"nonce.key","referenceValues":"refs.json"}`)

	reg, err := registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: filepath.Join(dir, "registry.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	local, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		t.Fatal(err)
	}
	var issued [][]byte
	for i := range 4 {
		key := catest.Key(t)
		ueid := catest.UEID(t)
		spki, _ := x509.MarshalPKIXPublicKey(key.Public())
		if _, err := reg.Reserve(ctx, &registry.ReserveRequest{UEID: ueid, PublicKey: spki, Product: "sku-a", Lot: "lot 7", Station: "st-1"}); err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			// A clone of this chip, then leave it ISSUING.
			spki2, _ := x509.MarshalPKIXPublicKey(catest.Key(t).Public())
			_, err := reg.Reserve(ctx, &registry.ReserveRequest{UEID: ueid, PublicKey: spki2, Product: "sku-a", Lot: "lot 7", Station: "st-2"})
			if !errors.Is(err, registry.ErrClone) {
				t.Fatalf("clone: %v", err)
			}
			continue
		}
		iss, err := local.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, CSR: catest.CSR(t, key, pkix.Name{})})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.MarkIssued(ctx, ueid, iss.Certificate.Raw, iss.Certificate.SerialNumber); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if _, err := reg.Complete(ctx, ueid); err != nil {
				t.Fatal(err)
			}
		}
		issued = append(issued, ueid)
	}
	return filepath.Join(dir, "provision.json"), issued
}

func runRegistry(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRegistryCommand(&globals{logLevel: "warn", logFormat: "text"})
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestRegistryExport(t *testing.T) {
	cfg, issued := registryFixture(t)
	out := filepath.Join(t.TempDir(), "devices.json")
	if _, err := runRegistry(t, "export", "--config", cfg, "--out", out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, err := export.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Devices) != 3 || len(e.Products) != 1 || e.Products["sku-a"] == nil {
		t.Fatalf("%d devices, products %v", len(e.Devices), e.Products)
	}
	for _, d := range e.Devices {
		found := false
		for _, u := range issued {
			found = found || bytes.Equal(u, d.UEID)
		}
		if !found || d.Product != "sku-a" || len(d.Chain) != 3 {
			t.Errorf("device %x %q: unexpected", d.UEID, d.Product)
		}
	}

	stdout, err := runRegistry(t, "export", "--config", cfg, "--out", "-", "--complete-only")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := export.Read(strings.NewReader(stdout)); err != nil || len(e.Devices) != 2 {
		t.Fatalf("--complete-only to stdout: %v", err)
	}

	for name, args := range map[string][]string{
		"no out":          {"export", "--config", cfg},
		"no config":       {"export", "--out", out},
		"unknown product": {"export", "--config", cfg, "--out", "-", "--product", "sku-z"},
		"missing dir":     {"export", "--config", cfg, "--out", filepath.Join(t.TempDir(), "no", "devices.json")},
	} {
		if _, err := runRegistry(t, args...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRegistryExportNoRegistry(t *testing.T) {
	cfg, _ := registryFixture(t)
	if err := os.Remove(filepath.Join(filepath.Dir(cfg), "registry.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := runRegistry(t, "export", "--config", cfg, "--out", "-"); err == nil {
		t.Fatal("exported a missing registry")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "registry.db")); err == nil {
		t.Fatal("created a registry")
	}
}

func TestRegistryIncidents(t *testing.T) {
	cfg, _ := registryFixture(t)
	out, err := runRegistry(t, "incidents", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "st-2") ||
		!strings.Contains(lines[1], `"lot 7"`) || !strings.Contains(lines[1], "sku-a") {
		t.Fatalf("incidents table:\n%s", out)
	}
	var b bytes.Buffer
	if err := printIncidents(&b, nil); err != nil || b.String() != "no clone incident\n" {
		t.Fatalf("empty table: %q %v", b.String(), err)
	}
}
