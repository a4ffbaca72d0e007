package pluton

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// SignatureError says why a signature was refused. It wraps
// [ErrInvalidSignature]. Reason is one of a short list of phrases:
// "wrong length", "r out of range", "s out of range", "trailing data after
// DER signature", "non-minimal DER INTEGER (BER)", … and "verification
// failed" for a well-formed signature that does not match the message and
// key. It never holds the signature itself.
type SignatureError struct {
	Algorithm Algorithm
	Reason    string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("pluton: invalid %v signature: %s", e.Algorithm, e.Reason)
}

// Unwrap returns [ErrInvalidSignature].
func (e *SignatureError) Unwrap() error { return ErrInvalidSignature }

// KeyError says why a public key was refused: malformed, of the wrong type
// or curve for the algorithm, or not on its curve. It wraps
// [ErrInvalidKey]. Algorithm is the algorithm the key was meant for, or
// [AlgorithmUnknown] when it could not be told.
type KeyError struct {
	Algorithm Algorithm
	Reason    string
}

func (e *KeyError) Error() string {
	if e.Algorithm == AlgorithmUnknown {
		return "pluton: invalid public key: " + e.Reason
	}
	return fmt.Sprintf("pluton: invalid public key for %v: %s", e.Algorithm, e.Reason)
}

// Unwrap returns [ErrInvalidKey].
func (e *KeyError) Unwrap() error { return ErrInvalidKey }

// Verify checks that sig is a valid signature of msg by pub under alg. It
// is the single entry point of rootline for checking signatures: secure
// boot, the factory service and the verifier all call it. msg, sig and pub
// are untrusted; Verify never panics on them.
//
//   - [ECDSAP256], [ECDSAP384]: pub is an *ecdsa.PublicKey on the matching
//     curve; msg is hashed with alg.Hash(); sig is ASN.1 DER
//     (ECDSA-Sig-Value), parsed strictly: BER, trailing data, and r or s
//     outside [1, n-1] are refused before any arithmetic (FIPS 186-5,
//     §6.4.2). For the fixed-width r‖s form use [VerifyP1363].
//   - [Ed25519]: pub is an ed25519.PublicKey; pure Ed25519 (RFC 8032,
//     §5.1.7) of msg itself; sig is 64 bytes; s must be canonical.
//   - [MLDSA65]: pub is an *mldsa65.PublicKey; pure ML-DSA.Verify (FIPS
//     204, Algorithm 3) of msg itself with an empty context string; sig is
//     3309 bytes.
//
// It returns nil for a valid signature; an error wrapping
// [ErrUnsupportedAlgorithm] for an unknown alg; a *[KeyError] (wrapping
// [ErrInvalidKey]) for a public key of the wrong type or curve for alg or
// an ECDSA point not on its curve; and a *[SignatureError] (wrapping
// [ErrInvalidSignature]) for everything else. An Ed25519 public key that
// is not a valid point encoding cannot be told apart by crypto/ed25519 and
// fails as a SignatureError ("verification failed").
func Verify(pub crypto.PublicKey, alg Algorithm, msg, sig []byte) error {
	return verify(pub, alg, msg, sig, false)
}

// VerifyP1363 is [Verify] for ECDSA signatures in the fixed-width r‖s form
// of IEEE P1363, COSE (RFC 9053, §2.1) and JOSE (RFC 7518, §3.4): 64 bytes
// for P-256, 96 for P-384. For Ed25519 and ML-DSA-65, whose signatures have
// a single encoding, it is identical to Verify.
func VerifyP1363(pub crypto.PublicKey, alg Algorithm, msg, sig []byte) error {
	return verify(pub, alg, msg, sig, true)
}

func verify(pub crypto.PublicKey, alg Algorithm, msg, sig []byte, p1363 bool) error {
	if !alg.Valid() {
		return fmt.Errorf("%w: %v", ErrUnsupportedAlgorithm, alg)
	}
	if err := checkPublicKey(pub, alg); err != nil {
		return err
	}
	switch alg {
	case ECDSAP256, ECDSAP384:
		var r, s []byte
		var reason string
		if p1363 {
			r, s, reason = parseECDSAP1363(alg, sig)
		} else {
			r, s, reason = parseECDSADER(alg, sig)
		}
		if reason != "" {
			return &SignatureError{Algorithm: alg, Reason: reason}
		}
		// The DER input is now known to be the unique DER encoding of
		// (r, s), which is what ecdsa.VerifyASN1 takes.
		der := sig
		if p1363 {
			der = encodeECDSADER(r, s)
		}
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), alg.Digest(msg), der) {
			return &SignatureError{Algorithm: alg, Reason: "verification failed"}
		}
		return nil
	case Ed25519:
		if len(sig) != ed25519.SignatureSize {
			return &SignatureError{Algorithm: alg, Reason: "wrong length"}
		}
		// crypto/ed25519 rejects a non-canonical s (s ≥ L, RFC 8032,
		// §5.1.7, step 1) and uses the cofactorless equation [S]B = R + [k]A.
		if !ed25519.Verify(pub.(ed25519.PublicKey), msg, sig) {
			return &SignatureError{Algorithm: alg, Reason: "verification failed"}
		}
		return nil
	case MLDSA65:
		return verifyMLDSA65(pub.(*mldsa65.PublicKey), msg, nil, sig)
	}
	return fmt.Errorf("%w: %v", ErrUnsupportedAlgorithm, alg)
}

// verifyMLDSA65 is ML-DSA.Verify (FIPS 204, Algorithm 3) with a context
// string. The public API always passes an empty one (RFC 9881, §3: X.509
// uses the empty context); the Wycheproof tests use others.
func verifyMLDSA65(pub *mldsa65.PublicKey, msg, ctx, sig []byte) error {
	// FIPS 204, Algorithm 3, step 1: the context is at most 255 bytes.
	if len(ctx) > 255 {
		return &SignatureError{Algorithm: MLDSA65, Reason: "context longer than 255 bytes"}
	}
	if len(sig) != mldsa65.SignatureSize {
		return &SignatureError{Algorithm: MLDSA65, Reason: "wrong length"}
	}
	// circl decodes sig with sigDecode (Algorithm 27), refusing a
	// malformed hint encoding and ‖z‖∞ ≥ γ1 − β (Algorithm 8, step 13).
	if !mldsa65.Verify(expandedMLDSA65(pub), msg, ctx, sig) {
		return &SignatureError{Algorithm: MLDSA65, Reason: "verification failed"}
	}
	return nil
}

// expandedMLDSA65 returns pub, or, for a zero mldsa65.PublicKey (declared
// but never unpacked, so without the expanded matrix Â that circl's Verify
// dereferences), the key its all-zero encoding decodes to. A key that was
// unpacked from an all-zero encoding compares equal too and is merely
// decoded again.
func expandedMLDSA65(pub *mldsa65.PublicKey) *mldsa65.PublicKey {
	var zero mldsa65.PublicKey
	if !pub.Equal(&zero) {
		return pub
	}
	var buf [mldsa65.PublicKeySize]byte
	var k mldsa65.PublicKey
	k.Unpack(&buf)
	return &k
}
