package device

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"testing"

	"github.com/rootline/rootline/pluton/evidence"
)

// The operational CSR is signed by, and for, the key that signs the
// evidence: the top Alias key of the current boot.
func TestOperationalCSR(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d := newDevice(t, v)
	if _, err := d.OperationalCSR(ctx); err == nil {
		t.Fatal("a CSR before any boot")
	}
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	der, err := d.OperationalCSR(ctx)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	nonce := []byte("verifier nonce 0123456789")
	tok, err := d.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.Verify(tok, &evidence.VerifyOptions{Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyEqual(csr.PublicKey, ev.Chain[0].PublicKey) {
		t.Fatal("the CSR's key is not the evidence's Alias key")
	}
	id, _ := d.Chip().Identity(ctx)
	if csr.Subject.SerialNumber != hex.EncodeToString(id.UEID) {
		t.Fatalf("subject serialNumber %q", csr.Subject.SerialNumber)
	}
}
