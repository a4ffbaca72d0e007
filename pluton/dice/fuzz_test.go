package dice

import (
	"bytes"
	"crypto"
	"errors"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// FuzzDerive checks that Derive never panics, fails exactly on bad CDI
// lengths, an unknown config type or a missing config descriptor (with an
// error wrapping pluton.ErrInvalidArgument), and is otherwise deterministic
// with 32-byte outputs.
func FuzzDerive(f *testing.F) {
	zero := make([]byte, CDISize)
	f.Add(zero, zero, []byte{}, []byte{}, []byte{}, []byte{}, 0, byte(0), []byte{}, false)
	f.Add(zero, zero[:31], []byte{1}, []byte{2}, []byte{3}, []byte{4}, 1, byte(1), []byte("config"), false)
	f.Add(bytes.Repeat([]byte{0xff}, 33), zero, []byte{}, []byte{}, []byte{}, []byte{}, 2, byte(3), []byte{}, true)
	f.Add(zero, zero, []byte{}, []byte{}, []byte{}, []byte{}, 1, byte(2), []byte{}, true)
	f.Fuzz(func(t *testing.T, attest, seal, code, config, authority, hidden []byte, configType int, mode byte, desc []byte, descNil bool) {
		in := &InputValues{
			ConfigType:       ConfigType(configType),
			ConfigDescriptor: desc,
			Mode:             Mode(mode),
		}
		if descNil {
			in.ConfigDescriptor = nil
		}
		copy(in.CodeHash[:], code)
		copy(in.ConfigValue[:], config)
		copy(in.AuthorityHash[:], authority)
		copy(in.Hidden[:], hidden)

		a, s, err := Derive(attest, seal, in)
		bad := len(attest) != CDISize || len(seal) != CDISize ||
			(in.ConfigType != ConfigInline && in.ConfigType != ConfigDescriptor) ||
			(in.ConfigType == ConfigDescriptor && in.ConfigDescriptor == nil)
		if bad {
			if !errors.Is(err, pluton.ErrInvalidArgument) || a != nil || s != nil {
				t.Fatalf("bad input: %x, %x, %v", a, s, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != CDISize || len(s) != CDISize {
			t.Fatalf("outputs of %d and %d bytes", len(a), len(s))
		}
		a2, s2, err := Derive(attest, seal, in)
		if err != nil || !bytes.Equal(a, a2) || !bytes.Equal(s, s2) {
			t.Fatalf("not deterministic: %v", err)
		}
	})
}

// FuzzKeyPairDeterministic checks that KeyPair gives the same key for the
// same CDI every time, and fails exactly on a bad CDI length or algorithm.
func FuzzKeyPairDeterministic(f *testing.F) {
	for _, alg := range pluton.Algorithms() {
		f.Add(make([]byte, CDISize), uint8(alg))
	}
	f.Add(make([]byte, 31), uint8(pluton.Ed25519))
	f.Add(make([]byte, CDISize), uint8(0))
	f.Fuzz(func(t *testing.T, cdi []byte, a uint8) {
		alg := pluton.Algorithm(a)
		k1, err := KeyPair(cdi, alg)
		switch {
		case !alg.Valid():
			if !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
				t.Fatalf("algorithm %d: %v", a, err)
			}
			return
		case len(cdi) != CDISize:
			if !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("CDI of %d bytes: %v", len(cdi), err)
			}
			return
		case err != nil:
			t.Fatal(err)
		}
		k2, err := KeyPair(bytes.Clone(cdi), alg)
		if err != nil {
			t.Fatal(err)
		}
		type equaler interface{ Equal(crypto.PrivateKey) bool }
		if !k1.(equaler).Equal(k2) {
			t.Fatalf("%v: two keys for CDI %x", alg, cdi)
		}
		id1, err1 := PublicKeyID(k1.Public())
		id2, err2 := PublicKeyID(k2.Public())
		if err1 != nil || err2 != nil || id1 != id2 {
			t.Fatalf("%v: IDs %x, %x (%v, %v)", alg, id1, id2, err1, err2)
		}
	})
}
