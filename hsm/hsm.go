package hsm

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Options configure [Open]. The zero value (or nil) works.
type Options struct {
	// Logger receives module, token, login, key and recovery events. It
	// never receives a PIN. Default: discard.
	Logger *slog.Logger
	// PIN is used when the URI has no pin-source. A pin-source in the URI
	// wins.
	PIN PINSource
	// PINSources adds pin-source schemes to file: and env:, keyed by
	// scheme name without the colon ("vault"). The function gets what
	// follows "scheme:". It may not replace file or env.
	PINSources map[string]PINSourceFunc
	// LookupEnv reads env: PIN sources. Default: os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// MaxSessions bounds the sessions the Module keeps open, and so the
	// signatures it makes at once. It wins over the URI's max-sessions.
	// Default: the token's ulMaxRwSessionCount, capped at
	// 2*runtime.NumCPU().
	MaxSessions int
	// Rand is the CSPRNG that CKA_ID values are drawn from. Default:
	// crypto/rand.Reader.
	Rand io.Reader
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	if o.MaxSessions < 0 || o.MaxSessions > maxMaxSessions {
		return fmt.Errorf("hsm: Options.MaxSessions %d not in 0..%d", o.MaxSessions, maxMaxSessions)
	}
	for scheme, f := range o.PINSources {
		if scheme == "file" || scheme == "env" {
			return fmt.Errorf("hsm: Options.PINSources may not replace the %s: scheme", scheme)
		}
		if !isSchemeName(scheme) {
			return fmt.Errorf("hsm: Options.PINSources: %q is not a URI scheme name", scheme)
		}
		if f == nil {
			return fmt.Errorf("hsm: Options.PINSources[%q] is nil", scheme)
		}
	}
	return nil
}

// Algorithm is a key type this package creates and signs with.
type Algorithm int

const (
	AlgorithmUnknown Algorithm = iota
	// P256 is ECDSA over NIST P-256 (CKK_EC, CKM_ECDSA).
	P256
	// P384 is ECDSA over NIST P-384 (CKK_EC, CKM_ECDSA).
	P384
	// Ed25519 is pure EdDSA over edwards25519 (CKK_EC_EDWARDS, CKM_EDDSA,
	// PKCS#11 v3.0), where the token offers it.
	Ed25519
)

func (a Algorithm) String() string {
	switch a {
	case P256:
		return "p256"
	case P384:
		return "p384"
	case Ed25519:
		return "ed25519"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// ParseAlgorithm parses "p256", "p384" or "ed25519".
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range []Algorithm{P256, P384, Ed25519} {
		if s == a.String() {
			return a, nil
		}
	}
	return AlgorithmUnknown, fmt.Errorf("hsm: unsupported algorithm %q (want p256, p384 or ed25519)", clip(s))
}

// CreateKeyRequest asks for a new key pair generated inside the token.
type CreateKeyRequest struct {
	// Label is the CKA_LABEL of both objects (the URI's "object"). No
	// object on the token may have it already.
	Label string
	// Algorithm of the key pair.
	Algorithm Algorithm
}

func (r *CreateKeyRequest) validate() error {
	if r == nil {
		return errors.New("hsm: nil CreateKeyRequest")
	}
	if r.Label == "" || len(r.Label) > maxObjectLen {
		return fmt.Errorf("hsm: key label must be 1 to %d bytes", maxObjectLen)
	}
	if !utf8.ValidString(r.Label) || strings.IndexByte(r.Label, 0) >= 0 {
		return errors.New("hsm: key label must be UTF-8 text without NUL")
	}
	switch r.Algorithm {
	case P256, P384, Ed25519:
		return nil
	}
	return fmt.Errorf("hsm: unsupported algorithm %v", r.Algorithm)
}

// KeyInfo describes a private key on the token, as [Module.List] reads it.
// The attributes are the token's own report.
type KeyInfo struct {
	// URI names the private key: token, object, id and type=private.
	URI       *URI
	Label     string // CKA_LABEL
	ID        []byte // CKA_ID
	Algorithm Algorithm
	// Public is the public key from the matching public-key object (same
	// CKA_ID), or nil if there is none.
	Public crypto.PublicKey
	// CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE, CKA_EXTRACTABLE and
	// CKA_NEVER_EXTRACTABLE.
	Sensitive, AlwaysSensitive, Extractable, NeverExtractable bool
}

// InitTokenRequest asks [InitToken] to initialise a SoftHSM2 token, for
// development and tests.
type InitTokenRequest struct {
	// ModulePath of SoftHSM2; "" finds it (see [FindSoftHSM]).
	ModulePath string
	// Label of the new token, 1 to 32 bytes.
	Label string
	// PIN is the user PIN to set (SoftHSM2 takes 4 to 255 bytes).
	PIN PINSource
	// SOPIN is the Security Officer PIN. nil: a random one, used once and
	// forgotten (a development token needs no SO; make a new token to
	// reset the user PIN).
	SOPIN PINSource
	// Rand draws the random SO PIN. Default: crypto/rand.Reader.
	Rand io.Reader
	// Logger receives the token's serial and slot. Default: discard.
	Logger *slog.Logger
}
