package tpm_test

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
)

// TestCheckQuote has tpm2_checkquote (tpm2-tools) verify a quote made
// through this package: signature over the TPMS_ATTEST with the AK's
// public key and the nonce (-q). It is not given the PCR values (-f takes
// tpm2-tools' own in-memory dump format); VerifyQuote checks those.
func TestCheckQuote(t *testing.T) {
	bin := testdep.LookPath(t, "tpm2_checkquote")
	tp, _, _ := open(t)
	ctx := t.Context()
	ak, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageAttest})
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("nonce for tpm2_checkquote")
	q, err := tp.Quote(ctx, pluton.OS, ak.Handle, nonce, crypto.SHA256, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spki, err := x509.MarshalPKIXPublicKey(ak.Public)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ak.pem":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
		"msg.bin": q.Attest,
		"sig.bin": q.Signature,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(nonce []byte) ([]byte, error) {
		cmd := exec.CommandContext(ctx, bin, "-u", "ak.pem", "-m", "msg.bin", "-s", "sig.bin",
			"-g", "sha256", "-q", hex.EncodeToString(nonce))
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	if out, err := run(nonce); err != nil {
		t.Fatalf("tpm2_checkquote rejects the quote: %v\n%s", err, out)
	}
	if out, err := run([]byte("another nonce")); err == nil {
		t.Fatalf("tpm2_checkquote accepts another nonce:\n%s", out)
	}
	// A changed message: the signature no longer verifies.
	bad := append([]byte(nil), q.Attest...)
	bad[len(bad)-1] ^= 1
	if err := os.WriteFile(filepath.Join(dir, "msg.bin"), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(nonce); err == nil {
		t.Fatalf("tpm2_checkquote accepts a changed message:\n%s", out)
	}
}
