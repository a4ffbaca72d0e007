package translog_test

import (
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
	"github.com/rootline/rootline/provision/translog"
)

// openHSMSigner creates an Ed25519 key on a fresh SoftHSM2 token and
// returns a translog.Signer over it. The module is closed at cleanup.
func openHSMSigner(t testing.TB) *translog.Signer {
	t.Helper()
	uri, _ := hsmtest.NewSoftHSM(t)
	m, err := hsm.Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	_, key, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "issuance-log", Algorithm: hsm.Ed25519})
	if err != nil {
		t.Fatal(err)
	}
	k, err := m.Signer(t.Context(), key.String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := translog.NewSigner("factory.rootline.example/issuance", k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Tree heads signed by an Ed25519 key held in SoftHSM2 open with note.Open
// under the verifier key, and proofs verify against them.
func TestHSMSignedTreeHead(t *testing.T) {
	s := openHSMSigner(t)
	ctx := t.Context()
	l, err := translog.New(translog.NewMemStore(), s)
	if err != nil {
		t.Fatal(err)
	}
	heads := grow(t, l, 3, leaf)
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(heads[3], note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Name != s.Name() || n.Sigs[0].Hash != s.KeyHash() {
		t.Fatalf("signatures %+v", n.Sigs)
	}
	p, err := l.InclusionProof(ctx, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := translog.VerifyInclusion(s.VerifierKey(), heads[3], leaf(1), 1, p); err != nil {
		t.Fatal(err)
	}
	cp, err := l.ConsistencyProof(ctx, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := translog.VerifyConsistency(s.VerifierKey(), heads[1], heads[3], cp); err != nil {
		t.Fatal(err)
	}
}
