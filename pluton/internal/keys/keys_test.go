package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/rootline/rootline/pluton"
)

type equaler interface{ Equal(crypto.PublicKey) bool }

func TestGenerate(t *testing.T) {
	for _, alg := range pluton.Algorithms() {
		t.Run(alg.String(), func(t *testing.T) {
			priv, s, err := Generate(alg, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if len(priv) != PrivateSize(alg) {
				t.Errorf("private material of %d bytes, want %d", len(priv), PrivateSize(alg))
			}
			if got, err := pluton.AlgorithmOf(s.Public()); err != nil || got != alg {
				t.Errorf("AlgorithmOf(Public()) = %v, %v", got, err)
			}
			// The signer round-trips through its stored form.
			s2, err := FromPrivate(alg, priv)
			if err != nil {
				t.Fatal(err)
			}
			if !s2.Public().(equaler).Equal(s.Public()) {
				t.Error("FromPrivate gives another public key")
			}
			msg := []byte("message")
			sig, err := s2.Sign(rand.Reader, alg.Digest(msg), alg.SignerOpts())
			if err != nil {
				t.Fatal(err)
			}
			if err := pluton.Verify(s.Public(), alg, msg, sig); err != nil {
				t.Errorf("signature of the rebuilt signer: %v", err)
			}
			if der, err := pluton.MarshalPublicKey(s.Public()); err != nil {
				t.Errorf("MarshalPublicKey: %v", err)
			} else if _, _, err := pluton.ParsePublicKey(der); err != nil {
				t.Errorf("ParsePublicKey: %v", err)
			}
		})
	}
}

func TestGenerateDeterministic(t *testing.T) {
	for _, alg := range pluton.Algorithms() {
		t.Run(alg.String(), func(t *testing.T) {
			seed := [32]byte{1, 2, 3}
			priv1, s1, err := Generate(alg, mathrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			priv2, s2, err := Generate(alg, mathrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(priv1, priv2) || !s1.Public().(equaler).Equal(s2.Public()) {
				t.Error("the same random bytes gave different keys")
			}
			// The private material is the first bytes drawn.
			want := make([]byte, PrivateSize(alg))
			if _, err := io.ReadFull(mathrand.NewChaCha8(seed), want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(priv1, want) {
				t.Error("the private material is not the bytes drawn")
			}
			seed[0]++
			priv3, s3, err := Generate(alg, mathrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(priv1, priv3) || s1.Public().(equaler).Equal(s3.Public()) {
				t.Error("different random bytes gave the same key")
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestECDSARejectionSampling(t *testing.T) {
	for _, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.ECDSAP384} {
		t.Run(alg.String(), func(t *testing.T) {
			size := PrivateSize(alg)
			n := curveOrder(alg)
			valid := bytes.Repeat([]byte{0x42}, size)
			nMinus1 := bytes.Clone(n)
			nMinus1[size-1]--
			one := make([]byte, size)
			one[size-1] = 1
			for _, tt := range []struct {
				name     string
				rejected [][]byte // drawn first, each must be refused
				accepted []byte
			}{
				{"all ones then valid", [][]byte{bytes.Repeat([]byte{0xff}, size)}, valid},
				{"zero then valid", [][]byte{make([]byte, size)}, valid},
				{"n then n-1", [][]byte{n}, nMinus1},
				{"zero, 2^N-1, n, then 1", [][]byte{make([]byte, size), bytes.Repeat([]byte{0xff}, size), n}, one},
			} {
				stream := append(bytes.Join(tt.rejected, nil), tt.accepted...)
				r := &countingReader{r: bytes.NewReader(stream)}
				priv, s, err := Generate(alg, r)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if !bytes.Equal(priv, tt.accepted) {
					t.Errorf("%s: private scalar %x, want %x", tt.name, priv, tt.accepted)
				}
				if r.n != len(stream) {
					t.Errorf("%s: read %d bytes, want %d", tt.name, r.n, len(stream))
				}
				k, err := s.(*ecdsa.PrivateKey).Bytes()
				if err != nil || !bytes.Equal(k, tt.accepted) {
					t.Errorf("%s: signer scalar %x (%v)", tt.name, k, err)
				}
			}

			// A source that never gives a valid scalar fails, after a bound.
			r := &countingReader{r: bytes.NewReader(bytes.Repeat([]byte{0xff}, 1000*size))}
			_, _, err := Generate(alg, r)
			if !errors.Is(err, pluton.ErrEntropy) {
				t.Errorf("all-ones source: %v, want an error wrapping ErrEntropy", err)
			}
			if r.n != maxScalarDraws*size {
				t.Errorf("all-ones source: %d draws, want %d", r.n/size, maxScalarDraws)
			}
		})
	}
}

func TestScalarValid(t *testing.T) {
	n := []byte{0x80, 0x00, 0x05}
	for _, tt := range []struct {
		d    []byte
		want int
	}{
		{[]byte{0, 0, 0}, 0},
		{[]byte{0, 0, 1}, 1},
		{[]byte{0x80, 0x00, 0x04}, 1},
		{[]byte{0x80, 0x00, 0x05}, 0},
		{[]byte{0x80, 0x00, 0x06}, 0},
		{[]byte{0x7f, 0xff, 0xff}, 1},
		{[]byte{0x80, 0x01, 0x00}, 0},
		{[]byte{0xff, 0xff, 0xff}, 0},
	} {
		if got := scalarValid(tt.d, n); got != tt.want {
			t.Errorf("scalarValid(%x, %x) = %d, want %d", tt.d, n, got, tt.want)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	for _, alg := range pluton.Algorithms() {
		_, _, err := Generate(alg, iotest.ErrReader(errors.New("DRBG failed")))
		if !errors.Is(err, pluton.ErrEntropy) {
			t.Errorf("%v, failing source: %v", alg, err)
		}
		_, _, err = Generate(alg, bytes.NewReader(make([]byte, PrivateSize(alg)-1)))
		if !errors.Is(err, pluton.ErrEntropy) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%v, short source: %v", alg, err)
		}
		if _, _, err := Generate(alg, nil); !errors.Is(err, pluton.ErrInvalidArgument) {
			t.Errorf("%v, nil source: %v", alg, err)
		}
	}
	for _, alg := range []pluton.Algorithm{pluton.AlgorithmUnknown, 99} {
		if _, _, err := Generate(alg, rand.Reader); !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
			t.Errorf("Generate(%v): %v", alg, err)
		}
		if _, err := FromPrivate(alg, make([]byte, 32)); !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
			t.Errorf("FromPrivate(%v): %v", alg, err)
		}
	}
}

func TestFromPrivateRejects(t *testing.T) {
	type bad struct {
		name string
		priv []byte
	}
	cases := map[pluton.Algorithm][]bad{}
	for _, alg := range pluton.Algorithms() {
		size := PrivateSize(alg)
		cases[alg] = []bad{
			{"nil", nil},
			{"one byte short", make([]byte, size-1)},
			{"one byte long", make([]byte, size+1)},
			{"64 bytes", make([]byte, 64)}, // an ed25519.PrivateKey is not the stored form
		}
	}
	for _, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.ECDSAP384} {
		size := PrivateSize(alg)
		n := curveOrder(alg)
		nPlus1 := bytes.Clone(n)
		nPlus1[size-1]++
		cases[alg] = append(cases[alg],
			bad{"zero", make([]byte, size)},
			bad{"n", n},
			bad{"n+1", nPlus1},
			bad{"2^N-1", bytes.Repeat([]byte{0xff}, size)},
		)
	}
	for alg, cs := range cases {
		for _, c := range cs {
			s, err := FromPrivate(alg, c.priv)
			var pe *PrivateKeyError
			if s != nil || !errors.As(err, &pe) || !errors.Is(err, pluton.ErrInvalidArgument) || pe.Algorithm != alg {
				t.Errorf("%v, %s: %v, %v; want a *PrivateKeyError", alg, c.name, s, err)
			}
		}
	}
	// Edge values that are valid.
	for _, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.ECDSAP384} {
		nMinus1 := curveOrder(alg)
		nMinus1[len(nMinus1)-1]--
		one := make([]byte, PrivateSize(alg))
		one[len(one)-1] = 1
		for _, priv := range [][]byte{one, nMinus1} {
			if _, err := FromPrivate(alg, priv); err != nil {
				t.Errorf("%v, %x: %v", alg, priv, err)
			}
		}
	}
}

func TestSigners(t *testing.T) {
	signers := map[pluton.Algorithm]crypto.Signer{}
	for _, alg := range pluton.Algorithms() {
		_, s, err := Generate(alg, mathrand.NewChaCha8([32]byte{9}))
		if err != nil {
			t.Fatal(err)
		}
		signers[alg] = s
	}
	msg := []byte("message")

	t.Run("ECDSA signs in DER", func(t *testing.T) {
		for _, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.ECDSAP384} {
			s := signers[alg]
			if _, ok := s.(*ecdsa.PrivateKey); !ok {
				t.Fatalf("%v signer is a %T", alg, s)
			}
			sig, err := s.Sign(rand.Reader, alg.Digest(msg), alg.SignerOpts())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pluton.ECDSASignatureToP1363(alg, sig); err != nil {
				t.Errorf("%v signature is not strict DER: %v", alg, err)
			}
			if err := pluton.Verify(s.Public(), alg, msg, sig); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("Ed25519", func(t *testing.T) {
		s := signers[pluton.Ed25519]
		if _, ok := s.(ed25519.PrivateKey); !ok {
			t.Fatalf("signer is a %T", s)
		}
	})

	t.Run("ML-DSA-65 is hedged and takes the message", func(t *testing.T) {
		s := signers[pluton.MLDSA65]
		if _, ok := s.Public().(*mldsa65.PublicKey); !ok {
			t.Fatalf("Public() is a %T", s.Public())
		}
		sig1, err := s.Sign(nil, msg, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		sig2, err := s.Sign(nil, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Hedged signing draws a fresh rnd each time: two signatures of
		// one message differ (the deterministic variant would repeat).
		if bytes.Equal(sig1, sig2) {
			t.Error("two signatures of one message are equal: not hedged")
		}
		for _, sig := range [][]byte{sig1, sig2} {
			if err := pluton.Verify(s.Public(), pluton.MLDSA65, msg, sig); err != nil {
				t.Error(err)
			}
		}
		if _, err := s.Sign(nil, pluton.ECDSAP256.Digest(msg), crypto.SHA256); err == nil {
			t.Error("Sign accepted a pre-hashed message")
		}
	})
}

func BenchmarkGenerate(b *testing.B) {
	for _, alg := range pluton.Algorithms() {
		b.Run(alg.String(), func(b *testing.B) {
			r := mathrand.NewChaCha8([32]byte{})
			for b.Loop() {
				priv, _, err := Generate(alg, r)
				if err != nil {
					b.Fatal(err)
				}
				clear(priv)
			}
		})
	}
}
