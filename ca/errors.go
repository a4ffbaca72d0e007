package ca

import (
	"errors"
	"fmt"
)

// Errors returned by this package and by every [Issuer] backend. They are
// wrapped with context; callers test with errors.Is.
//
// A refused request is a [*RequestError]: it matches [ErrBadRequest] and
// the more specific sentinel of its kind, so a caller can branch on either.
var (
	// ErrBadRequest: the request was refused before anything was signed.
	// Every refusal of a request matches it.
	ErrBadRequest = errors.New("ca: bad certificate request")

	// ErrMalformedCSR: the untrusted CSR is not a DER PKCS#10
	// CertificationRequest (RFC 2986) that this package can read.
	ErrMalformedCSR = errors.New("ca: malformed CSR")
	// ErrBadCSRSignature: the CSR's signature does not verify with the key
	// it carries, so it proves no possession of the private key (RFC 2986,
	// §3; RFC 4211, §4).
	ErrBadCSRSignature = errors.New("ca: CSR signature does not verify (no proof of possession)")
	// ErrKeyType: the CSR's key is of a type, curve or size the profile
	// does not accept (RSA-512, P-224, secp256k1…).
	ErrKeyType = errors.New("ca: key type not accepted")
	// ErrForbiddenExtension: the CSR asks for something the profile
	// forbids: a CA certificate (basicConstraints cA TRUE, keyCertSign,
	// cRLSign, nameConstraints), subject alternative names (each profile
	// sets its own; otherNames above all), an unknown critical extension,
	// a duplicated extension, or a malformed DiceTcbInfo or tcg-dice-Ueid.
	ErrForbiddenExtension = errors.New("ca: CSR asks for a forbidden extension")
	// ErrTooLarge: the CSR, or a field of the request (UEID, station name,
	// product list), is larger than this package accepts.
	ErrTooLarge = errors.New("ca: request too large")
	// ErrUnknownProfile: the request names no profile this backend issues.
	ErrUnknownProfile = errors.New("ca: unknown certificate profile")
	// ErrUnknownProduct: the request names a product this backend has no
	// issuing CA for, or a station is to be bound to one.
	ErrUnknownProduct = errors.New("ca: unknown product")
	// ErrInvalidField: a field of the request is missing or out of range
	// (no UEID for an IDevID, a bad station name, a validity the profile
	// does not allow, an hwType that is not the product's).
	ErrInvalidField = errors.New("ca: invalid request field")

	// ErrUnknownIssuer: the CRL of an issuing CA this backend does not have
	// was asked for, or a backend with several issuing CAs was asked for
	// "the" CRL (see [Local.CRLFor]).
	ErrUnknownIssuer = errors.New("ca: unknown issuing CA")
	// ErrAlreadyRevoked: the serial number is revoked already; nothing
	// changed.
	ErrAlreadyRevoked = errors.New("ca: certificate already revoked")
	// ErrBadReason: the revocation reason is not one this package records
	// (RFC 5280, §5.3.1: see [Local.Revoke]).
	ErrBadReason = errors.New("ca: revocation reason not accepted")
	// ErrBadSerial: a serial number is nil, zero, negative or longer than
	// the 20 octets RFC 5280, §4.1.2.2, allows.
	ErrBadSerial = errors.New("ca: invalid serial number")

	// ErrSigning: the issuing CA's key failed to sign, or signed wrongly.
	// Nothing was issued. The key backend's error is wrapped too (an hsm
	// PIN or token error matches its own sentinel).
	ErrSigning = errors.New("ca: signing failed")
	// ErrUnavailable: a remote backend (step-ca, Vault) could not be
	// reached or is not serving (sealed, starting, overloaded). Nothing was
	// issued.
	ErrUnavailable = errors.New("ca: backend unavailable")
	// ErrRefused: a remote backend refused the request for a reason of its
	// own (authorisation, policy). Nothing was issued.
	ErrRefused = errors.New("ca: backend refused the request")
	// ErrRevocationStore: the revocation store could not be read or
	// written, or its content is corrupt.
	ErrRevocationStore = errors.New("ca: revocation store")
	// ErrInvalidCA: a CA certificate or key given to this package does not
	// fit its role (not a CA, wrong path length, key does not match).
	ErrInvalidCA = errors.New("ca: invalid CA certificate or key")
)

// RequestError is the refusal of a request: which check failed and why.
// It matches [ErrBadRequest] and Kind with errors.Is.
type RequestError struct {
	// Kind is the sentinel of the failed check: [ErrBadCSRSignature],
	// [ErrKeyType], [ErrForbiddenExtension], [ErrTooLarge]…
	Kind error
	// Reason says what exactly was refused, without secrets.
	Reason string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("%v: %s", e.Kind, e.Reason)
}

// Unwrap returns Kind and [ErrBadRequest].
func (e *RequestError) Unwrap() []error { return []error{e.Kind, ErrBadRequest} }

func refuse(kind error, format string, args ...any) error {
	return &RequestError{Kind: kind, Reason: fmt.Sprintf(format, args...)}
}
