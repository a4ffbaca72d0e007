package pluton

import "testing"

func BenchmarkVerify(b *testing.B) {
	signers := testSigners(b)
	msg := []byte("rootline benchmark message")
	for _, alg := range Algorithms() {
		s := signers[alg]
		sig := testSign(b, alg, s, msg)
		pub := s.Public()
		b.Run(alg.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := Verify(pub, alg, msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParsePublicKey(b *testing.B) {
	signers := testSigners(b)
	for _, alg := range Algorithms() {
		der, err := MarshalPublicKey(signers[alg].Public())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(alg.String(), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := ParsePublicKey(der); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
