package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootline/rootline/pluton/tpm/tpmtest"
)

// rootline device --backend tpm: the same boot, evidence and anti-rollback
// flows as the emulated chip, on swtpm.
func TestDeviceTPMCLI(t *testing.T) {
	sw := tpmtest.Start(t)
	ctx := t.Context()
	w := t.TempDir()
	at := func(name string) string { return filepath.Join(w, name) }
	exe := func(args ...string) (string, error) {
		t.Helper()
		c := newRootCommand("test")
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		err := run(t, ctx, c, args...)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := exe(args...)
		if err != nil {
			t.Fatalf("rootline %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	for _, k := range []string{"root", "bl", "os", "app"} {
		must("image", "keygen", "--alg", "p256", "--out", at(k))
	}
	hash := must("image", "roothash", "--pub", at("root.pub"))
	if err := os.WriteFile(at("root.hash"), []byte(hash), 0o600); err != nil {
		t.Fatal(err)
	}
	must("image", "policy", "--root-key", at("root.key"), "--product", "sku-a", "--version", "1",
		"--signer", "bootloader="+at("bl.pub"), "--signer", "os="+at("os.pub"), "--signer", "app="+at("app.pub"), "--out", at("policy.cbor"))
	for _, img := range []struct{ key, layer, version, svn, name string }{
		{"bl", "bootloader", "1.0.0", "1", "bl"}, {"os", "os", "1.4.0", "3", "os"},
		{"os", "os", "1.3.0", "2", "os-old"}, {"app", "app", "2.0.0", "1", "app"},
	} {
		if err := os.WriteFile(at(img.name+".bin"), []byte(img.name+" code"), 0o600); err != nil {
			t.Fatal(err)
		}
		must("image", "sign", "--key", at(img.key+".key"), "--layer", img.layer, "--product", "sku-a", "--version", img.version,
			"--svn", img.svn, "--in", at(img.name+".bin"), "--out", at(img.name+".img"))
	}

	dev := at("dev")
	out := must("device", "init", "--backend", "tpm", "--tpm", sw.Addr, "--state", dev, "--product", "sku-a", "--root-key-hash", "@"+at("root.hash"))
	if !strings.Contains(out, "backend:        tpm") || !strings.Contains(out, "lifecycle:      manufacturing") {
		t.Fatalf("init:\n%s", out)
	}
	// The state directory remembers the backend; --tpm is needed each time.
	if _, err := exe("device", "info", "--state", dev); err == nil || !strings.Contains(err.Error(), "--tpm") {
		t.Fatalf("info without --tpm: %v", err)
	}
	if _, err := exe("device", "keygen", "--tpm", sw.Addr, "--state", dev, "--compartment", "os", "--alg", "p256"); err == nil {
		t.Fatal("keygen on a TPM device: want a refusal naming what a TPM device takes")
	}
	boot := func(osImg string) (string, error) {
		return exe("device", "boot", "--tpm", sw.Addr, "--state", dev, "--policy", at("policy.cbor"),
			"--bootloader", at("bl.img"), "--os", at(osImg), "--app", at("app.img"))
	}
	if out, err := boot("os.img"); err != nil || !strings.Contains(out, "1.4.0") {
		t.Fatalf("boot: %v\n%s", err, out)
	}
	if out := must("device", "pcrs", "--tpm", sw.Addr, "--state", dev); !strings.Contains(out, "sha256:") {
		t.Fatalf("pcrs:\n%s", out)
	}
	nonce := "00112233445566778899aabbccddeeff"
	must("device", "attest", "--tpm", sw.Addr, "--state", dev, "--nonce", nonce, "--out", at("ev.cbor"), "--deviceid-cert", at("idkey.pem"))
	if out := must("evidence", "verify", "--roots", at("idkey.pem"), "--nonce", nonce, at("ev.cbor")); !strings.Contains(out, "verified") {
		t.Fatalf("evidence verify:\n%s", out)
	}
	must("device", "confirm", "--tpm", sw.Addr, "--state", dev)
	if out, err := boot("os-old.img"); err == nil || !strings.Contains(err.Error()+out, "rollback") {
		t.Fatalf("an older OS after confirm: %v\n%s", err, out)
	}
}
