package boot

import (
	"crypto"
	mrand "math/rand/v2"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// newKey generates a deterministic key through the key-file path
// (GenerateKey, then ParsePrivateKeyPEM), so every test also exercises it.
func newKey(t testing.TB, alg pluton.Algorithm, seed byte) crypto.Signer {
	t.Helper()
	pemBytes, pub, err := GenerateKey(mrand.NewChaCha8([32]byte{seed, byte(alg), 0xb0}), alg)
	if err != nil {
		t.Fatal(err)
	}
	s, got, err := ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if got != alg {
		t.Fatalf("ParsePrivateKeyPEM: %v, want %v", got, alg)
	}
	a, _ := pluton.MarshalPublicKey(pub)
	b, _ := pluton.MarshalPublicKey(s.Public())
	if string(a) != string(b) {
		t.Fatal("GenerateKey and ParsePrivateKeyPEM disagree on the public key")
	}
	return s
}

func keyID(t testing.TB, s crypto.Signer) []byte {
	t.Helper()
	id, err := KeyID(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fixture is a product's keys, its trust policy and a chip's fuses.
type fixture struct {
	root                       crypto.Signer
	rootHash                   []byte
	osP256, osP384, osEd, osML crypto.Signer
	blECDSA, blML              crypto.Signer
	app, revoked, stranger     crypto.Signer
	policyBytes                []byte
	policy                     *Policy
	payload                    []byte
	content                    *PolicyContent
	strangerRoot               crypto.Signer
}

const product = "sku-a"

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		root:         newKey(t, pluton.ECDSAP384, 1),
		osP256:       newKey(t, pluton.ECDSAP256, 2),
		osP384:       newKey(t, pluton.ECDSAP384, 3),
		osEd:         newKey(t, pluton.Ed25519, 4),
		osML:         newKey(t, pluton.MLDSA65, 5),
		blECDSA:      newKey(t, pluton.ECDSAP256, 6),
		blML:         newKey(t, pluton.MLDSA65, 7),
		app:          newKey(t, pluton.Ed25519, 8),
		revoked:      newKey(t, pluton.Ed25519, 9),
		stranger:     newKey(t, pluton.ECDSAP256, 10),
		strangerRoot: newKey(t, pluton.ECDSAP384, 11),
		payload:      []byte("the operating system, version 1.4.0"),
	}
	var err error
	if f.rootHash, err = RootKeyHash(f.root.Public(), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	f.content = &PolicyContent{
		Version: 5,
		Product: product,
		Layers: map[Layer]LayerRule{
			Bootloader: {Signers: []crypto.PublicKey{f.blECDSA.Public(), f.blML.Public()}, Hybrid: true},
			OS:         {Signers: []crypto.PublicKey{f.osP256.Public(), f.osP384.Public(), f.osEd.Public(), f.osML.Public(), f.revoked.Public()}},
			App:        {Signers: []crypto.PublicKey{f.app.Public()}},
		},
		Revoked: [][]byte{keyID(t, f.revoked)},
	}
	if f.policyBytes, err = SignPolicy(nil, f.root, pluton.ECDSAP384, f.content); err != nil {
		t.Fatal(err)
	}
	if f.policy, err = VerifyPolicy(f.policyBytes, f.rootHash, product, 5); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) image(t testing.TB, layer Layer, svn uint64, signers ...crypto.Signer) []byte {
	t.Helper()
	img, err := SignImage(nil, signers, &Manifest{Layer: layer, Product: product, Version: "1.4.0", SVN: svn}, f.payload)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
