// Package boottest gives tests a device maker's and OS vendor's signing
// setup: a root key, one signing key per boot layer, the trust policy that
// authorizes them, and signed images. It is for tests only: its keys live
// in memory and every failure stops the test.
package boottest

import (
	"crypto"
	"crypto/rand"
	"testing"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
)

// Vendor is the signing setup of one product.
type Vendor struct {
	Product  string
	Root     crypto.Signer
	RootAlg  pluton.Algorithm
	RootHash []byte // SHA-256 of the root key's SPKI: what a chip fuses
	// Signers holds one ECDSA P-256 key per layer.
	Signers map[boot.Layer]crypto.Signer
	// Policy is version 1 of the trust policy: each layer signed by its
	// key in Signers.
	Policy []byte
}

// GenerateKey makes a signing key through boot's key files (the path the
// signing tool takes).
func GenerateKey(t testing.TB, alg pluton.Algorithm) crypto.Signer {
	t.Helper()
	pemKey, _, err := boot.GenerateKey(rand.Reader, alg)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := boot.ParsePrivateKeyPEM(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewVendor makes the keys and version 1 of the policy for product, with a
// root key of rootAlg.
func NewVendor(t testing.TB, product string, rootAlg pluton.Algorithm) *Vendor {
	t.Helper()
	v := &Vendor{Product: product, RootAlg: rootAlg, Root: GenerateKey(t, rootAlg), Signers: map[boot.Layer]crypto.Signer{}}
	var err error
	if v.RootHash, err = boot.RootKeyHash(v.Root.Public(), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	for _, l := range boot.Layers() {
		v.Signers[l] = GenerateKey(t, pluton.ECDSAP256)
	}
	v.Policy = v.SignPolicy(t, 1, v.Rules(), nil)
	return v
}

// Rules authorizes each layer's key in Signers for that layer.
func (v *Vendor) Rules() map[boot.Layer]boot.LayerRule {
	rules := map[boot.Layer]boot.LayerRule{}
	for l, s := range v.Signers {
		rules[l] = boot.LayerRule{Signers: []crypto.PublicKey{s.Public()}}
	}
	return rules
}

// SignPolicy signs a trust policy of this product with the root key.
func (v *Vendor) SignPolicy(t testing.TB, version uint64, rules map[boot.Layer]boot.LayerRule, revoked [][]byte) []byte {
	t.Helper()
	p, err := boot.SignPolicy(rand.Reader, v.Root, v.RootAlg, &boot.PolicyContent{
		Version: version, Product: v.Product, Layers: rules, Revoked: revoked,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Image signs payload as an image of layer l with the layer's key.
func (v *Vendor) Image(t testing.TB, l boot.Layer, version string, svn uint64, payload string) []byte {
	t.Helper()
	img, err := boot.SignImage(rand.Reader, []crypto.Signer{v.Signers[l]}, &boot.Manifest{
		Layer: l, Product: v.Product, Version: version, SVN: svn,
	}, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return img
}
