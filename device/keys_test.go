package device

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
)

// aliasOf returns the key that signed tok, checked against the DICE chain
// the device reports.
func aliasOf(t *testing.T, d *Device, tok, nonce []byte) *ecdsa.PublicKey {
	t.Helper()
	certs, err := d.Certificates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[len(certs)-1])
	v, err := evidence.Verify(tok, &evidence.VerifyOptions{Nonce: nonce, Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	return v.PublicKey.(*ecdsa.PublicKey)
}

// TestAttestKeepsAliasKey: the app layer's Alias key is derived at the
// boot's first attestation and kept for the boot (the same key signs each
// token, each over its own nonce); the next Boot and Close drop it and wipe
// its scalar; a chip whose keys became unusable refuses to attest with it.
func TestAttestKeepsAliasKey(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d, err := Init(ctx, t.TempDir(), &InitRequest{Product: v.Product, RootKeyHash: v.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	im := v.images(t, 1)
	if _, err := d.Boot(ctx, im); err != nil {
		t.Fatal(err)
	}
	if d.running.alias != nil {
		t.Fatal("an Alias key before the first attestation")
	}
	n1, n2 := []byte("nonce number one"), []byte("nonce number two")
	t1, err := d.Attest(ctx, n1)
	if err != nil {
		t.Fatal(err)
	}
	kept, ok := d.running.alias.(*ecdsa.PrivateKey)
	if !ok || d.running.evidence == nil {
		t.Fatalf("Alias key not kept: %T", d.running.alias)
	}
	t2, err := d.Attest(ctx, n2)
	if err != nil {
		t.Fatal(err)
	}
	if d.running.alias != kept {
		t.Fatal("the Alias key was derived again")
	}
	k1, k2 := aliasOf(t, d, t1, n1), aliasOf(t, d, t2, n2)
	if !k1.Equal(k2) || !k1.Equal(kept.Public()) {
		t.Fatal("the tokens of one boot are signed by different keys")
	}
	// The key kept is the one derived afresh (AliasSigner derives it).
	fresh, err := d.AliasSigner(ctx)
	if err != nil || !k1.Equal(fresh.Public()) {
		t.Fatalf("the kept key is not the boot's Alias key: %v", err)
	}

	// The next boot drops and wipes it, and derives the same key again
	// (same images) at its first attestation.
	if _, err := d.Boot(ctx, im); err != nil {
		t.Fatal(err)
	}
	if d.running.alias != nil || d.running.evidence != nil {
		t.Fatal("the previous boot's Alias key was kept")
	}
	t3, err := d.Attest(ctx, n1)
	if err != nil {
		t.Fatal(err)
	}
	if !aliasOf(t, d, t3, n1).Equal(k1) {
		t.Fatal("the same images give another Alias key")
	}

	// Keys unusable: the kept key is dropped and not used.
	if d.running.alias == nil {
		t.Fatal("no Alias key kept after the attestation")
	}
	if err := d.chip.Transition(ctx, pluton.Decommissioned); err != nil {
		t.Fatal(err)
	}
	var le *pluton.LifecycleError
	if _, err := d.Attest(ctx, n2); !errors.As(err, &le) {
		t.Fatalf("attest on a decommissioned chip: %v", err)
	}
	if d.running.alias != nil {
		t.Fatal("the Alias key of a decommissioned chip was kept")
	}
	st := d.running
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if st.alias != nil {
		t.Fatal("Close kept the Alias key")
	}
}

// TestCloseWipesAliasKey: Close drops the boot's Alias key and wipes it.
func TestCloseWipesAliasKey(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d, err := Init(ctx, t.TempDir(), &InitRequest{Product: v.Product, RootKeyHash: v.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Attest(ctx, []byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	st := d.running
	if st.alias == nil {
		t.Fatal("no Alias key kept after an attestation")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if st.alias != nil || st.evidence != nil {
		t.Fatal("Close kept the Alias key")
	}
}
