package evidence

import (
	"crypto/rand"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// The cost of a token against the raw signature it carries: Sign and
// Verify of a token with three layers, counters, two register banks and
// an event log, with a chain of three certificates whose keys are all of
// the token's algorithm (Verify checks four signatures: the token's, two
// certificates' and the root's own), and signer.Sign and pluton.Verify of
// a message of the token's size.

var benchAlgs = []pluton.Algorithm{pluton.ECDSAP256, pluton.Ed25519}

func BenchmarkSign(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg.String(), func(b *testing.B) {
			p := newPKIWith(b, alg, 1, pkiOptions{issuerAlg: alg})
			c := testClaims(b)
			tok := p.sign(b, c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Sign(rand.Reader, p.key, alg, c, p.chain); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(tok)), "token-bytes")
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg.String(), func(b *testing.B) {
			p := newPKIWith(b, alg, 1, pkiOptions{issuerAlg: alg})
			c := testClaims(b)
			tok := p.sign(b, c)
			opts := &VerifyOptions{Nonce: c.Nonce, Roots: p.roots}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Verify(tok, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRawSign(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg.String(), func(b *testing.B) {
			p := newPKIWith(b, alg, 1, pkiOptions{issuerAlg: alg})
			msg := p.sign(b, testClaims(b))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.key.Sign(rand.Reader, alg.Digest(msg), alg.SignerOpts()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRawVerify(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg.String(), func(b *testing.B) {
			p := newPKIWith(b, alg, 1, pkiOptions{issuerAlg: alg})
			msg := p.sign(b, testClaims(b))
			sig, err := p.key.Sign(rand.Reader, alg.Digest(msg), alg.SignerOpts())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := pluton.Verify(p.key.Public(), alg, msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
