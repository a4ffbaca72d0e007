package boot

import (
	"errors"
	"fmt"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/cose"
)

// Every refusal of [VerifyPolicy], [Policy.VerifyImage] and [ParseImage] is
// a *[VerifyError] wrapping exactly one of these; test with errors.Is.
var (
	// ErrBadSignature: a signature does not verify with the key it names.
	ErrBadSignature = errors.New("boot: bad signature")
	// ErrUnknownSigner: the image is signed by a key the trust policy does
	// not authorize for this layer (or its manifest names other signers).
	ErrUnknownSigner = errors.New("boot: signer not authorized")
	// ErrRevokedSigner: the image is signed by a revoked key.
	ErrRevokedSigner = errors.New("boot: signer revoked")
	// ErrRollback: the image's security version is below the chip's
	// counter for its layer, or the policy's version below the minimum.
	ErrRollback = errors.New("boot: rollback")
	// ErrWrongLayer: the manifest is for another layer.
	ErrWrongLayer = errors.New("boot: wrong layer")
	// ErrWrongProduct: the manifest or policy is for another product.
	ErrWrongProduct = errors.New("boot: wrong product")
	// ErrDigestMismatch: the payload does not match the manifest's digest.
	ErrDigestMismatch = errors.New("boot: payload digest mismatch")
	// ErrTruncated: the image or policy ends early.
	ErrTruncated = errors.New("boot: truncated")
	// ErrMalformed: the input is not a well-formed image, manifest or
	// policy.
	ErrMalformed = errors.New("boot: malformed")
	// ErrTooLarge: the input, or one of its fields, exceeds a limit.
	ErrTooLarge = errors.New("boot: too large")
	// ErrHybridRequired: the layer requires one ECDSA and one ML-DSA-65
	// signature and the image does not have both (or a multi-signature
	// image is not of that form).
	ErrHybridRequired = errors.New("boot: hybrid signature required")
	// ErrRootKeyMismatch: the policy's root key does not hash to the fused
	// root key hash.
	ErrRootKeyMismatch = errors.New("boot: root key does not match the fused hash")
)

// VerifyError says why an image or a trust policy was refused. Err is one
// of the sentinel errors of this package; Cause, if not nil, is the
// underlying error (from COSE, CBOR or [pluton.Verify]). Reason never
// holds secret material.
type VerifyError struct {
	Layer  Layer // the layer of the image, or "" for the trust policy
	Reason string
	Err    error
	Cause  error
}

func (e *VerifyError) Error() string {
	what := "trust policy"
	if e.Layer != "" {
		what = string(e.Layer) + " image"
	}
	s := fmt.Sprintf("%v: %s: %s", e.Err, what, e.Reason)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns Err and Cause.
func (e *VerifyError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

func refuse(layer Layer, sentinel error, reason string, cause error) error {
	return &VerifyError{Layer: layer, Reason: reason, Err: sentinel, Cause: cause}
}

// coseError maps an error of package cose onto this package's sentinels.
func coseError(layer Layer, what string, err error) error {
	switch {
	case errors.Is(err, cose.ErrTruncated):
		return refuse(layer, ErrTruncated, what, err)
	case errors.Is(err, cose.ErrTooLarge):
		return refuse(layer, ErrTooLarge, what, err)
	case errors.Is(err, pluton.ErrInvalidSignature), errors.Is(err, pluton.ErrInvalidKey):
		return refuse(layer, ErrBadSignature, what, err)
	}
	return refuse(layer, ErrMalformed, what, err)
}
