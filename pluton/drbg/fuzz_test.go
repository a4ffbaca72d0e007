package drbg

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// FuzzCTR instantiates a CTR_DRBG from arbitrary inputs and generates
// arbitrary lengths. Valid inputs must succeed and give the same output with
// AES-NI and with crypto/aes (and, for short requests, as the reference
// implementation in ctr_test.go); invalid ones must fail with an error
// wrapping pluton.ErrInvalidArgument, never panic.
func FuzzCTR(f *testing.F) {
	f.Add(uint8(2), true, make([]byte, 32), make([]byte, 16), []byte("perso"), []byte("additional"), uint32(32))
	f.Add(uint8(0), false, make([]byte, 32), []byte{}, []byte{}, []byte{}, uint32(17))
	f.Add(uint8(1), false, make([]byte, 40), []byte{}, make([]byte, 40), make([]byte, 41), uint32(1))
	f.Add(uint8(2), true, make([]byte, 31), make([]byte, 16), []byte{}, []byte{}, uint32(0))
	f.Add(uint8(0), true, make([]byte, 16), make([]byte, 8), []byte{}, []byte{}, uint32(maxRequestBytes+1))
	f.Add(uint8(3), true, make([]byte, 32), make([]byte, 16), []byte{}, []byte{}, uint32(64))
	f.Fuzz(func(t *testing.T, sel uint8, useDF bool, entropy, nonce, perso, additional []byte, length uint32) {
		keyBits := []int{128, 192, 256, 64}[sel%4]
		n := int(length % (maxRequestBytes + 2))
		keyLen := keyBits / 8
		seedLen := keyLen + blockLen
		validInst := keyBits != 64
		if useDF {
			validInst = validInst && len(entropy) >= keyLen && len(nonce) >= keyLen/2
		} else {
			validInst = validInst && len(entropy) == seedLen && len(perso) <= seedLen
		}
		validGen := n <= maxRequestBytes && (useDF || len(additional) <= seedLen)

		d, err := NewCTR(keyBits, useDF, entropy, nonce, perso)
		if !validInst {
			if !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("invalid instantiation accepted: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid instantiation failed: %v", err)
		}
		g, err := newCTR(keyBits, useDF, true, entropy, nonce, perso)
		if err != nil {
			t.Fatal(err)
		}
		out, out2 := make([]byte, n), make([]byte, n)
		err = d.Generate(out, additional)
		if !validGen {
			if !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("invalid Generate accepted: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid Generate failed: %v", err)
		}
		if err := g.Generate(out2, additional); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatal("AES-NI and crypto/aes disagree")
		}
		if n <= 1024 {
			want := newRefCTR(keyBits, useDF, entropy, nonce, perso).generate(n, additional)
			if !bytes.Equal(out, want) {
				t.Fatal("output differs from the reference implementation")
			}
		}
	})
}
