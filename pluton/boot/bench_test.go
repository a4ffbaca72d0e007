package boot

import (
	"crypto"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// BenchmarkVerifyImage verifies a 1 MiB image end to end: parse, signature
// check(s), manifest, SHA-256 of the payload. BenchmarkVerify gives the
// cost of the bare signature check of the same algorithms on a short
// message, for comparison.
func BenchmarkVerifyImage(b *testing.B) {
	f := newFixture(b)
	f.payload = make([]byte, 1<<20)
	for _, bc := range []struct {
		name    string
		layer   Layer
		signers []crypto.Signer
	}{
		{"p256", OS, []crypto.Signer{f.osP256}},
		{"ed25519", OS, []crypto.Signer{f.osEd}},
		{"mldsa65", OS, []crypto.Signer{f.osML}},
		{"hybrid", Bootloader, []crypto.Signer{f.blECDSA, f.blML}},
	} {
		img := f.image(b, bc.layer, 1, bc.signers...)
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				if _, _, err := f.policy.VerifyImage(img, bc.layer, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	msg := make([]byte, 200) // about the size of a Sig_structure over a manifest
	for _, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.Ed25519, pluton.MLDSA65} {
		s := newKey(b, alg, 1)
		sig, err := s.Sign(nil, alg.Digest(msg), alg.SignerOpts())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(alg.String(), func(b *testing.B) {
			for b.Loop() {
				if err := pluton.Verify(s.Public(), alg, msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyPolicy(b *testing.B) {
	f := newFixture(b)
	for b.Loop() {
		if _, err := VerifyPolicy(f.policyBytes, f.rootHash, product, 0); err != nil {
			b.Fatal(err)
		}
	}
}
