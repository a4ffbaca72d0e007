package pluton

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// Public keys are exchanged as DER SubjectPublicKeyInfo (RFC 5280,
// §4.1.2.7):
//
//   - ECDSA: id-ecPublicKey with the namedCurve prime256v1 or secp384r1 and
//     an uncompressed point (RFC 5480, §2), through crypto/x509.
//   - Ed25519: id-Ed25519, parameters absent, the 32-byte key (RFC 8410,
//     §3 and §4), through crypto/x509.
//   - ML-DSA-65: id-ml-dsa-65 (2.16.840.1.101.3.4.3.18), parameters absent
//     (RFC 9881, §2), and the raw 1952-byte public key pk of FIPS 204
//     (ρ‖t1, pkEncode, Algorithm 22) as the BIT STRING (RFC 9881, §4).

// maxPublicKeyDER bounds the input of ParsePublicKey. The longest key it
// accepts, ML-DSA-65, is 1974 bytes.
const maxPublicKeyDER = 2048

// Contents octets of the object identifiers.
const (
	oidECPublicKey = "\x2a\x86\x48\xce\x3d\x02\x01"         // 1.2.840.10045.2.1, RFC 5480
	oidP256        = "\x2a\x86\x48\xce\x3d\x03\x01\x07"     // 1.2.840.10045.3.1.7 (prime256v1)
	oidP384        = "\x2b\x81\x04\x00\x22"                 // 1.3.132.0.34 (secp384r1)
	oidEd25519     = "\x2b\x65\x70"                         // 1.3.101.112, RFC 8410
	oidMLDSA65     = "\x60\x86\x48\x01\x65\x03\x04\x03\x12" // 2.16.840.1.101.3.4.3.18, RFC 9881
)

// AlgorithmOf returns the algorithm of a public key: [ECDSAP256] or
// [ECDSAP384] for an *ecdsa.PublicKey on P-256 or P-384, [Ed25519] for an
// ed25519.PublicKey, [MLDSA65] for an *mldsa65.PublicKey. It checks type,
// curve and length only ([Verify] and [MarshalPublicKey] also check that an
// ECDSA point is on its curve). A key of another type or curve yields an
// error wrapping [ErrUnsupportedAlgorithm]; a nil or truncated one a
// *[KeyError].
func AlgorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	alg, reason, unsupported := keyAlgorithm(pub)
	switch {
	case unsupported:
		return AlgorithmUnknown, fmt.Errorf("%w: %s", ErrUnsupportedAlgorithm, reason)
	case reason != "":
		return AlgorithmUnknown, &KeyError{Reason: reason}
	}
	return alg, nil
}

func keyAlgorithm(pub crypto.PublicKey) (alg Algorithm, reason string, unsupported bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil {
			return AlgorithmUnknown, "nil *ecdsa.PublicKey", false
		}
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, "", false
		case elliptic.P384():
			return ECDSAP384, "", false
		case nil:
			return AlgorithmUnknown, "*ecdsa.PublicKey without a curve", false
		}
		name := "of unknown parameters"
		if p := k.Curve.Params(); p != nil {
			name = p.Name
		}
		return AlgorithmUnknown, "ECDSA curve " + name, true
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return AlgorithmUnknown, fmt.Sprintf("Ed25519 public key of %d bytes, want %d", len(k), ed25519.PublicKeySize), false
		}
		return Ed25519, "", false
	case *mldsa65.PublicKey:
		if k == nil {
			return AlgorithmUnknown, "nil *mldsa65.PublicKey", false
		}
		return MLDSA65, "", false
	case nil:
		return AlgorithmUnknown, "nil public key", false
	}
	return AlgorithmUnknown, fmt.Sprintf("public key type %T", pub), true
}

// checkPublicKey checks that pub is a usable public key of alg.
func checkPublicKey(pub crypto.PublicKey, alg Algorithm) error {
	got, reason, _ := keyAlgorithm(pub)
	if reason != "" {
		return &KeyError{Algorithm: alg, Reason: reason}
	}
	if got != alg {
		return &KeyError{Algorithm: alg, Reason: fmt.Sprintf("%v key", got)}
	}
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		// Bytes, and every crypto/ecdsa and crypto/x509 function built on
		// it, panics on a hand-built key with a nil coordinate, and no
		// other accessor can tell; reading the fields only to compare them
		// with nil is the one use left of them here.
		//lint:ignore SA1019 nil check only, to refuse keys Bytes would panic on
		if k.X == nil || k.Y == nil {
			return &KeyError{Algorithm: alg, Reason: "ECDSA point without coordinates"}
		}
		// Bytes refuses the point at infinity and points not on the curve
		// (SP 800-186, §D.1.1 public key validation).
		if _, err := k.Bytes(); err != nil {
			return &KeyError{Algorithm: alg, Reason: "ECDSA point not on the curve"}
		}
	}
	return nil
}

// MarshalPublicKey encodes a public key of any supported algorithm as DER
// SubjectPublicKeyInfo. It is the inverse of [ParsePublicKey].
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	alg, err := AlgorithmOf(pub)
	if err != nil {
		return nil, err
	}
	if err := checkPublicKey(pub, alg); err != nil {
		return nil, err
	}
	if alg == MLDSA65 {
		return marshalMLDSA65(pub.(*mldsa65.PublicKey)), nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, &KeyError{Algorithm: alg, Reason: err.Error()}
	}
	return der, nil
}

func marshalMLDSA65(pub *mldsa65.PublicKey) []byte {
	algID := appendElement(nil, tagSequence, appendElement(nil, tagOID, []byte(oidMLDSA65)))
	bits := make([]byte, 1, 1+mldsa65.PublicKeySize) // no unused bits
	bits = append(bits, pub.Bytes()...)
	return appendElement(nil, tagSequence, appendElement(algID, tagBitString, bits))
}

// ParsePublicKey parses a DER SubjectPublicKeyInfo as written by
// [MarshalPublicKey] and returns the key (*ecdsa.PublicKey,
// ed25519.PublicKey or *mldsa65.PublicKey) and its algorithm.
//
// The input is untrusted. It is parsed strictly: its length is bounded
// (2048 bytes), and only the one DER encoding of each key is accepted, so
// ParsePublicKey(der) succeeds only if MarshalPublicKey of the result
// gives der back. BER lengths, explicit NULL parameters, unused bits in the
// BIT STRING, compressed or off-curve ECDSA points, other curves and
// wrong-length keys are refused. A well-formed key of an algorithm or
// curve this package does not support yields an error wrapping
// [ErrUnsupportedAlgorithm]; anything else malformed a *[KeyError].
func ParsePublicKey(der []byte) (crypto.PublicKey, Algorithm, error) {
	if len(der) > maxPublicKeyDER {
		return nil, AlgorithmUnknown, &KeyError{Reason: "SubjectPublicKeyInfo too long"}
	}
	alg, keyBits, reason, unsupported := parseSPKI(der)
	switch {
	case unsupported:
		return nil, AlgorithmUnknown, fmt.Errorf("%w: %s", ErrUnsupportedAlgorithm, reason)
	case reason != "":
		return nil, AlgorithmUnknown, &KeyError{Algorithm: alg, Reason: reason}
	}

	var pub crypto.PublicKey
	switch alg {
	case MLDSA65:
		// RFC 9881, §4: the BIT STRING holds pk itself (no unused bits,
		// no OCTET STRING wrapper).
		if keyBits[0] != 0 {
			return nil, AlgorithmUnknown, &KeyError{Algorithm: alg, Reason: "BIT STRING with unused bits"}
		}
		if len(keyBits)-1 != mldsa65.PublicKeySize {
			return nil, AlgorithmUnknown, &KeyError{Algorithm: alg,
				Reason: fmt.Sprintf("public key of %d bytes, want %d", len(keyBits)-1, mldsa65.PublicKeySize)}
		}
		// Every 1952-byte string is a valid encoding (ρ and ten-bit
		// coefficients of t1); pkDecode cannot fail.
		var buf [mldsa65.PublicKeySize]byte
		copy(buf[:], keyBits[1:])
		k := new(mldsa65.PublicKey)
		k.Unpack(&buf)
		pub = k
	default:
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, AlgorithmUnknown, &KeyError{Algorithm: alg, Reason: err.Error()}
		}
		pub = k
	}
	if err := checkPublicKey(pub, alg); err != nil {
		return nil, AlgorithmUnknown, err
	}
	// One key, one encoding: refuse anything MarshalPublicKey would not
	// have written.
	enc, err := MarshalPublicKey(pub)
	if err != nil {
		return nil, AlgorithmUnknown, err
	}
	if !bytes.Equal(enc, der) {
		return nil, AlgorithmUnknown, &KeyError{Algorithm: alg, Reason: "not the DER encoding of the key"}
	}
	return pub, alg, nil
}

// parseSPKI reads SubjectPublicKeyInfo ::= SEQUENCE { algorithm
// AlgorithmIdentifier, subjectPublicKey BIT STRING } far enough to tell the
// algorithm, and returns the BIT STRING contents (with its unused-bits
// octet, so never empty).
func parseSPKI(der []byte) (alg Algorithm, keyBits []byte, reason string, unsupported bool) {
	spki, rest, reason := readElement(der, tagSequence)
	if reason != "" {
		return AlgorithmUnknown, nil, reason, false
	}
	if len(rest) != 0 {
		return AlgorithmUnknown, nil, "trailing data after SubjectPublicKeyInfo", false
	}
	algID, spki, reason := readElement(spki, tagSequence)
	if reason != "" {
		return AlgorithmUnknown, nil, reason, false
	}
	keyBits, spki, reason = readElement(spki, tagBitString)
	if reason != "" {
		return AlgorithmUnknown, nil, reason, false
	}
	if len(spki) != 0 {
		return AlgorithmUnknown, nil, "trailing data in SubjectPublicKeyInfo", false
	}
	if len(keyBits) == 0 {
		return AlgorithmUnknown, nil, "empty BIT STRING", false
	}
	oid, params, reason := readElement(algID, tagOID)
	if reason != "" {
		return AlgorithmUnknown, nil, reason, false
	}
	switch string(oid) {
	case oidECPublicKey:
		// RFC 5480, §2.1.1: ECParameters is a namedCurve OID.
		curve, rest, reason := readElement(params, tagOID)
		if reason != "" {
			return AlgorithmUnknown, nil, "ECDSA parameters: " + reason, false
		}
		if len(rest) != 0 {
			return AlgorithmUnknown, nil, "trailing data in AlgorithmIdentifier", false
		}
		switch string(curve) {
		case oidP256:
			return ECDSAP256, keyBits, "", false
		case oidP384:
			return ECDSAP384, keyBits, "", false
		}
		return AlgorithmUnknown, nil, fmt.Sprintf("ECDSA curve OID %x", curve), true
	case oidEd25519:
		// RFC 8410, §3: the parameters MUST be absent.
		if len(params) != 0 {
			return Ed25519, nil, "AlgorithmIdentifier parameters present", false
		}
		return Ed25519, keyBits, "", false
	case oidMLDSA65:
		// RFC 9881, §2: the parameters MUST be absent.
		if len(params) != 0 {
			return MLDSA65, nil, "AlgorithmIdentifier parameters present", false
		}
		return MLDSA65, keyBits, "", false
	}
	return AlgorithmUnknown, nil, fmt.Sprintf("public key algorithm OID %x", oid), true
}
