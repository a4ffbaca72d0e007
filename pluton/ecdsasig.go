package pluton

import (
	"bytes"
	"crypto/elliptic"
	"fmt"
)

// ECDSA signatures travel in two encodings:
//
//   - ASN.1 DER, ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }
//     (SEC 1 v2, §C.8; RFC 5480, §2.2.3): X.509, CMS, and what
//     [crypto.Signer] returns for an *ecdsa.PrivateKey.
//   - IEEE P1363, r‖s with each integer big-endian and left-padded to the
//     byte length of the group order: COSE (RFC 9053, §2.1) and JOSE (RFC
//     7518, §3.4).
//
// Both are parsed strictly: r and s must each be in [1, n-1] (FIPS 186-5,
// §6.4.2, step 1), and the DER form must be the unique DER encoding.

// ecdsaOrder returns the order n of the algorithm's base point, big-endian
// and as wide as a scalar, or nil for a non-ECDSA algorithm.
func ecdsaOrder(alg Algorithm) []byte {
	var c elliptic.Curve
	switch alg {
	case ECDSAP256:
		c = elliptic.P256()
	case ECDSAP384:
		c = elliptic.P384()
	default:
		return nil
	}
	n := c.Params().N
	return n.FillBytes(make([]byte, (n.BitLen()+7)/8))
}

// scalarInRange reports whether v, big-endian, is in [1, n-1]. v may be
// shorter than n (its leading zeros stripped) but not longer. Signatures
// are public, so variable time is fine.
func scalarInRange(v, n []byte) bool {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > len(n) {
		return false
	}
	if len(v) < len(n) {
		return true
	}
	return bytes.Compare(v, n) < 0
}

// parseECDSADER parses an ECDSA-Sig-Value strictly and returns r and s
// big-endian, without leading zeros.
func parseECDSADER(alg Algorithm, sig []byte) (r, s []byte, reason string) {
	n := ecdsaOrder(alg)
	// Largest valid encoding: SEQUENCE header plus two INTEGERs of
	// len(n)+1 bytes each (a sign octet), all with short-form lengths.
	if maxLen := 2 + 2*(2+len(n)+1); len(sig) > maxLen {
		return nil, nil, "wrong length"
	}
	seq, rest, reason := readElement(sig, tagSequence)
	if reason != "" {
		return nil, nil, reason
	}
	if len(rest) != 0 {
		return nil, nil, "trailing data after DER signature"
	}
	r, seq, reason = readUnsignedInteger(seq)
	if reason != "" {
		return nil, nil, reason
	}
	s, seq, reason = readUnsignedInteger(seq)
	if reason != "" {
		return nil, nil, reason
	}
	if len(seq) != 0 {
		return nil, nil, "trailing data in DER signature"
	}
	if !scalarInRange(r, n) {
		return nil, nil, "r out of range"
	}
	if !scalarInRange(s, n) {
		return nil, nil, "s out of range"
	}
	return r, s, ""
}

// parseECDSAP1363 splits a fixed-width r‖s signature and checks the ranges.
func parseECDSAP1363(alg Algorithm, sig []byte) (r, s []byte, reason string) {
	n := ecdsaOrder(alg)
	if len(sig) != 2*len(n) {
		return nil, nil, "wrong length"
	}
	r, s = sig[:len(n)], sig[len(n):]
	if !scalarInRange(r, n) {
		return nil, nil, "r out of range"
	}
	if !scalarInRange(s, n) {
		return nil, nil, "s out of range"
	}
	return r, s, ""
}

func encodeECDSADER(r, s []byte) []byte {
	var body []byte
	body = appendUnsignedInteger(body, r)
	body = appendUnsignedInteger(body, s)
	return appendElement(nil, tagSequence, body)
}

func encodeECDSAP1363(alg Algorithm, r, s []byte) []byte {
	w := len(ecdsaOrder(alg))
	out := make([]byte, 2*w)
	copy(out[w-len(r):w], r)
	copy(out[2*w-len(s):], s)
	return out
}

// ECDSASignatureToP1363 converts an ASN.1 DER ECDSA signature of alg
// (ECDSAP256 or ECDSAP384) into the fixed-width r‖s form of IEEE P1363,
// COSE (RFC 9053, §2.1) and JOSE (RFC 7518, §3.4). The input is untrusted
// and parsed as strictly as by [Verify]; a malformed one yields a
// *[SignatureError].
func ECDSASignatureToP1363(alg Algorithm, der []byte) ([]byte, error) {
	if alg != ECDSAP256 && alg != ECDSAP384 {
		return nil, unsupportedECDSA(alg)
	}
	r, s, reason := parseECDSADER(alg, der)
	if reason != "" {
		return nil, &SignatureError{Algorithm: alg, Reason: reason}
	}
	return encodeECDSAP1363(alg, r, s), nil
}

// ECDSASignatureFromP1363 converts a fixed-width r‖s ECDSA signature of alg
// (ECDSAP256 or ECDSAP384) into ASN.1 DER. The input must be exactly twice
// the scalar width (64 or 96 bytes) with r and s in [1, n-1]; otherwise it
// yields a *[SignatureError].
func ECDSASignatureFromP1363(alg Algorithm, raw []byte) ([]byte, error) {
	if alg != ECDSAP256 && alg != ECDSAP384 {
		return nil, unsupportedECDSA(alg)
	}
	r, s, reason := parseECDSAP1363(alg, raw)
	if reason != "" {
		return nil, &SignatureError{Algorithm: alg, Reason: reason}
	}
	return encodeECDSADER(r, s), nil
}

func unsupportedECDSA(alg Algorithm) error {
	return fmt.Errorf("%w: %v is not an ECDSA algorithm", ErrUnsupportedAlgorithm, alg)
}
