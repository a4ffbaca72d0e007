package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
)

func TestECDSARawToDER(t *testing.T) {
	for _, tc := range []struct {
		name, raw, der string
		size           int
	}{
		// Worked by hand from X.690 8.3: a top bit set needs a 0x00
		// prefix; leading zero bytes are dropped.
		{"small", "0000000000000000000000000000000000000000000000000000000000000001" +
			"0000000000000000000000000000000000000000000000000000000000000002",
			"3006020101020102", 32},
		{"high bit", "8000000000000000000000000000000000000000000000000000000000000000" +
			"7f00000000000000000000000000000000000000000000000000000000000000",
			"3045022100" + "8000000000000000000000000000000000000000000000000000000000000000" +
				"0220" + "7f00000000000000000000000000000000000000000000000000000000000000", 32},
		{"leading zero then high bit", "0080" + strings.Repeat("11", 30) + "00" + strings.Repeat("ff", 31),
			"3044" + "0220" + "0080" + strings.Repeat("11", 30) + "0220" + "00" + strings.Repeat("ff", 31), 32},
	} {
		raw, _ := hex.DecodeString(tc.raw)
		der, err := ecdsaRawToDER(raw, tc.size)
		if err != nil || hex.EncodeToString(der) != tc.der {
			t.Errorf("%s: %x, %v; want %s", tc.name, der, err, tc.der)
		}
	}
	for _, bad := range []struct {
		raw  []byte
		size int
	}{
		{make([]byte, 63), 32},
		{make([]byte, 64), 32}, // r = s = 0
		{append(make([]byte, 32), bytes.Repeat([]byte{1}, 32)...), 32}, // r = 0
		{make([]byte, 96), 32},
		{nil, 0},
	} {
		if der, err := ecdsaRawToDER(bad.raw, bad.size); err == nil {
			t.Errorf("ecdsaRawToDER(%x, %d) = %x", bad.raw, bad.size, der)
		}
	}
}

// ecdsaRawToDER agrees with encoding/asn1, and its output verifies with
// crypto/ecdsa, for real signatures on both curves.
func TestECDSARawToDERAgainstStdlib(t *testing.T) {
	for _, c := range []struct {
		curve elliptic.Curve
		size  int
	}{{elliptic.P256(), 32}, {elliptic.P384(), 48}} {
		key, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			d := sha256.Sum256([]byte{byte(i)})
			r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
			if err != nil {
				t.Fatal(err)
			}
			raw := append(r.FillBytes(make([]byte, c.size)), s.FillBytes(make([]byte, c.size))...)
			der, err := ecdsaRawToDER(raw, c.size)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := asn1.Marshal(struct{ R, S *big.Int }{r, s})
			if !bytes.Equal(der, want) {
				t.Fatalf("%x\nwant %x", der, want)
			}
			if !ecdsa.VerifyASN1(&key.PublicKey, d[:], der) {
				t.Fatal("does not verify")
			}
		}
	}
}

func TestParsePublicKey(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pt, _ := ek.PublicKey.Bytes()
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	octet := func(b []byte) []byte { return append([]byte{0x04, byte(len(b))}, b...) }
	for _, tc := range []struct {
		name  string
		alg   Algorithm
		point []byte
		ok    bool
	}{
		{"p256 DER", P256, octet(pt), true},
		{"p256 bare", P256, pt, true},
		{"p256 as p384", P384, octet(pt), false},
		{"p256 off curve", P256, octet(append(pt[:64:64], pt[64]^1)), false},
		{"p256 truncated", P256, octet(pt)[:66], false},
		{"ed25519 DER", Ed25519, octet(edPub), true},
		{"ed25519 bare", Ed25519, edPub, true},
		{"ed25519 short", Ed25519, edPub[:31], false},
		{"unknown", AlgorithmUnknown, pt, false},
		{"empty", P256, nil, false},
	} {
		pub, err := parsePublicKey(tc.alg, tc.point)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, %v", tc.name, pub, err)
			continue
		}
		if !tc.ok {
			continue
		}
		want := map[Algorithm]any{P256: &ek.PublicKey, Ed25519: edPub}[tc.alg]
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
			t.Errorf("%s: wrong key", tc.name)
		}
	}
}

func TestAlgorithmOf(t *testing.T) {
	for _, a := range []Algorithm{P256, P384, Ed25519} {
		if got := algorithmOf(a.keyType(), a.ecParams()); got != a {
			t.Errorf("%v: %v", a, got)
		}
	}
	if got := algorithmOf(ckkECEdwards, paramsEd25519Name); got != Ed25519 {
		t.Errorf("edwards25519 by name: %v", got)
	}
	if got := algorithmOf(ckkEC, paramsEd25519); got != AlgorithmUnknown {
		t.Errorf("Ed25519 params on CKK_EC: %v", got)
	}
	// secp256k1 (1.3.132.0.10) is not supported.
	if got := algorithmOf(ckkEC, []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}); got != AlgorithmUnknown {
		t.Errorf("secp256k1: %v", got)
	}
}
