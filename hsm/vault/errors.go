package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Errors returned by this package, wrapped with context: test with
// errors.Is. A failure of a request to Vault is an *[Error], which matches
// the sentinel of its kind and unwraps to the Vault API client's error (an
// *api.ResponseError when Vault answered).
var (
	// ErrSealed: Vault is sealed (it answered 503 "Vault is sealed", or
	// sys/seal-status says so). Nothing can be signed until an operator
	// unseals it.
	ErrSealed = errors.New("vault: Vault is sealed")
	// ErrUnreachable: no answer from Vault: the connection or the TLS
	// handshake failed (a certificate Config.CACert does not vouch for
	// included), or the request timed out.
	ErrUnreachable = errors.New("vault: Vault is unreachable")
	// ErrKeyNotFound: the transit key (or KV secret, or its field) does
	// not exist.
	ErrKeyNotFound = errors.New("vault: key not found")
	// ErrPermission: Vault refused the token (403: unknown, expired or
	// revoked token, a policy that does not grant the path, or an AppRole
	// login refused).
	ErrPermission = errors.New("vault: permission denied")
	// ErrKeyExists: CreateKey was asked for a name a transit key has.
	ErrKeyExists = errors.New("vault: a key with this name exists")
	// ErrKeyAttributes: a transit key is not what this package signs with:
	// an unsupported type, or exportable, or with plaintext backup allowed.
	ErrKeyAttributes = errors.New("vault: key attributes refused")
	// ErrUnsupported: the signer options ask for something the key cannot
	// do (a hash Vault does not name, Ed25519ph, Ed25519ctx).
	ErrUnsupported = errors.New("vault: unsupported signing options")
	// ErrBadResponse: an answer from Vault does not have the form its API
	// documents (a malformed signature or public key, a missing field).
	ErrBadResponse = errors.New("vault: malformed response from Vault")
	// ErrSelfTest: a signature from Vault does not verify under the key's
	// public key (the pairwise-consistency test of a signer's first
	// signature).
	ErrSelfTest = errors.New("vault: pairwise-consistency test failed")
	// ErrClosed: the KMS was closed.
	ErrClosed = errors.New("vault: KMS closed")
)

// Error is a request to Vault that failed. It matches, with errors.Is, its
// Kind (one of the sentinels above, or nil for a failure this package does
// not sort), and unwraps to Err, the Vault API client's error: errors.As
// with *api.ResponseError gives Vault's status code and messages.
type Error struct {
	Op         string // what this package was doing: "sign", "read key", "login"
	Path       string // the Vault API path, "transit/sign/factory"
	StatusCode int    // the HTTP status, 0 when Vault did not answer
	Kind       error
	Err        error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("vault: ")
	b.WriteString(e.Op)
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Kind.Error(), "vault: "))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// requestError sorts a request that failed under ctx. sealed, if not nil,
// asks Vault's unauthenticated sys/seal-status whether it is sealed (for a
// 503 whose message does not say).
func requestError(ctx context.Context, op, path string, err error, sealed func() bool) error {
	e := &Error{Op: op, Path: path, Err: err}
	var re *api.ResponseError
	switch {
	case ctx.Err() != nil:
		// The caller's context ended: no kind; the context error shows
		// through Unwrap. (The client's own per-request timeout is a
		// deadline too, but leaves ctx alive: it is ErrUnreachable.)
	case errors.As(err, &re):
		e.StatusCode = re.StatusCode
		e.Kind = responseKind(re, sealed)
	case isTransport(err), errors.Is(err, context.DeadlineExceeded):
		e.Kind = ErrUnreachable
	}
	return e
}

// responseKind sorts an answer from Vault by status code and, where Vault
// uses one code for several causes, by message (Vault's HTTP API,
// "HTTP Status Codes": 400 invalid request, 403 forbidden, 404 not found,
// 503 sealed or down for maintenance).
func responseKind(re *api.ResponseError, sealed func() bool) error {
	msg := strings.ToLower(strings.Join(re.Errors, "; "))
	switch re.StatusCode {
	case 403, 401:
		return ErrPermission
	case 404:
		return ErrKeyNotFound
	case 400:
		// transit/sign on a missing key: "signing key not found"
		// (older: "encryption key not found").
		if strings.Contains(msg, "key not found") {
			return ErrKeyNotFound
		}
		if strings.Contains(msg, "already exists") {
			return ErrKeyExists
		}
	case 503:
		if strings.Contains(msg, "vault is sealed") || (sealed != nil && sealed()) {
			return ErrSealed
		}
	}
	return nil
}

// isTransport reports whether err happened before Vault answered: a
// failed dial, DNS lookup or TLS handshake, a reset connection, a timeout.
func isTransport(err error) bool {
	var ue *url.Error
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.As(err, &oe)
}

// badResponse is an ErrBadResponse for an answer at path.
func badResponse(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadResponse, path, fmt.Sprintf(format, args...))
}
