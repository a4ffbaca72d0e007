package drbg

import (
	"crypto"
	"errors"
	"testing"

	"github.com/rootline/rootline/pluton"
)

func TestHMACInvalidInputs(t *testing.T) {
	e := func(n int) []byte { return make([]byte, n) }
	for _, tt := range []struct {
		name                  string
		h                     crypto.Hash
		entropy, nonce, perso []byte
	}{
		{"MD5", crypto.MD5, e(32), e(16), nil},
		{"hash 0", 0, e(32), e(16), nil},
		{"BLAKE2b-256 (not approved)", crypto.BLAKE2b_256, e(32), e(16), nil},
		{"SHA-256 entropy below strength", crypto.SHA256, e(31), e(16), nil},
		{"SHA-256 no nonce", crypto.SHA256, e(32), nil, nil},
		{"SHA-256 nonce below half strength", crypto.SHA256, e(32), e(15), nil},
		{"SHA-1 entropy below strength", crypto.SHA1, e(15), e(8), nil},
		{"SHA-224 entropy below strength", crypto.SHA224, e(23), e(12), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewHMAC(tt.h, tt.entropy, tt.nonce, tt.perso)
			if !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("NewHMAC = %v, %v; want an error wrapping ErrInvalidArgument", d, err)
			}
		})
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512,
		crypto.SHA512_224, crypto.SHA512_256, crypto.SHA3_224, crypto.SHA3_256, crypto.SHA3_384, crypto.SHA3_512} {
		n := hmacStrength(h) / 8
		if _, err := NewHMAC(h, e(n), e(n/2), nil); err != nil {
			t.Errorf("%v with minimum lengths: %v", h, err)
		}
	}
}

func twinHMACs(t *testing.T) (*HMAC, *HMAC) {
	t.Helper()
	entropy, nonce := randBytes(32), randBytes(16)
	a, err := NewHMAC(crypto.SHA256, entropy, nonce, []byte("twin"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewHMAC(crypto.SHA256, entropy, nonce, []byte("twin"))
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestHMACFailedCallsLeaveStateUnchanged(t *testing.T) {
	a, b := twinHMACs(t)
	out := make([]byte, maxRequestBytes+1)
	if err := b.Generate(out, []byte("x")); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Errorf("Generate(2^19+8 bits) = %v, want ErrInvalidArgument", err)
	}
	if err := b.Reseed(make([]byte, 31), []byte("x")); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Errorf("Reseed(31 bytes) = %v, want ErrInvalidArgument", err)
	}
	sameOutput(t, a, b)
	if err := b.Generate(out[:maxRequestBytes], nil); err != nil {
		t.Errorf("Generate(2^19 bits) = %v", err)
	}
}

func TestHMACReseedRequired(t *testing.T) {
	a, b := twinHMACs(t)
	a.reseedInterval, b.reseedInterval = 2, 2
	out := make([]byte, 16)
	for range 2 {
		a.Generate(out, nil)
		b.Generate(out, nil)
	}
	if err := b.Generate(out, nil); !errors.Is(err, ErrReseedRequired) {
		t.Fatalf("request 3 = %v, want ErrReseedRequired", err)
	}
	a.reseedInterval, b.reseedInterval = 3, 3
	sameOutput(t, a, b)
	if err := b.Reseed(make([]byte, 32), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Generate(out, nil); err != nil {
		t.Fatalf("after reseed: %v", err)
	}
}

func TestHMACUninstantiate(t *testing.T) {
	var zero HMAC
	if err := zero.Generate(make([]byte, 16), nil); !errors.Is(err, ErrUninstantiated) {
		t.Errorf("zero HMAC Generate = %v", err)
	}
	if err := zero.Reseed(make([]byte, 32), nil); !errors.Is(err, ErrUninstantiated) {
		t.Errorf("zero HMAC Reseed = %v", err)
	}
	d, _ := twinHMACs(t)
	key, v := d.key, d.v
	d.Uninstantiate()
	if err := d.Generate(make([]byte, 16), nil); !errors.Is(err, ErrUninstantiated) {
		t.Errorf("Generate after Uninstantiate = %v", err)
	}
	for _, b := range append(key, v...) {
		if b != 0 {
			t.Fatal("Uninstantiate left Key or V behind")
		}
	}
}
