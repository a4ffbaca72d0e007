package evidence

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/cose"
	"github.com/rootline/rootline/pluton/measure"
)

// ParseOptions change how [ParseWithOptions] parses a token. The zero
// value, like a nil *ParseOptions, parses as [Parse] does.
type ParseOptions struct {
	// Certificates, if not nil, is asked for the parsed certificates of
	// an x5chain before they are parsed: ders are its DER certificates,
	// leaf first, already within MaxCertificates and MaxCertificateSize.
	// It returns the certificates x509.ParseCertificate gave for the same
	// DER earlier (a verifier remembers, keyed by a digest of their bytes,
	// the chains it has verified), or nil to have them parsed.
	//
	// The certificates it returns are used only if there are len(ders) of
	// them and each one's Raw is byte for byte ders[i]; otherwise the
	// chain is parsed as Parse does. They are shared: the Token holds them
	// as they are, and nothing may modify them. ders is the token's own
	// memory: Certificates must not keep or modify it.
	Certificates func(ders [][]byte) []*x509.Certificate
	// EventLog, if not nil, is asked for the parsed event log of a claims
	// set before it is parsed: b is the event log claim (the token's own
	// memory: EventLog must not keep or modify it). It returns a Log that
	// measure.ParseLog gave earlier (a verifier remembers the last log of
	// each chain it verified), or nil to have b parsed. The Log it returns
	// is used only if it was parsed from exactly b (measure.Log.ParsedFrom);
	// otherwise b is parsed as Parse does. It is shared: a parsed Log is
	// never modified.
	EventLog func(b []byte) *measure.Log
}

// ParseWithOptions is [Parse] with options: it checks and refuses exactly
// what Parse does, and returns the same Token, except that with
// opts.Certificates the x5chain's certificates, and with opts.EventLog the
// event log, may come from an earlier parse of the same bytes rather than
// from parsing them again.
func ParseWithOptions(b []byte, opts *ParseOptions) (*Token, error) {
	return parse(b, opts)
}

// cachedChain returns the certificates opts.Certificates has for ders, if
// they are exactly ders, or nil. It asks only for a chain within the
// limits, so that a chain beyond them is refused as Parse refuses it.
func (opts *ParseOptions) cachedChain(ders [][]byte) []*x509.Certificate {
	if opts == nil || opts.Certificates == nil {
		return nil
	}
	for _, der := range ders {
		if len(der) > MaxCertificateSize {
			return nil
		}
	}
	certs := opts.Certificates(ders)
	if len(certs) != len(ders) {
		return nil
	}
	for i, c := range certs {
		if c == nil || !bytes.Equal(c.Raw, ders[i]) {
			return nil
		}
	}
	return slices.Clone(certs)
}

// A TokenSigner makes tokens with one signer and one chain, as [Sign]
// does, having parsed the chain and checked that its leaf certifies the
// signer once, in [NewTokenSigner]: for a device whose app layer keeps its
// Alias key and DICE chain for the whole boot and attests many times. It is
// safe for concurrent use if its signer is.
type TokenSigner struct {
	signer crypto.Signer
	alg    pluton.Algorithm
	chain  [][]byte
	// log is the last event log Sign parsed and accepted: the claims sets
	// of one boot carry the same log, which is then not parsed again (a
	// parse is a function of the bytes alone, measure.Log.ParsedFrom).
	log atomic.Pointer[measure.Log]
}

// NewTokenSigner checks signer and chain as [Sign] does (chain: 1 to
// MaxCertificates DER certificates of at most MaxCertificateSize bytes,
// leaf first, the leaf certifying signer's public key) and returns a
// TokenSigner of them. chain is copied. Errors wrap [ErrMalformed] or
// [ErrTooLarge], and [pluton.ErrInvalidArgument].
func NewTokenSigner(signer crypto.Signer, alg pluton.Algorithm, chain [][]byte) (*TokenSigner, error) {
	if signer == nil {
		return nil, fmt.Errorf("evidence: nil signer: %w", pluton.ErrInvalidArgument)
	}
	if err := checkSignerChain(signer, chain); err != nil {
		return nil, err
	}
	c := make([][]byte, len(chain))
	for i, der := range chain {
		c[i] = bytes.Clone(der)
	}
	return &TokenSigner{signer: signer, alg: alg, chain: c}, nil
}

// Sign makes a token of the claims c, as [Sign] does with the
// TokenSigner's signer, algorithm and chain: c is checked as Parse would,
// and the signature is checked before Sign returns. rand is passed to the
// signer.
func (s *TokenSigner) Sign(rand io.Reader, c *Claims) ([]byte, error) {
	last := s.log.Load()
	payload, log, err := encodeChecked(c, func([]byte) *measure.Log { return last })
	if err != nil {
		return nil, invalid(err)
	}
	if log != nil && log != last {
		s.log.Store(log)
	}
	return signPayload(rand, s.signer, s.alg, payload, len(c.EventLog), s.chain)
}

// checkSignerChain checks chain as Sign does: it parses, and its leaf
// certifies signer's public key.
func checkSignerChain(signer crypto.Signer, chain [][]byte) error {
	certs, err := parseChain(chain, nil)
	if err != nil {
		return invalid(err)
	}
	leafKey, err := leafPublicKey(certs[0])
	if err != nil {
		return invalid(err)
	}
	eq, ok := leafKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(signer.Public()) {
		return invalid(malformed("the leaf certificate does not certify the signer's public key"))
	}
	return nil
}

// signPayload signs an encoded claims set into a token (RFC 9052, §4.4,
// through internal/cose, which checks the signature it made) and applies
// MaxTokenSize.
func signPayload(rand io.Reader, signer crypto.Signer, alg pluton.Algorithm, payload []byte, logSize int, chain [][]byte) ([]byte, error) {
	protected := &cose.Header{ContentType: uint64(ContentFormat), X5Chain: chain}
	msg, err := cose.Sign1(rand, signer, alg, protected, nil, payload, nil)
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	if err := checkTokenSize(len(msg), logSize); err != nil {
		return nil, invalid(err)
	}
	return msg, nil
}
