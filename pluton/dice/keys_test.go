package dice

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/rootline/rootline/pluton"
)

// Compile-time checks that KeyPair's results are crypto.Signers.
var (
	_ crypto.Signer = ed25519.PrivateKey(nil)
	_ crypto.Signer = (*ecdsa.PrivateKey)(nil)
	_ crypto.Signer = (*mldsa65.PrivateKey)(nil)
)

func TestSalts(t *testing.T) {
	// Open Profile for DICE, "Salt": both lines of each salt.
	for _, tt := range []struct{ name, got, want string }{
		{"ASYM_SALT", asymSalt, "63B6A04D2C077FC10F639F21DA793844356CC2B0B441B3A77124035C03F8E1BE" +
			"6035D31F282821A7450A02222AB1B3CFF1679B05AB1CA5D1AFFB789CCD2B0B3B"},
		{"ID_SALT", idSalt, "DBDBAEBC8020DA9FF0DD5A24C83AA5A54286DFC263031E329B4DA148430659FE" +
			"62CDB5B7E1E00FC680306711EB444AF77209359496FCFF1DB9520BA51C7B29EA"},
	} {
		want, _ := hex.DecodeString(tt.want)
		if len(tt.got) != 64 || tt.got != string(want) {
			t.Errorf("%s = %x, want %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestKeyPairErrors(t *testing.T) {
	cdi := make([]byte, CDISize)
	for _, tt := range []struct {
		name string
		cdi  []byte
		alg  pluton.Algorithm
		want error
	}{
		{"unknown algorithm", cdi, pluton.AlgorithmUnknown, pluton.ErrUnsupportedAlgorithm},
		{"algorithm 99", cdi, pluton.Algorithm(99), pluton.ErrUnsupportedAlgorithm},
		{"nil CDI", nil, pluton.Ed25519, pluton.ErrInvalidArgument},
		{"short CDI", cdi[:16], pluton.ECDSAP256, pluton.ErrInvalidArgument},
		{"long CDI", make([]byte, 64), pluton.MLDSA65, pluton.ErrInvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := KeyPair(tt.cdi, tt.alg)
			if !errors.Is(err, tt.want) || k != nil {
				t.Fatalf("KeyPair = %v, %v; want %v", k, err, tt.want)
			}
		})
	}
	if _, err := AsymSeed(cdi[:31]); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Errorf("AsymSeed(31 bytes): %v", err)
	}
}

// TestKeyPairSigns checks each algorithm's key type, that it signs with
// the options pluton.Algorithm gives, and that the signature verifies.
func TestKeyPairSigns(t *testing.T) {
	cdi := bytes.Repeat([]byte{0x42}, CDISize)
	msg := []byte("rootline dice")
	for _, alg := range pluton.Algorithms() {
		t.Run(alg.String(), func(t *testing.T) {
			k, err := KeyPair(cdi, alg)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := k.Sign(rand.Reader, alg.Digest(msg), alg.SignerOpts())
			if err != nil {
				t.Fatal(err)
			}
			var ok bool
			switch alg {
			case pluton.Ed25519:
				ok = ed25519.Verify(k.(ed25519.PrivateKey).Public().(ed25519.PublicKey), msg, sig)
			case pluton.ECDSAP256, pluton.ECDSAP384:
				pub := k.(*ecdsa.PrivateKey).Public().(*ecdsa.PublicKey)
				if want := map[pluton.Algorithm]elliptic.Curve{pluton.ECDSAP256: elliptic.P256(), pluton.ECDSAP384: elliptic.P384()}[alg]; pub.Curve != want {
					t.Fatalf("curve %s", pub.Curve.Params().Name)
				}
				ok = ecdsa.VerifyASN1(pub, alg.Digest(msg), sig)
			case pluton.MLDSA65:
				ok = mldsa65.Verify(k.(*mldsa65.PrivateKey).Public().(*mldsa65.PublicKey), msg, nil, sig)
			}
			if !ok {
				t.Error("signature does not verify")
			}
		})
	}
}

// TestKeyPairMLDSA65Seed checks the ML-DSA-65 extension: the key is
// FIPS 204 ML-DSA.KeyGen_internal of ξ = AsymSeed(CDI).
func TestKeyPairMLDSA65Seed(t *testing.T) {
	cdi := bytes.Repeat([]byte{0x07}, CDISize)
	seed, err := AsymSeed(cdi)
	if err != nil {
		t.Fatal(err)
	}
	k, err := KeyPair(cdi, pluton.MLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	var xi [mldsa65.SeedSize]byte
	copy(xi[:], seed)
	_, want := mldsa65.NewKeyFromSeed(&xi)
	if !want.Equal(k.(*mldsa65.PrivateKey)) || !bytes.Equal(k.(*mldsa65.PrivateKey).Seed(), seed) {
		t.Error("ML-DSA-65 key is not NewKeyFromSeed(AsymSeed(CDI))")
	}
}

// openDiceScalar is open-dice's derivePrivateKey (src/boringssl_ecdsa_utils.c)
// written as the C code has it, with n as the order: no V update after the
// second K, two V updates at the top of the loop, K updated after every
// candidate. oneUpdate drops the first of the two V updates, the misreading
// the vectors README warns about.
func openDiceScalar(seed, n []byte, oneUpdate bool) []byte {
	mac := func(k []byte, parts ...[]byte) []byte {
		h := hmac.New(sha512.New, k)
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	k := make([]byte, 64)
	v := bytes.Repeat([]byte{0x01}, 64)
	k = mac(k, v, []byte{0x00}, seed)
	v = mac(k, v)
	k = mac(k, v, []byte{0x01}, seed)
	for {
		if !oneUpdate {
			v = mac(k, v)
		}
		v = mac(k, v)
		candidate := new(big.Int).SetBytes(v[:len(n)])
		k = mac(k, v, []byte{0x00})
		if candidate.Sign() != 0 && candidate.Cmp(new(big.Int).SetBytes(n)) < 0 {
			return v[:len(n)]
		}
	}
}

// TestKeyDRBGMatchesOpenDice checks that deriveScalar, written as RFC 6979
// steps, gives the same scalars as open-dice's loop, including when
// candidates are rejected: orders of 2²⁵⁵ and 2²⁵⁴ reject about half and
// three quarters of them, which the curve orders practically never do.
func TestKeyDRBGMatchesOpenDice(t *testing.T) {
	orders := map[string][]byte{
		"P-256": elliptic.P256().Params().N.FillBytes(make([]byte, 32)),
		"P-384": elliptic.P384().Params().N.FillBytes(make([]byte, 48)),
		"2^255": append([]byte{0x80}, make([]byte, 31)...),
		"2^254": append([]byte{0x40}, make([]byte, 31)...),
		"2^383": append([]byte{0x80}, make([]byte, 47)...),
	}
	for name, n := range orders {
		t.Run(name, func(t *testing.T) {
			for i := range 64 {
				seed := sha512.Sum512_256([]byte{byte(i), byte(len(n))})
				got, err := deriveScalar(seed[:], n)
				if err != nil {
					t.Fatal(err)
				}
				if want := openDiceScalar(seed[:], n, false); !bytes.Equal(got, want) {
					t.Fatalf("seed %x: scalar %x, open-dice gives %x", seed, got, want)
				}
				if bad := openDiceScalar(seed[:], n, true); bytes.Equal(got, bad) {
					t.Fatalf("seed %x: one V update per iteration gives the same scalar", seed)
				}
			}
		})
	}
}

func TestDeriveScalarGivesUp(t *testing.T) {
	// An order of 1 accepts no candidate.
	n := append(make([]byte, 31), 1)
	if k, err := deriveScalar(make([]byte, 32), n); err == nil {
		t.Fatalf("deriveScalar with n = 1 gave %x", k)
	}
}

func TestScalarInRange(t *testing.T) {
	n := elliptic.P256().Params().N
	nb := n.FillBytes(make([]byte, 32))
	check := func(k *big.Int) {
		t.Helper()
		want := k.Sign() > 0 && k.Cmp(n) < 0
		if got := scalarInRange(k.FillBytes(make([]byte, 32)), nb); got != want {
			t.Errorf("scalarInRange(%x) = %v, want %v", k, got, want)
		}
	}
	one := big.NewInt(1)
	max := new(big.Int).Sub(new(big.Int).Lsh(one, 256), one)
	for _, k := range []*big.Int{
		big.NewInt(0), one, big.NewInt(255), big.NewInt(256),
		new(big.Int).Sub(n, one), n, new(big.Int).Add(n, one), max,
		new(big.Int).Lsh(one, 255),
	} {
		check(k)
	}
	buf := make([]byte, 32)
	for range 1000 {
		rand.Read(buf)
		check(new(big.Int).SetBytes(buf))
		// Values sharing n's leading bytes, where the comparison is hard.
		copy(buf, nb[:28])
		check(new(big.Int).SetBytes(buf))
	}
}

func TestDeriveID(t *testing.T) {
	if _, err := DeriveID(nil); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Errorf("DeriveID(nil): %v", err)
	}
	// "The big-endian high-order bit is cleared": check many keys, some of
	// which have the bit set in the raw HKDF output.
	cleared := 0
	for i := range 256 {
		id, err := DeriveID([]byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		if id[0]&0x80 != 0 {
			t.Fatalf("ID %x has its top bit set", id)
		}
		if id[0] < 0x40 {
			cleared++
		}
	}
	if cleared == 0 || cleared == 256 {
		t.Errorf("%d of 256 IDs below 0x40: not looking like HKDF output", cleared)
	}
}

func TestPublicKeyBytes(t *testing.T) {
	cdi := make([]byte, CDISize)
	sizes := map[pluton.Algorithm]int{
		pluton.Ed25519:   32,
		pluton.ECDSAP256: 64,
		pluton.ECDSAP384: 96,
		pluton.MLDSA65:   mldsa65.PublicKeySize,
	}
	for _, alg := range pluton.Algorithms() {
		k, err := KeyPair(cdi, alg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := PublicKeyBytes(k.Public())
		if err != nil || len(b) != sizes[alg] {
			t.Errorf("%v: %d bytes, %v; want %d", alg, len(b), err, sizes[alg])
		}
		if _, err := PublicKeyID(k.Public()); err != nil {
			t.Errorf("%v: PublicKeyID: %v", alg, err)
		}
	}

	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := &rsa.PublicKey{N: big.NewInt(15), E: 3}
	for _, tt := range []struct {
		name string
		pub  crypto.PublicKey
		want error
	}{
		{"nil", nil, pluton.ErrUnsupportedAlgorithm},
		{"RSA", rsaKey, pluton.ErrUnsupportedAlgorithm},
		{"P-521", p521.Public(), pluton.ErrUnsupportedAlgorithm},
		{"ed25519 by value of wrong size", ed25519.PublicKey(make([]byte, 31)), pluton.ErrInvalidKey},
		{"nil ECDSA", (*ecdsa.PublicKey)(nil), pluton.ErrInvalidKey},
		{"ECDSA without curve", &ecdsa.PublicKey{}, pluton.ErrInvalidKey},
		//lint:ignore SA1019 an off-curve key cannot be built otherwise
		{"ECDSA off the curve", &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}, pluton.ErrInvalidKey},
		{"nil ML-DSA-65", (*mldsa65.PublicKey)(nil), pluton.ErrInvalidKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := PublicKeyBytes(tt.pub); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if _, err := PublicKeyID(tt.pub); !errors.Is(err, tt.want) {
				t.Errorf("PublicKeyID err = %v, want %v", err, tt.want)
			}
		})
	}
}
