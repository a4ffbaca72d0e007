package pluton

import (
	"bytes"
	"crypto"
	"errors"
	"testing"
)

// Seed corpora: the f.Add calls below (one valid key and signature per
// algorithm) and testdata/fuzz/<Fuzz…>/ (Wycheproof keys and signatures,
// and malformed encodings).

func FuzzParsePublicKey(f *testing.F) {
	for _, s := range testSigners(f) {
		der, err := MarshalPublicKey(s.Public())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add([]byte{})
	f.Add(rsaSPKI())
	f.Fuzz(func(t *testing.T, der []byte) {
		pub, alg, err := ParsePublicKey(der)
		if err != nil {
			if pub != nil || alg != AlgorithmUnknown {
				t.Fatalf("ParsePublicKey returned %T, %v and %v", pub, alg, err)
			}
			if !errors.Is(err, ErrInvalidKey) && !errors.Is(err, ErrUnsupportedAlgorithm) {
				t.Fatalf("error %v wraps neither ErrInvalidKey nor ErrUnsupportedAlgorithm", err)
			}
			return
		}
		// Round trip: a key that parses marshals back to the input.
		enc, err := MarshalPublicKey(pub)
		if err != nil {
			t.Fatalf("MarshalPublicKey of a parsed key: %v", err)
		}
		if !bytes.Equal(enc, der) {
			t.Fatalf("round trip changed the encoding:\n in  %x\n out %x", der, enc)
		}
		if got, err := AlgorithmOf(pub); err != nil || got != alg {
			t.Fatalf("AlgorithmOf = %v, %v; ParsePublicKey said %v", got, err, alg)
		}
	})
}

// FuzzVerify checks that Verify, VerifyP1363 and the ECDSA signature
// converters never panic, fail only with this package's errors, and that
// the converters are inverse on what they accept. The key is the fixed one
// of the algorithm, or the fuzzed DER when it parses.
func FuzzVerify(f *testing.F) {
	signers := testSigners(f)
	msg := []byte("rootline fuzz")
	for alg, s := range signers {
		der, err := MarshalPublicKey(s.Public())
		if err != nil {
			f.Fatal(err)
		}
		sig := testSign(f, alg, s, msg)
		f.Add(byte(alg), der, msg, sig)
		f.Add(byte(alg), []byte{}, msg, sig)
		if alg == ECDSAP256 || alg == ECDSAP384 {
			raw, err := ECDSASignatureToP1363(alg, sig)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(byte(alg), []byte{}, msg, raw)
		}
	}
	f.Fuzz(func(t *testing.T, a byte, keyDER, msg, sig []byte) {
		alg := Algorithm(a % 6) // every algorithm, the zero value and one unknown
		var pub crypto.PublicKey
		if s, ok := signers[alg]; ok {
			pub = s.Public()
		}
		if p, _, err := ParsePublicKey(keyDER); err == nil {
			pub = p
		}
		for _, verify := range []func(crypto.PublicKey, Algorithm, []byte, []byte) error{Verify, VerifyP1363} {
			err := verify(pub, alg, msg, sig)
			if err != nil && !errors.Is(err, ErrInvalidSignature) && !errors.Is(err, ErrInvalidKey) && !errors.Is(err, ErrUnsupportedAlgorithm) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		if alg != ECDSAP256 && alg != ECDSAP384 {
			return
		}
		if raw, err := ECDSASignatureToP1363(alg, sig); err == nil {
			back, err := ECDSASignatureFromP1363(alg, raw)
			if err != nil || !bytes.Equal(back, sig) {
				t.Fatalf("DER → P1363 → DER changed %x to %x (%v)", sig, back, err)
			}
			if (Verify(pub, alg, msg, sig) == nil) != (VerifyP1363(pub, alg, msg, raw) == nil) {
				t.Fatal("Verify and VerifyP1363 disagree on the two forms of one signature")
			}
		} else if !errors.Is(err, ErrInvalidSignature) {
			t.Fatalf("ECDSASignatureToP1363: %v", err)
		}
		if der, err := ECDSASignatureFromP1363(alg, sig); err == nil {
			back, err := ECDSASignatureToP1363(alg, der)
			if err != nil || !bytes.Equal(back, sig) {
				t.Fatalf("P1363 → DER → P1363 changed %x to %x (%v)", sig, back, err)
			}
		} else if !errors.Is(err, ErrInvalidSignature) {
			t.Fatalf("ECDSASignatureFromP1363: %v", err)
		}
	})
}
