package dice

import (
	"testing"

	"github.com/rootline/rootline/pluton"
)

func BenchmarkDerive(b *testing.B) {
	cdi := make([]byte, CDISize)
	in := &InputValues{Mode: ModeNormal}
	for b.Loop() {
		if _, _, err := Derive(cdi, cdi, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyPair(b *testing.B) {
	cdi := make([]byte, CDISize)
	for _, alg := range []pluton.Algorithm{pluton.Ed25519, pluton.ECDSAP256, pluton.ECDSAP384, pluton.MLDSA65} {
		b.Run(alg.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := KeyPair(cdi, alg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
