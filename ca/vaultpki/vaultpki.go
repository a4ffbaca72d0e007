package vaultpki

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/rootline/rootline/ca"
)

// KeyStore gives the signers of the issuing CAs' keys by name.
// *vault.KMS of package hsm/vault implements it with Vault Transit keys.
type KeyStore interface {
	Signer(ctx context.Context, name string) (crypto.Signer, error)
}

// Config says where a CA's state and keys are in Vault.
type Config struct {
	// Store holds the hierarchy and the revocations ([NewStore]).
	Store *Store
	// Keys signs with the issuing CAs' keys (Vault Transit: a *vault.KMS).
	Keys KeyStore
	// Organization goes into every subject (ca.TemplateOptions).
	Organization string
	// CRLDistributionPoints maps issuing CA names to the URL of their CRL,
	// written into the certificates they issue. Optional.
	CRLDistributionPoints map[string]string
	// CRLValidity is nextUpdate - thisUpdate of the CRLs. Default:
	// ca.DefaultCRLValidity.
	CRLValidity time.Duration
	// Rand draws serial numbers. Default: crypto/rand.Reader.
	Rand io.Reader
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives issuance, refusal and revocation records. Default:
	// discard.
	Logger *slog.Logger
}

// CA is a [ca.Issuer] whose keys and state are in Vault: the issuing CAs'
// private keys are non-exportable Vault Transit keys, and their
// certificates, the revocations and the CRL numbers are in Vault KV. It
// issues with the profiles of package ca (ca.Check and
// ca.Checked.Template), so its certificates are those of ca.Local, byte
// for byte but for serial numbers, signatures and times; its Issue,
// Revoke, CRL and CRLFor are ca.Local's (see there).
//
// A Vault that is sealed or unreachable while signing or reading the
// store makes those calls fail with an error that matches
// [ca.ErrUnavailable] (and [ca.ErrSigning] or [ca.ErrRevocationStore]);
// nothing is issued or revoked then.
type CA struct {
	*ca.Local
}

var _ ca.Issuer = (*CA)(nil)

// Open reads the hierarchy from cfg.Store, gets a signer for each issuing
// CA's key from cfg.Keys, and checks it all as ca.NewLocal does (each
// issuing CA a CA certificate signed by the root, whose key is the
// signer's).
func Open(ctx context.Context, cfg *Config) (*CA, error) {
	if cfg == nil || cfg.Store == nil || cfg.Keys == nil {
		return nil, errors.New("vaultpki: Config needs a Store and a KeyStore")
	}
	root, err := cfg.Store.Root(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := cfg.Store.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	opts := &ca.LocalOptions{
		Root:                  root,
		Revocations:           cfg.Store,
		Organization:          cfg.Organization,
		CRLDistributionPoints: cfg.CRLDistributionPoints,
		CRLValidity:           cfg.CRLValidity,
		Rand:                  cfg.Rand,
		Now:                   cfg.Now,
		Logger:                cfg.Logger,
	}
	for _, rec := range recs {
		s, err := cfg.Keys.Signer(ctx, rec.Key)
		if err != nil {
			return nil, fmt.Errorf("vaultpki: the key of issuing CA %s: %w", rec.Name, err)
		}
		a := ca.Authority{Certificate: rec.Certificate, Signer: &availabilitySigner{s}}
		if rec.Name == ca.StationsIssuer {
			opts.Stations = &a
			continue
		}
		opts.Products = append(opts.Products, ca.Product{Name: rec.Name, HWType: rec.HWType, Authority: a})
	}
	l, err := ca.NewLocal(opts)
	if err != nil {
		return nil, err
	}
	return &CA{l}, nil
}

// availabilitySigner marks the failures of a remote signer that say the
// service is down (no answer, or an HTTP 5xx such as Vault's 503 when
// sealed) with ca.ErrUnavailable.
type availabilitySigner struct{ crypto.Signer }

type contextSigner interface {
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

func (a *availabilitySigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := a.Signer.Sign(rand, digest, opts)
	return sig, markUnavailable(err)
}

// SignContext lets ca.Local bind its context to the signer.
func (a *availabilitySigner) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	cs, ok := a.Signer.(contextSigner)
	if !ok {
		return a.Sign(nil, digest, opts)
	}
	sig, err := cs.SignContext(ctx, digest, opts)
	return sig, markUnavailable(err)
}

func markUnavailable(err error) error {
	if err == nil || errors.Is(err, ca.ErrUnavailable) {
		return err
	}
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode >= 500 || !errors.As(err, &re) && isTransport(err) {
		return fmt.Errorf("%w: %w", ca.ErrUnavailable, err)
	}
	return err
}

// vaultError sorts a failed request to Vault: no answer or a 5xx (503:
// sealed) is ca.ErrUnavailable, any other refusal ca.ErrRefused; both
// with ca.ErrRevocationStore, since the store makes every request of this
// package. The API client's error stays wrapped.
func vaultError(ctx context.Context, op, path string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("vaultpki: %s %s: %w", op, path, err)
	}
	kind := ca.ErrRefused
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode >= 500 || !errors.As(err, &re) {
		kind = ca.ErrUnavailable
	}
	return fmt.Errorf("%w: %w: vaultpki: %s %s: %w", ca.ErrRevocationStore, kind, op, path, err)
}

func isTransport(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

// checkName accepts an issuing CA's name as package ca does a product's:
// 1 to ca.MaxNameLen letters, digits, '.', '-', '_', starting with a
// letter or digit (so it is one safe KV path segment).
func checkName(s string) error {
	if s == "" || len(s) > ca.MaxNameLen {
		return fmt.Errorf("%w: issuing CA name must be 1 to %d bytes", ca.ErrInvalidCA, ca.MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || i > 0 && (c == '.' || c == '-' || c == '_')) {
			return fmt.Errorf("%w: issuing CA name %q: letters, digits, '.', '-', '_'", ca.ErrInvalidCA, clip(s))
		}
	}
	return nil
}

// checkKeyName accepts a transit key name: Vault's
// \w(([\w-.@]+)?\w)?, at most 128 bytes.
func checkKeyName(s string) error {
	if s == "" || len(s) > 128 {
		return errors.New("vaultpki: key name must be 1 to 128 bytes")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		word := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
		if !word && (i == 0 || i == len(s)-1 || !strings.ContainsRune("-.@", rune(c))) {
			return fmt.Errorf("vaultpki: key name %q is not a Vault name", clip(s))
		}
	}
	return nil
}

// checkPath accepts a KV mount or prefix: segments of letters, digits and
// "_-.@", none empty, "." or "..".
func checkPath(what, p string) error {
	if p == "" || len(p) > 256 {
		return fmt.Errorf("vaultpki: %s must be 1 to 256 bytes", what)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("vaultpki: %s %q has an empty, \".\" or \"..\" segment", what, clip(p))
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("_-.@", rune(c))) {
				return fmt.Errorf("vaultpki: %s %q: segments take letters, digits and _-.@", what, clip(p))
			}
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
