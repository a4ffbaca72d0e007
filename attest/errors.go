package attest

import (
	"errors"
	"fmt"
)

var (
	// ErrRefused is matched by every *Error: the evidence was refused.
	ErrRefused = errors.New("attest: evidence refused")
	// ErrUnknownDevice is what Devices.Lookup wraps for a UEID it does
	// not know.
	ErrUnknownDevice = errors.New("attest: unknown device")
	// ErrRollback is what Store.Record wraps when the state it is asked to
	// accept is lower than the device's stored one (a concurrent
	// attestation accepted a newer state first). Nothing is stored.
	ErrRollback = errors.New("attest: state lower than the accepted one")
	// ErrEndorsements: an endorsements document is malformed, of another
	// version, or beyond a bound.
	ErrEndorsements = errors.New("attest: bad endorsements")
	// ErrConfig: a Config is not usable.
	ErrConfig = errors.New("attest: bad configuration")
	// ErrClosed: the Verifier or Store was closed.
	ErrClosed = errors.New("attest: closed")
)

// Code names why an attestation was not affirmed. Codes are stable: they
// appear in EARs ("rootline.reasons") and in the store.
type Code string

// Reason codes, grouped by the check that produces them.
const (
	// Stage 1, Verify: the evidence and the device's identity.
	CodeMalformed     Code = "malformed"          // not a token of the rootline evidence profile v1
	CodeTooLarge      Code = "too-large"          // the token or a part exceeds a limit
	CodeSignature     Code = "signature"          // the token's signature does not verify with its Alias key
	CodeChain         Code = "chain"              // the DICE chain or IDevID chain is broken (missing link, bad signature, …)
	CodeEventLog      Code = "event-log"          // the event log does not reproduce the registers
	CodeUnknownRoot   Code = "unknown-root"       // the IDevID chain does not lead to a configured factory root
	CodeUnknownDevice Code = "unknown-device"     // the UEID is not in the registry
	CodeDeviceState   Code = "device-state"       // the registry does not list the device as active
	CodeIdentity      Code = "identity"           // IDevID not the registered one, or not of this DICE chain or UEID
	CodeRevoked       Code = "revoked"            // the IDevID is on its issuer's CRL
	CodeRevocation    Code = "revocation-unknown" // no valid, current CRL of the IDevID's issuer
	CodeNonceInvalid  Code = "nonce-invalid"      // the nonce is not this verifier's
	CodeNonceExpired  Code = "nonce-expired"      // the nonce is too old
	CodeNonceReplayed Code = "nonce-replayed"     // the nonce was used before
	CodeBusy          Code = "busy"               // the replay cache is full: try again later
	CodeRollback      Code = "rollback"           // a counter or a layer's SVN is lower than last accepted
	CodeQuote         Code = "tpm-quote"          // a TPM device's quote is missing, not by its registered IAK, not over the nonce and registers, or does not cover its layers
	CodeRecord        Code = "registry-record"    // the registry's record of the device is unusable (unknown kind, missing or malformed DeviceID key or IAK)

	// Stage 2, Appraise: the measurements against the endorsements.
	CodeUnknownProduct     Code = "unknown-product"     // no reference values for the product
	CodeUnknownVersion     Code = "unknown-version"     // a layer's version has no reference value
	CodeUnknownMeasurement Code = "unknown-measurement" // a layer's digest is not its version's
	CodeUnknownSigner      Code = "unknown-signer"      // a layer's signer is not its version's
	CodeUnknownRelease     Code = "unknown-release"     // the layers, each known, are no release together
	CodeSVN                Code = "svn"                 // a layer's SVN is below the release's minimum
	CodeVulnerable         Code = "vulnerable"          // the release is marked vulnerable (warning)
	CodeLifecycle          Code = "lifecycle"           // the chip is not provisioned or locked

	// The request around the evidence.
	CodeCSR Code = "csr" // the CSR is malformed or not for the attested Alias key
)

// Reason is one reason for a status: a code and a human-readable detail.
// Details never hold secrets; they may quote untrusted data, escaped.
type Reason struct {
	Code   Code   `json:"code"`
	Detail string `json:"detail,omitempty"`
}

func (r Reason) String() string {
	if r.Detail == "" {
		return string(r.Code)
	}
	return string(r.Code) + ": " + r.Detail
}

// Error is a refusal by Verify (or Attest's request checks). It matches
// ErrRefused; Err, if not nil, is the underlying error (from
// pluton/evidence, crypto/x509, internal/nonce, the Store).
type Error struct {
	Reason Reason
	Err    error

	// ueid is set once the token's signer is authenticated as this
	// device (signature, DICE chain, IDevID): Attest then records the
	// refusal in the device's history.
	ueid []byte
}

func (e *Error) Error() string {
	return "attest: refused: " + e.Reason.String()
}

// Unwrap returns ErrRefused and, if set, Err.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrRefused}
	}
	return []error{ErrRefused, e.Err}
}

func refuse(code Code, err error, format string, args ...any) *Error {
	return &Error{Reason: Reason{Code: code, Detail: fmt.Sprintf(format, args...)}, Err: err}
}

// CodeOf returns the code of a refusal, or "" if err is not an *Error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason.Code
	}
	return ""
}
