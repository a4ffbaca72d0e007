package keywrap

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC5649Vectors checks the two examples of RFC 5649, section 6.
func TestRFC5649Vectors(t *testing.T) {
	kek := "5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8"
	for _, tc := range []struct{ name, key, wrapped string }{
		{"section6-20octets", "c37b7e6492584340 bed1220780894115 5068f738",
			"138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a"},
		{"section6-7octets", "466f7250617369", "afbeb0f07dfbf541 9200f2ccb50bb24f"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, key, want := unhex(t, kek), unhex(t, tc.key), unhex(t, tc.wrapped)
			got, err := Wrap(k, key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Wrap = %x, want %x", got, want)
			}
			back, err := Unwrap(k, want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, key) {
				t.Fatalf("Unwrap = %x, want %x", back, key)
			}
		})
	}
}

// TestRFC3394Vectors checks W and W^-1 against RFC 3394, sections 4.1
// (128-bit KEK, 128-bit key) and 4.6 (256-bit KEK, 256-bit key), with the
// default IV A6A6A6A6A6A6A6A6 of section 2.2.3.1.
func TestRFC3394Vectors(t *testing.T) {
	for _, tc := range []struct{ name, kek, key, wrapped string }{
		{"4.1", "000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
			"1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5"},
		{"4.6", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := aes.NewCipher(unhex(t, tc.kek))
			if err != nil {
				t.Fatal(err)
			}
			buf := append(bytes.Repeat([]byte{0xA6}, 8), unhex(t, tc.key)...)
			wrapInPlace(b, buf)
			if want := unhex(t, tc.wrapped); !bytes.Equal(buf, want) {
				t.Fatalf("W = %x, want %x", buf, want)
			}
			unwrapInPlace(b, buf)
			if want := append(bytes.Repeat([]byte{0xA6}, 8), unhex(t, tc.key)...); !bytes.Equal(buf, want) {
				t.Fatalf("W^-1 = %x, want %x", buf, want)
			}
		})
	}
}

func TestRoundTripAndTamper(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 32)
	for n := 1; n <= 70; n++ {
		p := bytes.Repeat([]byte{byte(n)}, n)
		w, err := Wrap(kek, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(w) != 8+(n+7)/8*8 {
			t.Fatalf("%d bytes wrap to %d", n, len(w))
		}
		got, err := Unwrap(kek, w)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("n=%d: %x, %v", n, got, err)
		}
		for i := range w {
			bad := bytes.Clone(w)
			bad[i] ^= 0x01
			if _, err := Unwrap(kek, bad); !errors.Is(err, ErrUnwrap) {
				t.Fatalf("n=%d: flipped byte %d unwrapped: %v", n, i, err)
			}
		}
		other := bytes.Repeat([]byte{8}, 32)
		if _, err := Unwrap(other, w); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("n=%d: other KEK unwrapped: %v", n, err)
		}
	}
}

// TestRejectsBadPadding builds inputs whose AIV or padding is wrong but
// that decrypt: they must be refused.
func TestRejectsBadPadding(t *testing.T) {
	kek := bytes.Repeat([]byte{1}, 16)
	b, _ := aes.NewCipher(kek)
	mk := func(aiv []byte, body []byte) []byte {
		buf := append(bytes.Clone(aiv), body...)
		if len(buf) == 16 {
			b.Encrypt(buf, buf)
		} else {
			wrapInPlace(b, buf)
		}
		return buf
	}
	for _, tc := range []struct {
		name      string
		aiv, body []byte
	}{
		{"nonzero-padding", unhex(t, "A65959A600000005"), unhex(t, "0102030405000001")},
		{"mli-too-small", unhex(t, "A65959A600000008"), unhex(t, "01020304050607080900000000000000")},
		{"mli-too-large", unhex(t, "A65959A600000009"), unhex(t, "0102030405060708")},
		{"mli-zero", unhex(t, "A65959A600000000"), unhex(t, "0000000000000000")},
		{"rfc3394-iv", unhex(t, "A6A6A6A6A6A6A6A6"), unhex(t, "01020304050607080102030405060708")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Unwrap(kek, mk(tc.aiv, tc.body)); !errors.Is(err, ErrUnwrap) {
				t.Fatalf("got %v, want ErrUnwrap", err)
			}
		})
	}
	for _, n := range []int{0, 8, 15, 17, 23} {
		if _, err := Unwrap(kek, make([]byte, n)); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
	if _, err := Wrap(kek, nil); err == nil {
		t.Fatal("Wrap of nothing succeeded")
	}
	if _, err := Wrap(make([]byte, 15), []byte{1}); err == nil {
		t.Fatal("15-byte KEK accepted")
	}
}

func FuzzUnwrap(f *testing.F) {
	f.Add(unhex(f, "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"))
	f.Add(unhex(f, "afbeb0f07dfbf5419200f2ccb50bb24f"))
	f.Add([]byte{})
	kek := unhex(f, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Unwrap(kek, in)
		if err != nil {
			if p != nil {
				t.Fatal("output with an error")
			}
			return
		}
		// Whatever unwraps wraps back to the same bytes (wrapping is
		// deterministic).
		w, err := Wrap(kek, p)
		if err != nil || !bytes.Equal(w, in) {
			t.Fatalf("rewrap %x, want %x (%v)", w, in, err)
		}
	})
}
