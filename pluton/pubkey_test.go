package pluton

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

func TestMarshalParseRoundTrip(t *testing.T) {
	// The ML-DSA-65 encoding is fixed by RFC 9881, §4 (and its Appendix
	// C example keys): SEQUENCE (1970 bytes) { SEQUENCE { OID
	// 2.16.840.1.101.3.4.3.18 }, BIT STRING (1953 bytes) { 00, pk } }.
	mldsaPrefix := mustDecode(t, "308207b2300b0609608648016503040312038207a100")
	wantLen := map[Algorithm]int{ECDSAP256: 91, ECDSAP384: 120, Ed25519: 44, MLDSA65: 1974}
	for alg, s := range testSigners(t) {
		t.Run(alg.String(), func(t *testing.T) {
			der, err := MarshalPublicKey(s.Public())
			if err != nil {
				t.Fatal(err)
			}
			if len(der) != wantLen[alg] {
				t.Errorf("encoding is %d bytes, want %d", len(der), wantLen[alg])
			}
			if alg == MLDSA65 && !bytes.HasPrefix(der, mldsaPrefix) {
				t.Errorf("ML-DSA-65 SubjectPublicKeyInfo prefix %x, want %x", der[:len(mldsaPrefix)], mldsaPrefix)
			}
			pub, got, err := ParsePublicKey(der)
			if err != nil {
				t.Fatal(err)
			}
			if got != alg {
				t.Errorf("ParsePublicKey algorithm %v, want %v", got, alg)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
				t.Error("parsed key differs from the marshalled one")
			}
			if alg != MLDSA65 {
				// crypto/x509 must agree on the ECDSA and Ed25519 encodings.
				want, err := x509.MarshalPKIXPublicKey(s.Public())
				if err != nil || !bytes.Equal(der, want) {
					t.Errorf("differs from crypto/x509 (%v)", err)
				}
			}
		})
	}
}

// rsaSPKI is a syntactically plausible rsaEncryption SubjectPublicKeyInfo
// (RFC 3279, §2.3.1); only the algorithm is looked at.
func rsaSPKI() []byte {
	algID := appendElement(nil, tagSequence, append(appendElement(nil, tagOID, []byte("\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01")), 0x05, 0x00))
	return appendElement(nil, tagSequence, appendElement(algID, tagBitString, []byte{0, 0x30, 0x03, 0x02, 0x01, 0x03}))
}

func TestParsePublicKeyRejects(t *testing.T) {
	signers := testSigners(t)
	marshal := func(alg Algorithm) []byte {
		der, err := MarshalPublicKey(signers[alg].Public())
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	ed, p256, ml := marshal(Ed25519), marshal(ECDSAP256), marshal(MLDSA65)
	edKey := ed[12:]
	p256Point := p256[len(p256)-65:]

	spki := func(algID, bits []byte) []byte {
		return appendElement(nil, tagSequence, appendElement(appendElement(nil, tagSequence, algID), tagBitString, bits))
	}
	oid := func(o string) []byte { return appendElement(nil, tagOID, []byte(o)) }

	offCurve := bytes.Clone(p256Point)
	offCurve[64] ^= 1
	compressed := append([]byte{0x02 | p256Point[64]&1}, p256Point[1:33]...)

	p224, err := ecdsa.ParseRawPrivateKey(elliptic.P224(), bytes.Repeat([]byte{1}, 28))
	if err != nil {
		t.Fatal(err)
	}
	p224DER, err := x509.MarshalPKIXPublicKey(p224.Public())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		der         []byte
		unsupported bool
	}{
		{"empty", nil, false},
		{"too long", append(bytes.Clone(ml), make([]byte, 100)...), false},
		{"trailing data", append(bytes.Clone(ed), 0), false},
		{"truncated", ed[:len(ed)-1], false},
		{"BER length", cat([]byte{0x30, 0x81, 0x2a}, ed[2:]), false},
		{"indefinite length", cat([]byte{0x30, 0x80}, ed[2:], []byte{0, 0}), false},
		{"not a SEQUENCE", cat([]byte{0x31}, ed[1:]), false},
		{"Ed25519 NULL parameters", spki(cat(oid(oidEd25519), []byte{5, 0}), cat([]byte{0}, edKey)), false},
		{"Ed25519 unused bits", spki(oid(oidEd25519), cat([]byte{1}, edKey)), false},
		{"Ed25519 short key", spki(oid(oidEd25519), cat([]byte{0}, edKey[:31])), false},
		{"Ed25519 long key", spki(oid(oidEd25519), cat([]byte{0}, edKey, []byte{0})), false},
		{"P-256 point not on curve", spki(cat(oid(oidECPublicKey), oid(oidP256)), cat([]byte{0}, offCurve)), false},
		{"P-256 compressed point", spki(cat(oid(oidECPublicKey), oid(oidP256)), cat([]byte{0}, compressed)), false},
		{"P-256 point at infinity", spki(cat(oid(oidECPublicKey), oid(oidP256)), []byte{0, 0}), false},
		{"ECDSA without curve", spki(oid(oidECPublicKey), cat([]byte{0}, p256Point)), false},
		{"ECDSA curve and extra", spki(cat(oid(oidECPublicKey), oid(oidP256), []byte{5, 0}), cat([]byte{0}, p256Point)), false},
		{"ML-DSA-65 NULL parameters", spki(cat(oid(oidMLDSA65), []byte{5, 0}), ml[21:]), false},
		{"ML-DSA-65 unused bits", cat(ml[:21], []byte{1}, ml[22:]), false},
		{"ML-DSA-65 1951 bytes", spki(oid(oidMLDSA65), ml[21:len(ml)-1]), false},
		{"ML-DSA-65 1953 bytes", spki(oid(oidMLDSA65), cat(ml[21:], []byte{0})), false},
		{"empty BIT STRING", spki(oid(oidMLDSA65), nil), false},
		{"P-224", p224DER, true},
		{"RSA", rsaSPKI(), true},
		{"unknown OID", spki(oid("\x2b\x65\x71"), cat([]byte{0}, make([]byte, 57))), true}, // Ed448
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, alg, err := ParsePublicKey(tt.der)
			if err == nil {
				t.Fatalf("accepted: %T", pub)
			}
			if pub != nil || alg != AlgorithmUnknown {
				t.Errorf("returned %T, %v with an error", pub, alg)
			}
			want := ErrInvalidKey
			if tt.unsupported {
				want = ErrUnsupportedAlgorithm
			}
			if !errors.Is(err, want) {
				t.Errorf("error %v, want one wrapping %v", err, want)
			}
			t.Log(err)
			if !tt.unsupported {
				var ke *KeyError
				if !errors.As(err, &ke) {
					t.Errorf("error %v is not a *KeyError", err)
				}
			}
		})
	}
}

func TestAlgorithmOf(t *testing.T) {
	for alg, s := range testSigners(t) {
		if got, err := AlgorithmOf(s.Public()); err != nil || got != alg {
			t.Errorf("AlgorithmOf(%T) = %v, %v; want %v", s.Public(), got, err, alg)
		}
	}
	p521, err := ecdsa.ParseRawPrivateKey(elliptic.P521(), bytes.Repeat([]byte{1}, 66))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		pub  crypto.PublicKey
		want error
	}{
		{"nil", nil, ErrInvalidKey},
		{"nil ecdsa", (*ecdsa.PublicKey)(nil), ErrInvalidKey},
		{"ecdsa without curve", &ecdsa.PublicKey{}, ErrInvalidKey},
		{"short ed25519", ed25519.PublicKey(make([]byte, 31)), ErrInvalidKey},
		{"nil mldsa65", (*mldsa65.PublicKey)(nil), ErrInvalidKey},
		{"P-521", p521.Public(), ErrUnsupportedAlgorithm},
		{"ecdsa value, not pointer", *p521.Public().(*ecdsa.PublicKey), ErrUnsupportedAlgorithm},
		{"ed25519 pointer", new(ed25519.PublicKey), ErrUnsupportedAlgorithm},
		{"bytes", []byte{1, 2, 3}, ErrUnsupportedAlgorithm},
	} {
		if got, err := AlgorithmOf(tt.pub); !errors.Is(err, tt.want) || got != AlgorithmUnknown {
			t.Errorf("%s: AlgorithmOf = %v, %v; want an error wrapping %v", tt.name, got, err, tt.want)
		}
		if _, err := MarshalPublicKey(tt.pub); !errors.Is(err, tt.want) {
			t.Errorf("%s: MarshalPublicKey error %v, want %v", tt.name, err, tt.want)
		}
	}
	// A point off the curve is caught by MarshalPublicKey, not AlgorithmOf.
	// Only the deprecated coordinates can build one: ParseUncompressedPublicKey
	// refuses it.
	//lint:ignore SA1019 an off-curve key cannot be built otherwise
	bad := &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}
	if _, err := MarshalPublicKey(bad); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("MarshalPublicKey of an off-curve point: %v", err)
	}
}

func TestVerifyErrors(t *testing.T) {
	signers := testSigners(t)
	msg := []byte("rootline")
	sigs := map[Algorithm][]byte{}
	for alg, s := range signers {
		sigs[alg] = testSign(t, alg, s, msg)
		if err := Verify(s.Public(), alg, msg, sigs[alg]); err != nil {
			t.Fatalf("%v: valid signature refused: %v", alg, err)
		}
	}

	isKeyErr := func(err error) bool { var e *KeyError; return errors.As(err, &e) && errors.Is(err, ErrInvalidKey) }
	isSigErr := func(reason string) func(error) bool {
		return func(err error) bool {
			var e *SignatureError
			return errors.As(err, &e) && errors.Is(err, ErrInvalidSignature) && (reason == "" || e.Reason == reason)
		}
	}
	isUnsupported := func(err error) bool { return errors.Is(err, ErrUnsupportedAlgorithm) }

	p256pub := signers[ECDSAP256].Public()
	tests := []struct {
		name  string
		pub   crypto.PublicKey
		alg   Algorithm
		msg   []byte
		sig   []byte
		check func(error) bool
	}{
		{"unknown algorithm", p256pub, AlgorithmUnknown, msg, sigs[ECDSAP256], isUnsupported},
		{"out-of-range algorithm", p256pub, Algorithm(99), msg, sigs[ECDSAP256], isUnsupported},
		{"P-384 key for P-256", signers[ECDSAP384].Public(), ECDSAP256, msg, sigs[ECDSAP256], isKeyErr},
		{"P-256 key for P-384", p256pub, ECDSAP384, msg, sigs[ECDSAP384], isKeyErr},
		{"Ed25519 key for P-256", signers[Ed25519].Public(), ECDSAP256, msg, sigs[ECDSAP256], isKeyErr},
		{"ECDSA key for ML-DSA", p256pub, MLDSA65, msg, sigs[MLDSA65], isKeyErr},
		{"nil key", nil, Ed25519, msg, sigs[Ed25519], isKeyErr},
		{"nil *ecdsa.PublicKey", (*ecdsa.PublicKey)(nil), ECDSAP256, msg, sigs[ECDSAP256], isKeyErr},
		{"ECDSA key without coordinates", &ecdsa.PublicKey{Curve: elliptic.P256()}, ECDSAP256, msg, sigs[ECDSAP256], isKeyErr},
		//lint:ignore SA1019 an off-curve key cannot be built otherwise
		{"ECDSA key off the curve", &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}, ECDSAP256, msg, sigs[ECDSAP256], isKeyErr},
		{"short Ed25519 key", ed25519.PublicKey(make([]byte, 31)), Ed25519, msg, sigs[Ed25519], isKeyErr},
		{"nil *mldsa65.PublicKey", (*mldsa65.PublicKey)(nil), MLDSA65, msg, sigs[MLDSA65], isKeyErr},
		{"zero mldsa65.PublicKey", new(mldsa65.PublicKey), MLDSA65, msg, sigs[MLDSA65], isSigErr("verification failed")},
		{"P-256 wrong message", p256pub, ECDSAP256, []byte("other"), sigs[ECDSAP256], isSigErr("verification failed")},
		{"Ed25519 wrong message", signers[Ed25519].Public(), Ed25519, []byte("other"), sigs[Ed25519], isSigErr("verification failed")},
		{"ML-DSA wrong message", signers[MLDSA65].Public(), MLDSA65, []byte("other"), sigs[MLDSA65], isSigErr("verification failed")},
		{"Ed25519 63 bytes", signers[Ed25519].Public(), Ed25519, msg, sigs[Ed25519][:63], isSigErr("wrong length")},
		{"ML-DSA 3308 bytes", signers[MLDSA65].Public(), MLDSA65, msg, sigs[MLDSA65][:3308], isSigErr("wrong length")},
		{"ECDSA P-384 signature for P-256", p256pub, ECDSAP256, msg, sigs[ECDSAP384], isSigErr("")},
		{"ECDSA empty", p256pub, ECDSAP256, msg, nil, isSigErr("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.pub, tt.alg, tt.msg, tt.sig)
			if !tt.check(err) {
				t.Errorf("Verify: unexpected error %v", err)
			}
			err = VerifyP1363(tt.pub, tt.alg, tt.msg, tt.sig)
			if err == nil {
				t.Errorf("VerifyP1363 accepted")
			}
		})
	}

	// A DER signature given to VerifyP1363 and the other way round.
	raw, err := ECDSASignatureToP1363(ECDSAP256, sigs[ECDSAP256])
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyP1363(p256pub, ECDSAP256, msg, raw); err != nil {
		t.Errorf("VerifyP1363: %v", err)
	}
	if err := VerifyP1363(p256pub, ECDSAP256, msg, sigs[ECDSAP256]); !isSigErr("wrong length")(err) {
		t.Errorf("VerifyP1363 of a DER signature: %v", err)
	}
	if err := Verify(p256pub, ECDSAP256, msg, raw); !isSigErr("unexpected DER tag")(err) && !isSigErr("wrong length")(err) {
		t.Errorf("Verify of a P1363 signature: %v", err)
	}
}

func TestECDSASignatureConversions(t *testing.T) {
	n := ecdsaOrder(ECDSAP256)
	nMinus1 := new(big.Int).Sub(new(big.Int).SetBytes(n), big.NewInt(1)).FillBytes(make([]byte, 32))
	one := make([]byte, 32)
	one[31] = 1
	high := make([]byte, 32)
	high[0] = 0x80
	high[31] = 1

	good := []struct {
		name     string
		der, raw []byte
	}{
		{"r=1, s=n-1", cat(mustDecode(t, "3026020101022100"), nMinus1), cat(one, nMinus1)},
		{"high bit needs a zero octet", cat(mustDecode(t, "3026022100"), high, mustDecode(t, "020101")), cat(high, one)},
	}
	for _, tt := range good {
		raw, err := ECDSASignatureToP1363(ECDSAP256, tt.der)
		if err != nil || !bytes.Equal(raw, tt.raw) {
			t.Errorf("%s: ToP1363 = %x, %v; want %x", tt.name, raw, err, tt.raw)
		}
		der, err := ECDSASignatureFromP1363(ECDSAP256, tt.raw)
		if err != nil || !bytes.Equal(der, tt.der) {
			t.Errorf("%s: FromP1363 = %x, %v; want %x", tt.name, der, err, tt.der)
		}
	}

	badDER := []struct {
		name, reason string
		der          []byte
	}{
		{"r = 0", "r out of range", mustDecode(t, "3006020100020101")},
		{"s = 0", "s out of range", mustDecode(t, "3006020101020100")},
		{"r = n", "r out of range", cat(mustDecode(t, "3026022100"), n, mustDecode(t, "020101"))},
		{"r negative", "negative DER INTEGER", mustDecode(t, "30060201ff020101")},
		{"r with a needless zero", "non-minimal DER INTEGER (BER)", mustDecode(t, "300702020001020101")},
		{"BER length", "non-minimal DER length (BER)", mustDecode(t, "308106020101020101")},
		{"indefinite length", "indefinite DER length (BER)", mustDecode(t, "30800201010201010000")},
		{"trailing data", "trailing data after DER signature", mustDecode(t, "300602010102010100")},
		{"extra element", "trailing data in DER signature", mustDecode(t, "3009020101020101020101")},
		{"empty INTEGER", "empty DER INTEGER", mustDecode(t, "30050200020101")},
		{"empty", "truncated DER", nil},
		{"too long", "wrong length", make([]byte, 73)},
	}
	for _, tt := range badDER {
		_, err := ECDSASignatureToP1363(ECDSAP256, tt.der)
		var se *SignatureError
		if !errors.As(err, &se) || se.Reason != tt.reason || !errors.Is(err, ErrInvalidSignature) {
			t.Errorf("%s: ToP1363 error %v, want reason %q", tt.name, err, tt.reason)
		}
	}

	badRaw := []struct {
		name, reason string
		raw          []byte
	}{
		{"63 bytes", "wrong length", make([]byte, 63)},
		{"65 bytes", "wrong length", make([]byte, 65)},
		{"r = 0", "r out of range", cat(make([]byte, 32), one)},
		{"s = n", "s out of range", cat(one, n)},
		{"r = 2^256-1", "r out of range", cat(bytes.Repeat([]byte{0xff}, 32), one)},
	}
	for _, tt := range badRaw {
		_, err := ECDSASignatureFromP1363(ECDSAP256, tt.raw)
		var se *SignatureError
		if !errors.As(err, &se) || se.Reason != tt.reason {
			t.Errorf("%s: FromP1363 error %v, want reason %q", tt.name, err, tt.reason)
		}
	}

	for _, alg := range []Algorithm{Ed25519, MLDSA65, AlgorithmUnknown} {
		if _, err := ECDSASignatureToP1363(alg, nil); !errors.Is(err, ErrUnsupportedAlgorithm) {
			t.Errorf("ToP1363(%v): %v", alg, err)
		}
		if _, err := ECDSASignatureFromP1363(alg, nil); !errors.Is(err, ErrUnsupportedAlgorithm) {
			t.Errorf("FromP1363(%v): %v", alg, err)
		}
	}
}

func cat(b ...[]byte) []byte { return bytes.Join(b, nil) }
