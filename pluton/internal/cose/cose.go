// Package cose is a small, strict implementation of the two signed message
// structures of CBOR Object Signing and Encryption (COSE, RFC 9052) that
// rootline needs: COSE_Sign1 (one signer, §4.2) and COSE_Sign (several
// signers, §4.1), with the signature algorithms of [pluton.Algorithm]
// (RFC 9053, §2, and draft-ietf-cose-dilithium for ML-DSA-65).
//
// Signed boot images (pluton/boot) and attestation evidence
// (pluton/evidence) are built on it.
//
// Messages are always tagged (tag 18 for COSE_Sign1, tag 98 for COSE_Sign,
// RFC 9052, §2), always carry their payload (no detached content), and
// always name their algorithm in the protected header. Every input to a
// Parse function is untrusted and parsed strictly:
//
//   - the message must start with the preferred encoding of its tag and a
//     definite-length array of the right size;
//   - no indefinite-length items (RFC 8949, §3.2.2), no duplicate map keys
//     (§5.6), no tags inside the message, no invalid UTF-8;
//   - header labels are integers (text-string labels are refused), at most
//     [MaxHeaderLabels] in each bucket, and a label may not appear in both
//     buckets (RFC 9052, §3);
//   - the whole message is at most [MaxMessageSize] bytes, nesting and
//     array lengths are bounded.
//
// Deliberate deviations from RFC 9052, each refused with an error wrapping
// [ErrMalformed] or [pluton.ErrUnsupportedAlgorithm]:
//
//   - an algorithm in the unprotected bucket (RFC 9052, §3.1 allows it;
//     sign1-tests/sign-pass-01 of the COSE WG examples does it): an
//     attacker could otherwise change it;
//   - a "crit" parameter naming a label this package does not process;
//   - a detached (nil) payload; text-string header labels; untagged
//     messages.
//
// This package is internal to pluton: its API may change with its callers.
package cose

import (
	"errors"
	"fmt"

	"github.com/rootline/rootline/internal/strictcbor"
	"github.com/rootline/rootline/pluton"
)

// Limits on untrusted input.
const (
	// MaxMessageSize bounds a whole COSE message, headers and payload.
	MaxMessageSize = 1 << 20
	// MaxHeaderLabels bounds the labels in one header bucket.
	MaxHeaderLabels = 32
	// MaxSignatures bounds the signatures of a COSE_Sign message.
	MaxSignatures = 8
	// MaxKIDSize bounds a key identifier.
	MaxKIDSize = 256
	// MaxX5ChainCerts bounds the certificates of an x5chain.
	MaxX5ChainCerts = 16
)

// CBOR tags of the message structures (RFC 9052, §2, Table 1).
const (
	TagSign1 = 18 // COSE_Sign1
	TagSign  = 98 // COSE_Sign
)

// Errors returned for messages that cannot be parsed. They are wrapped in a
// *[FormatError]. A signature that does not verify yields an error
// wrapping [pluton.ErrInvalidSignature]; a public key of the wrong type
// for the message's algorithm one wrapping [pluton.ErrInvalidKey]; an
// unknown algorithm one wrapping [pluton.ErrUnsupportedAlgorithm].
var (
	// ErrMalformed: the input is not a well-formed, valid COSE message of
	// the expected kind.
	ErrMalformed = errors.New("cose: malformed message")
	// ErrTruncated: the input ends before the message does.
	ErrTruncated = errors.New("cose: truncated message")
	// ErrTooLarge: the message, or one of its fields, exceeds a limit.
	ErrTooLarge = errors.New("cose: message too large")
)

// FormatError says why a message was refused. Err is [ErrMalformed],
// [ErrTruncated] or [ErrTooLarge]; Cause, if not nil, is the underlying
// CBOR error.
type FormatError struct {
	Reason string
	Err    error
	Cause  error
}

func (e *FormatError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%v: %s: %v", e.Err, e.Reason, e.Cause)
	}
	return fmt.Sprintf("%v: %s", e.Err, e.Reason)
}

// Unwrap returns Err and Cause.
func (e *FormatError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

func malformed(reason string, cause error) error {
	return &FormatError{Reason: reason, Err: ErrMalformed, Cause: cause}
}

func tooLarge(reason string) error { return &FormatError{Reason: reason, Err: ErrTooLarge} }

// IANA "COSE Algorithms" registry values.
const (
	algES256   = -7  // ECDSA w/ SHA-256, RFC 9053, §2.1
	algES384   = -35 // ECDSA w/ SHA-384, RFC 9053, §2.1
	algEdDSA   = -8  // EdDSA, RFC 9053, §2.2 (with an Ed25519 key)
	algMLDSA65 = -49 // ML-DSA-65, draft-ietf-cose-dilithium, §4 (IANA early allocation)
)

// AlgorithmID returns the COSE algorithm identifier (IANA "COSE
// Algorithms") of a: ES256 (-7) for [pluton.ECDSAP256], ES384 (-35) for
// [pluton.ECDSAP384], EdDSA (-8) for [pluton.Ed25519] and ML-DSA-65 (-49,
// draft-ietf-cose-dilithium) for [pluton.MLDSA65].
//
// RFC 9053, §2.1 lets ES256 and ES384 be used with any curve; rootline
// pairs them as the RFC recommends (P-256 with SHA-256, P-384 with
// SHA-384) and refuses other pairings, since the key decides the curve.
func AlgorithmID(a pluton.Algorithm) (int64, error) {
	switch a {
	case pluton.ECDSAP256:
		return algES256, nil
	case pluton.ECDSAP384:
		return algES384, nil
	case pluton.Ed25519:
		return algEdDSA, nil
	case pluton.MLDSA65:
		return algMLDSA65, nil
	}
	return 0, fmt.Errorf("cose: %w: %v", pluton.ErrUnsupportedAlgorithm, a)
}

// AlgorithmFromID is the inverse of [AlgorithmID]. Any other identifier
// yields an error wrapping [pluton.ErrUnsupportedAlgorithm].
func AlgorithmFromID(id int64) (pluton.Algorithm, error) {
	switch id {
	case algES256:
		return pluton.ECDSAP256, nil
	case algES384:
		return pluton.ECDSAP384, nil
	case algEdDSA:
		return pluton.Ed25519, nil
	case algMLDSA65:
		return pluton.MLDSA65, nil
	}
	return pluton.AlgorithmUnknown, fmt.Errorf("cose: %w: COSE algorithm %d", pluton.ErrUnsupportedAlgorithm, id)
}

// Decoding modes. The outer mode admits the message's own tag; the inner
// one, used for everything inside it, admits no tags at all.
var (
	outerDecMode = strictcbor.DecMode(coseLimits(true))
	innerDecMode = strictcbor.DecMode(coseLimits(false))
	encMode      = strictcbor.EncMode()
)

func coseLimits(tags bool) strictcbor.Limits {
	return strictcbor.Limits{MaxNestedLevels: 8, MaxArrayElements: 64, MaxMapPairs: MaxHeaderLabels,
		AllowTags: tags, AllowUnknownFields: true}
}
