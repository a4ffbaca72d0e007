package keys

import (
	"crypto"
	"crypto/rand"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"testing"

	"github.com/rootline/rootline/pluton"
)

func TestSelfTest(t *testing.T) {
	for _, alg := range pluton.Algorithms() {
		if err := SelfTest(alg); err != nil {
			t.Errorf("%v: %v", alg, err)
		}
		// Once per process: the second call returns the kept result.
		if err := SelfTest(alg); err != nil {
			t.Errorf("%v (again): %v", alg, err)
		}
	}
	for _, alg := range []pluton.Algorithm{pluton.AlgorithmUnknown, 99} {
		if err := SelfTest(alg); !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
			t.Errorf("SelfTest(%v) = %v", alg, err)
		}
	}
}

// TestKnownAnswerTestFailures forces each algorithm's known-answer test to
// fail (by corrupting the value it compares, as GODEBUG=failfipscast does
// in Go's FIPS module) and checks that no key of that algorithm can then be
// generated or loaded, for good, while the other algorithms still work.
func TestKnownAnswerTestFailures(t *testing.T) {
	for _, broken := range pluton.Algorithms() {
		t.Run(broken.String(), func(t *testing.T) {
			st := newSelfTests(broken, pluton.AlgorithmUnknown)
			for range 2 { // the failure is kept
				priv, s, err := generate(st, broken, rand.Reader)
				if !errors.Is(err, pluton.ErrSelfTest) {
					t.Fatalf("generate: %v, want an error wrapping ErrSelfTest", err)
				}
				var se *SelfTestError
				if !errors.As(err, &se) || se.Test != "known-answer" || se.Algorithm != broken {
					t.Fatalf("error %#v, want a known-answer *SelfTestError for %v", err, broken)
				}
				if priv != nil || s != nil {
					t.Fatal("generate returned a key with the error")
				}
			}
			t.Logf("forced failure: %v", st.run(broken))
			if _, err := fromPrivate(st, broken, make([]byte, PrivateSize(broken))); !errors.Is(err, pluton.ErrSelfTest) {
				t.Errorf("fromPrivate: %v, want an error wrapping ErrSelfTest", err)
			}
			for _, alg := range pluton.Algorithms() {
				if alg == broken {
					continue
				}
				if _, _, err := generate(st, alg, rand.Reader); err != nil {
					t.Errorf("%v is not broken but: %v", alg, err)
				}
			}
		})
	}
	// The process state is untouched by the test states.
	for _, alg := range pluton.Algorithms() {
		if _, _, err := Generate(alg, rand.Reader); err != nil {
			t.Errorf("Generate(%v) after the forced failures: %v", alg, err)
		}
	}
}

// TestPairwiseTestFailures forces the pairwise-consistency test of each
// algorithm to fail after key generation: Generate must return no key.
func TestPairwiseTestFailures(t *testing.T) {
	for _, broken := range pluton.Algorithms() {
		t.Run(broken.String(), func(t *testing.T) {
			st := newSelfTests(pluton.AlgorithmUnknown, broken)
			priv, s, err := generate(st, broken, rand.Reader)
			var se *SelfTestError
			if !errors.Is(err, pluton.ErrSelfTest) || !errors.As(err, &se) || se.Test != "pairwise-consistency" {
				t.Fatalf("generate: %v, want a pairwise-consistency *SelfTestError", err)
			}
			t.Logf("forced failure: %v", err)
			if priv != nil || s != nil {
				t.Fatal("generate returned a key with the error")
			}
		})
	}
}

// badSigner corrupts the signatures of a good signer.
type badSigner struct{ crypto.Signer }

func (b badSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := b.Signer.Sign(r, digest, opts)
	if err == nil {
		sig[len(sig)/2] ^= 0x10
	}
	return sig, err
}

// failingSigner fails to sign.
type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("hardware fault")
}

func TestPairwiseTest(t *testing.T) {
	signers := map[pluton.Algorithm]crypto.Signer{}
	for _, alg := range pluton.Algorithms() {
		_, s, err := Generate(alg, mathrand.NewChaCha8([32]byte{byte(alg)}))
		if err != nil {
			t.Fatal(err)
		}
		signers[alg] = s
		if err := PairwiseTest(alg, s); err != nil {
			t.Errorf("%v: good signer: %v", alg, err)
		}
	}
	for _, alg := range pluton.Algorithms() {
		other := pluton.Ed25519
		if alg == pluton.Ed25519 {
			other = pluton.ECDSAP256
		}
		for name, s := range map[string]crypto.Signer{
			"corrupted signatures": badSigner{signers[alg]},
			"signing error":        failingSigner{signers[alg]},
			"key of another alg":   signers[other],
			"nil":                  nil,
		} {
			err := PairwiseTest(alg, s)
			var se *SelfTestError
			if !errors.Is(err, pluton.ErrSelfTest) || !errors.As(err, &se) || se.Test != "pairwise-consistency" {
				t.Errorf("%v, %s: %v, want a pairwise-consistency *SelfTestError", alg, name, err)
			}
		}
	}
	if err := PairwiseTest(pluton.ECDSAP384, signers[pluton.ECDSAP256]); !errors.Is(err, pluton.ErrSelfTest) {
		t.Errorf("P-256 key tested as P-384: %v", err)
	}
}
