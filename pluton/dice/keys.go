package dice

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha512"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/rootline/rootline/pluton"
)

// The salts of Open Profile for DICE, "Salt". Each is 64 bytes; the
// specification prints each over two lines of 32 bytes, and both lines are
// part of the salt (open-dice src/dice.c, kAsymSalt and kIdSalt). They are
// constants, not package variables, so nothing can change them.
const (
	// ASYM_SALT = 63B6A04D2C077FC10F639F21DA793844356CC2B0B441B3A77124035C03F8E1BE
	//             6035D31F282821A7450A02222AB1B3CFF1679B05AB1CA5D1AFFB789CCD2B0B3B
	asymSalt = "\x63\xb6\xa0\x4d\x2c\x07\x7f\xc1\x0f\x63\x9f\x21\xda\x79\x38\x44" +
		"\x35\x6c\xc2\xb0\xb4\x41\xb3\xa7\x71\x24\x03\x5c\x03\xf8\xe1\xbe" +
		"\x60\x35\xd3\x1f\x28\x28\x21\xa7\x45\x0a\x02\x22\x2a\xb1\xb3\xcf" +
		"\xf1\x67\x9b\x05\xab\x1c\xa5\xd1\xaf\xfb\x78\x9c\xcd\x2b\x0b\x3b"
	// ID_SALT = DBDBAEBC8020DA9FF0DD5A24C83AA5A54286DFC263031E329B4DA148430659FE
	//           62CDB5B7E1E00FC680306711EB444AF77209359496FCFF1DB9520BA51C7B29EA
	idSalt = "\xdb\xdb\xae\xbc\x80\x20\xda\x9f\xf0\xdd\x5a\x24\xc8\x3a\xa5\xa5" +
		"\x42\x86\xdf\xc2\x63\x03\x1e\x32\x9b\x4d\xa1\x48\x43\x06\x59\xfe" +
		"\x62\xcd\xb5\xb7\xe1\xe0\x0f\xc6\x80\x30\x67\x11\xeb\x44\x4a\xf7" +
		"\x72\x09\x35\x94\x96\xfc\xff\x1d\xb9\x52\x0b\xa5\x1c\x7b\x29\xea"
)

// KDF info strings ("Asymmetric Key Pair Derivation", "Deriving
// Identifiers").
const (
	infoKeyPair = "Key Pair"
	infoID      = "ID"
)

// maxECDSAAttempts bounds the ECDSA candidate loop. A candidate is rejected
// with probability about 2⁻³² for P-256 and 2⁻¹⁹⁰ for P-384, so the bound is
// never reached; open-dice has none.
const maxECDSAAttempts = 64

// AsymSeed computes ASYM_KDF's seed for a CDI_Attest (or the UDS, which
// has the same size): HKDF-SHA-512 with ikm cdiAttest, salt ASYM_SALT, info
// "Key Pair", 32 bytes out (Open Profile for DICE, "Asymmetric Key Pair
// Derivation"; open-dice DiceDeriveCdiPrivateKeySeed). The seed is as secret
// as the CDI: the caller wipes it with clear when done.
//
// cdiAttest must be [CDISize] bytes, or AsymSeed returns an error wrapping
// [pluton.ErrInvalidArgument].
func AsymSeed(cdiAttest []byte) ([]byte, error) {
	if len(cdiAttest) != CDISize {
		return nil, fmt.Errorf("dice: CDI is %d bytes, want %d: %w", len(cdiAttest), CDISize, pluton.ErrInvalidArgument)
	}
	seed, err := hkdf.Key(sha512.New, cdiAttest, []byte(asymSalt), infoKeyPair, SeedSize)
	if err != nil {
		return nil, fmt.Errorf("dice: deriving key pair seed: %w", err)
	}
	return seed, nil
}

// KeyPair derives the key pair of a CDI (or of the UDS): the seed of
// [AsymSeed], then the algorithm's key from it (Open Profile for DICE,
// "Deriving Asymmetric Key Pairs"; "Digital Signatures"):
//
//   - Ed25519: the seed is the RFC 8032 private key ("using the output of
//     ASYM_KDF directly as the private key is acceptable"). Returns an
//     [ed25519.PrivateKey].
//   - ECDSA P-256 and P-384: the private scalar comes out of HMAC-SHA-512
//     driven by the seed as RFC 6979, section 3.2 does, as open-dice derives
//     it (src/boringssl_ecdsa_utils.c, derivePrivateKey; its mbedtls ops
//     give the same P-256 keys). Returns an [*ecdsa.PrivateKey].
//   - ML-DSA-65: a rootline extension, beyond the Open DICE known answers,
//     which cover no ML-DSA key. The seed is FIPS 204's ξ for
//     ML-DSA.KeyGen_internal ([mldsa65.NewKeyFromSeed]). Returns a
//     [*mldsa65.PrivateKey]. Version 2.6 of the specification allows
//     ML-DSA-65 with "the output of ASYM_KDF ... used directly", and
//     open-dice's BoringSSL ML-DSA-65 ops (src/boringssl_mldsa_utils.c) pass
//     it to MLDSA65_private_key_from_seed as ξ, so the keys should agree;
//     no open-dice ML-DSA answer is checked here.
//
// cdiAttest must be [CDISize] bytes (error wrapping
// [pluton.ErrInvalidArgument]); alg must be one of [pluton.Algorithms]
// (error wrapping [pluton.ErrUnsupportedAlgorithm]). The seed is wiped
// before KeyPair returns; the key itself is the caller's to keep safe.
func KeyPair(cdiAttest []byte, alg pluton.Algorithm) (crypto.Signer, error) {
	if !alg.Valid() {
		return nil, fmt.Errorf("dice: key pair for %v: %w", alg, pluton.ErrUnsupportedAlgorithm)
	}
	seed, err := AsymSeed(cdiAttest)
	if err != nil {
		return nil, err
	}
	defer clear(seed)

	switch alg {
	case pluton.Ed25519:
		return ed25519.NewKeyFromSeed(seed), nil
	case pluton.ECDSAP256:
		return deriveECDSA(elliptic.P256(), seed)
	case pluton.ECDSAP384:
		return deriveECDSA(elliptic.P384(), seed)
	case pluton.MLDSA65:
		var xi [mldsa65.SeedSize]byte
		defer clear(xi[:])
		copy(xi[:], seed)
		_, sk := mldsa65.NewKeyFromSeed(&xi)
		return sk, nil
	}
	return nil, fmt.Errorf("dice: key pair for %v: %w", alg, pluton.ErrUnsupportedAlgorithm)
}

// deriveECDSA derives an ECDSA private key from a 32-byte seed, as
// open-dice's derivePrivateKey does. That is RFC 6979, section 3.2, with
// HMAC-SHA-512 and the seed in place of "int2octets(x) || bits2octets(h1)",
// which is also NIST SP 800-90A's HMAC_DRBG instantiated with the seed as
// its only input (open-dice's mbedtls ops seed mbedtls's HMAC_DRBG so and
// draw the scalar from it), see [keyDRBG]:
//
//	K = 0x00…00, V = 0x01…01 (64 bytes each)
//	K = HMAC(K, V || 0x00 || seed); V = HMAC(K, V)
//	K = HMAC(K, V || 0x01 || seed); V = HMAC(K, V)
//	loop: V = HMAC(K, V); candidate = leftmost qlen bits of V
//	      if 0 < candidate < n: done
//	      K = HMAC(K, V || 0x00); V = HMAC(K, V)
//
// open-dice writes the same sequence with no V update after the second K,
// and two V updates at the top of each loop iteration; unrolled, the two
// are the same sequence of HMAC calls (tested in TestKeyDRBGMatchesOpenDice).
//
// As in RFC 6979, a candidate out of range is rejected, not reduced, so the
// scalar is uniform in [1, n-1].
func deriveECDSA(curve elliptic.Curve, seed []byte) (*ecdsa.PrivateKey, error) {
	params := curve.Params()
	// qlen is 256 or 384 bits: whole bytes, so bits2int needs no shift.
	n := params.N.FillBytes(make([]byte, (params.BitSize+7)/8))
	d, err := deriveScalar(seed, n)
	if err != nil {
		return nil, fmt.Errorf("dice: ECDSA %s key: %w", params.Name, err)
	}
	defer clear(d)
	// SEC 1, 2.3.6 raw encoding; ParseRawPrivateKey computes the public
	// point.
	k, err := ecdsa.ParseRawPrivateKey(curve, d)
	if err != nil {
		return nil, fmt.Errorf("dice: ECDSA %s key: %w", params.Name, err)
	}
	return k, nil
}

// deriveScalar returns the first candidate of the [keyDRBG] seeded with
// seed that is in [1, n-1], as len(n) big-endian bytes; the caller wipes it.
// n is the group order, big-endian, a whole number of bytes no longer than
// 64.
func deriveScalar(seed, n []byte) ([]byte, error) {
	d := newKeyDRBG(seed)
	defer d.wipe()
	candidate := make([]byte, len(n))
	for range maxECDSAAttempts {
		// RFC 6979, 3.2, step h.1–h.2: hlen (512) ≥ qlen, so T is the
		// leftmost qlen bits of one V.
		d.generate(candidate)
		// Step h.3: k = bits2int(T) is kept if it is in [1, q-1].
		if scalarInRange(candidate, n) {
			return candidate, nil
		}
		// Otherwise K = HMAC_K(V || 0x00); V = HMAC_K(V), and try again.
		d.reject()
	}
	clear(candidate)
	return nil, errors.New("no scalar in range")
}

// scalarInRange reports whether the big-endian k is in [1, n-1]; k and n
// have the same length. It runs in time independent of k's value (only the
// answer, whether a candidate is rejected, is public).
func scalarInRange(k, n []byte) bool {
	var borrow, nonzero uint32
	// k - n, byte by byte from the least significant: the final borrow is
	// 1 exactly when k < n.
	for i := len(k) - 1; i >= 0; i-- {
		diff := uint32(k[i]) - uint32(n[i]) - borrow
		borrow = diff >> 31
		nonzero |= uint32(k[i])
	}
	// nonzero ≤ 255: (x | -x) has its top bit set exactly when x ≠ 0.
	nonzero = (nonzero | -nonzero) >> 31
	return borrow&nonzero == 1
}

// keyDRBG is HMAC_DRBG with HMAC-SHA-512 (NIST SP 800-90A Rev. 1, 10.1.2),
// as RFC 6979, section 3.2 steps b–h drive it: no reseed, no
// personalization, no additional input.
type keyDRBG struct {
	k, v [sha512.Size]byte
}

// newKeyDRBG runs RFC 6979, 3.2, steps b–g with the seed as the provided
// data (SP 800-90A, 10.1.2.3, HMAC_DRBG_Instantiate with the seed as
// seed_material).
func newKeyDRBG(seed []byte) *keyDRBG {
	d := new(keyDRBG)
	// Step b: V = 0x01 0x01 … 0x01 (8*ceil(hlen/8) bits).
	for i := range d.v {
		d.v[i] = 0x01
	}
	// Step c: K = 0x00 0x00 … 0x00 (the zero value).
	// Step d: K = HMAC_K(V || 0x00 || seed).
	d.mac(&d.k, d.v[:], []byte{0x00}, seed)
	// Step e: V = HMAC_K(V).
	d.mac(&d.v, d.v[:])
	// Step f: K = HMAC_K(V || 0x01 || seed).
	d.mac(&d.k, d.v[:], []byte{0x01}, seed)
	// Step g: V = HMAC_K(V).
	d.mac(&d.v, d.v[:])
	return d
}

// generate runs RFC 6979, 3.2, step h.2 for qlen ≤ hlen: V = HMAC_K(V),
// and out gets the leftmost len(out) bytes of V.
func (d *keyDRBG) generate(out []byte) {
	d.mac(&d.v, d.v[:])
	copy(out, d.v[:])
}

// reject runs RFC 6979, 3.2, step h.3 after a candidate out of range:
// K = HMAC_K(V || 0x00); V = HMAC_K(V).
func (d *keyDRBG) reject() {
	d.mac(&d.k, d.v[:], []byte{0x00})
	d.mac(&d.v, d.v[:])
}

// mac sets dst = HMAC-SHA-512(K, parts...). The inner and outer pads that
// crypto/hmac keeps are not reachable to be wiped; they are garbage once
// mac returns.
func (d *keyDRBG) mac(dst *[sha512.Size]byte, parts ...[]byte) {
	h := hmac.New(sha512.New, d.k[:])
	for _, p := range parts {
		h.Write(p)
	}
	h.Sum(dst[:0])
}

// wipe clears K and V.
func (d *keyDRBG) wipe() {
	clear(d.k[:])
	clear(d.v[:])
}

// DeriveID computes the DICE identifier of a public key: HKDF-SHA-512 with
// ikm publicKey, salt ID_SALT, info "ID", 20 bytes out, with the top bit of
// the first byte cleared so that, read as a big-endian integer, it is a
// positive X.509 serial number that needs no padding (Open Profile for
// DICE, "Deriving Identifiers"; open-dice DiceDeriveCdiCertificateId).
// Certificates use it as the serial number, the subject key identifier and,
// hex-encoded, the subject's X520SerialNumber (and the issuer's, in the
// certificate of the next layer).
//
// publicKey is whatever encoding of the key the certificate code feeds it,
// and open-dice's back ends have differed there: [PublicKeyBytes] returns the
// one its current X.509 and CBOR certificates use (the known answers confirm
// it for Ed25519, P-256 and P-384), and [PublicKeyID] applies it.
// An empty publicKey returns an error wrapping [pluton.ErrInvalidArgument].
func DeriveID(publicKey []byte) ([IDSize]byte, error) {
	var id [IDSize]byte
	if len(publicKey) == 0 {
		return id, fmt.Errorf("dice: empty public key: %w", pluton.ErrInvalidArgument)
	}
	out, err := hkdf.Key(sha512.New, publicKey, []byte(idSalt), infoID, IDSize)
	if err != nil {
		return id, fmt.Errorf("dice: deriving ID: %w", err)
	}
	copy(id[:], out)
	// "The big-endian high-order bit is cleared so the ASN.1 integer
	// representation is always positive without padding."
	id[0] &^= 0x80
	return id, nil
}

// PublicKeyBytes returns the encoding of a public key that open-dice feeds
// [DeriveID] (DiceDeriveCdiCertificateId) when it makes a certificate: the
// 32-byte RFC 8032 key for Ed25519; the big-endian x and y coordinates, each
// the size of the field, for ECDSA (64 bytes for P-256, 96 for P-384, with
// no SEC 1 0x04 prefix: what open-dice's keypair_from_seed ops output); the
// FIPS 204 pkEncode encoding for ML-DSA-65. pub is what the Public method of
// a [KeyPair] result returns.
//
// The known answers confirm the Ed25519 and ECDSA encodings for open-dice's
// X.509 and CBOR certificates. (An older open-dice mbedtls back end fed the
// 33-byte compressed P-256 point instead; its certificates have other IDs.)
//
// A key of another type or curve returns an error wrapping
// [pluton.ErrUnsupportedAlgorithm]; a malformed key one wrapping
// [pluton.ErrInvalidKey].
func PublicKeyBytes(pub crypto.PublicKey) ([]byte, error) {
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("dice: Ed25519 public key is %d bytes: %w", len(pub), pluton.ErrInvalidKey)
		}
		return append([]byte(nil), pub...), nil
	case *ecdsa.PublicKey:
		if pub == nil || pub.Curve == nil {
			return nil, fmt.Errorf("dice: nil ECDSA public key: %w", pluton.ErrInvalidKey)
		}
		if pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() {
			return nil, fmt.Errorf("dice: ECDSA public key on %s: %w", pub.Curve.Params().Name, pluton.ErrUnsupportedAlgorithm)
		}
		// SEC 1, 2.3.3 uncompressed: 0x04 || x || y.
		b, err := pub.Bytes()
		if err != nil {
			return nil, fmt.Errorf("dice: ECDSA public key: %w: %w", pluton.ErrInvalidKey, err)
		}
		return b[1:], nil
	case *mldsa65.PublicKey:
		if pub == nil {
			return nil, fmt.Errorf("dice: nil ML-DSA-65 public key: %w", pluton.ErrInvalidKey)
		}
		return pub.Bytes(), nil
	}
	return nil, fmt.Errorf("dice: public key of type %T: %w", pub, pluton.ErrUnsupportedAlgorithm)
}

// PublicKeyID is [DeriveID] of [PublicKeyBytes](pub): the DICE identifier
// open-dice puts in the certificates of pub, as serial number and subject
// (or, in the next layer's certificate, issuer).
func PublicKeyID(pub crypto.PublicKey) ([IDSize]byte, error) {
	b, err := PublicKeyBytes(pub)
	if err != nil {
		return [IDSize]byte{}, err
	}
	return DeriveID(b)
}
