package evidence

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"slices"

	"github.com/rootline/rootline/pluton/internal/cose"
	"github.com/rootline/rootline/pluton/measure"
)

// Parse parses a token without checking its signature or its chain. b is
// untrusted, and so is everything in the result until [Verify] accepts the
// same bytes. Parse is strict and bounded:
//
//   - b is a tagged COSE_Sign1 (RFC 9052, §4.2) of at most MaxTokenSize
//     bytes, parsed by internal/cose (definite lengths, no duplicate keys,
//     no tags inside, preferred encoding of the head);
//   - the protected header holds the algorithm, the content type
//     [ContentFormat] and the x5chain, nothing else; the unprotected header
//     is empty;
//   - the x5chain has 1 to MaxCertificates certificates of at most
//     MaxCertificateSize bytes, each an X.509 certificate; the leaf's key
//     is one of pluton's algorithms;
//   - the payload is a claims set of the profile (see the package
//     documentation): every claim of the right type and within its limits,
//     no other claim, in Core Deterministic Encoding; the event log, if
//     any, parses (pluton/measure).
//
// Every error is a *[VerifyError] wrapping [ErrMalformed] or [ErrTooLarge].
func Parse(b []byte) (*Token, error) {
	return parse(b, nil)
}

func parse(b []byte, opts *ParseOptions) (*Token, error) {
	if len(b) > MaxTokenSize {
		return nil, tooLarge("token of %d bytes (at most %d)", len(b), MaxTokenSize)
	}
	m, err := cose.ParseSign1(b)
	if err != nil {
		if errors.Is(err, cose.ErrTooLarge) {
			return nil, refuse(ErrTooLarge, err, "COSE_Sign1")
		}
		return nil, refuse(ErrMalformed, err, "COSE_Sign1")
	}
	alg, err := m.Algorithm()
	if err != nil {
		return nil, refuse(ErrMalformed, err, "signature algorithm")
	}
	p := &m.Protected
	switch {
	case p.ContentType != uint64(ContentFormat):
		return nil, malformed("content type %v (want %d, application/eat+cwt)", p.ContentType, ContentFormat)
	case p.X5Chain == nil:
		return nil, malformed("no x5chain in the protected header")
	case p.KID != nil || len(p.Extra) > 0:
		return nil, malformed("unexpected parameter in the protected header")
	}
	if u := &m.Unprotected; u.KID != nil || u.ContentType != nil || u.X5Chain != nil || len(u.Extra) > 0 {
		return nil, malformed("the unprotected header is not empty")
	}
	chain, err := parseChain(p.X5Chain, opts)
	if err != nil {
		return nil, err
	}
	pub, err := leafPublicKey(chain[0])
	if err != nil {
		return nil, err
	}
	var parsedLog func([]byte) *measure.Log
	if opts != nil {
		parsedLog = opts.EventLog
	}
	claims, log, err := decodeClaims(m.Payload, parsedLog)
	if err != nil {
		return nil, err
	}
	if err := checkTokenSize(len(b), len(claims.EventLog)); err != nil {
		return nil, err
	}
	return &Token{
		Claims:    claims,
		Chain:     chain,
		PublicKey: pub,
		Algorithm: alg,
		Log:       log,
		Raw:       bytes.Clone(b),
		msg:       m,
	}, nil
}

// Verify parses b as [Parse] does and verifies it:
//
//  1. the COSE_Sign1 signature (RFC 9052, §4.4) with the leaf
//     certificate's public key, through pluton.VerifyP1363
//     (internal/cose); a key that is not of the token's algorithm fails
//     too;
//  2. the chain's structure: for each certificate but the last, its issuer
//     name is the next one's subject name, the next one is a CA
//     (basicConstraints cA; keyCertSign if it has a keyUsage; its
//     pathLenConstraint, RFC 5280, §4.2.1.9, counting the CA certificates
//     below it that are not self-issued) and signed it
//     (x509.Certificate.CheckSignatureFrom); the leaf's keyUsage, if
//     present, allows digitalSignature; no certificate has a critical
//     extension other than those crypto/x509 handles and the TCG DICE ones
//     (TcbInfo, MultiTcbInfo, UEID); a self-issued last certificate (a
//     self-signed DeviceID certificate) is self-signed; with
//     opts.CurrentTime, each certificate is valid then;
//  3. with opts.Roots, the last certificate is one of them or chains to
//     one (x509.Certificate.Verify, any extended key usage);
//  4. with opts.Nonce, the token's nonce equals it (in constant time);
//  5. if the token has an event log, it reproduces the registers the token
//     claims (measure.Log.Verify).
//
// opts may be nil. Every error is a *[VerifyError]: [ErrMalformed] or
// [ErrTooLarge] from parsing, then [ErrSignature], [ErrChain], [ErrNonce],
// [ErrEventLog], in that order of checking. On success the token's claims
// are those the holder of the leaf key signed; what the chain's keys
// vouch for, and whether the claims are acceptable (reference values,
// counters, lifecycle), is the appraisal's business.
func Verify(b []byte, opts *VerifyOptions) (*Token, error) {
	if opts == nil {
		opts = &VerifyOptions{}
	}
	t, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if err := t.msg.Verify(t.PublicKey, nil); err != nil {
		return nil, refuse(ErrSignature, err, "COSE_Sign1 with the leaf certificate's key")
	}
	if err := verifyChain(t.Chain, opts); err != nil {
		return nil, err
	}
	if opts.Nonce != nil && subtle.ConstantTimeCompare(opts.Nonce, t.Claims.Nonce) != 1 {
		return nil, refuse(ErrNonce, nil, "the token answers another challenge")
	}
	if t.Log != nil {
		if err := t.Log.Verify(t.Claims.Registers); err != nil {
			return nil, refuse(ErrEventLog, err, "replaying the event log")
		}
	}
	return t, nil
}

// Critical extensions a DICE chain may carry that crypto/x509 does not
// handle: tcg-dice-TcbInfo (2.23.133.5.4.1), tcg-dice-Ueid
// (2.23.133.5.4.4) and tcg-dice-MultiTcbInfo (2.23.133.5.4.5) of the TCG
// DICE Attestation Architecture. A DICE verifier reads them (pluton/dice)
// whether or not they are marked critical, and some DICE implementations
// mark TcbInfo critical.
var diceExtensions = []asn1.ObjectIdentifier{
	{2, 23, 133, 5, 4, 1},
	{2, 23, 133, 5, 4, 4},
	{2, 23, 133, 5, 4, 5},
}

// unhandledCritical returns the critical extensions of c that neither
// crypto/x509 nor a DICE verifier handles.
func unhandledCritical(c *x509.Certificate) []asn1.ObjectIdentifier {
	var out []asn1.ObjectIdentifier
	for _, oid := range c.UnhandledCriticalExtensions {
		if !slices.ContainsFunc(diceExtensions, oid.Equal) {
			out = append(out, oid)
		}
	}
	return out
}

func chainError(cause error, format string, args ...any) error {
	return refuse(ErrChain, cause, format, args...)
}

// verifyChain checks the structure of chain (leaf first) and, with
// opts.Roots, its anchoring.
func verifyChain(chain []*x509.Certificate, opts *VerifyOptions) error {
	leaf := chain[0]
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return chainError(nil, "the leaf certificate's keyUsage does not allow digitalSignature")
	}
	for i, c := range chain {
		if bad := unhandledCritical(c); len(bad) > 0 {
			return chainError(nil, "certificate %d has an unhandled critical extension %v", i, bad[0])
		}
		if t := opts.CurrentTime; !t.IsZero() && (t.Before(c.NotBefore) || t.After(c.NotAfter)) {
			return chainError(nil, "certificate %d is not valid at %v", i, t.UTC())
		}
	}
	for i := 0; i+1 < len(chain); i++ {
		child, parent := chain[i], chain[i+1]
		if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
			return chainError(nil, "the issuer of certificate %d is not the subject of certificate %d (a missing link?)", i, i+1)
		}
		if !parent.BasicConstraintsValid || !parent.IsCA {
			return chainError(nil, "certificate %d is not a CA", i+1)
		}
		if parent.KeyUsage != 0 && parent.KeyUsage&x509.KeyUsageCertSign == 0 {
			return chainError(nil, "certificate %d's keyUsage does not allow keyCertSign", i+1)
		}
		if parent.MaxPathLen > 0 || parent.MaxPathLen == 0 && parent.MaxPathLenZero {
			// RFC 5280, §4.2.1.9: the number of non-self-issued
			// intermediate certificates that may follow it.
			n := 0
			for _, c := range chain[1 : i+1] {
				if !bytes.Equal(c.RawIssuer, c.RawSubject) {
					n++
				}
			}
			if n > parent.MaxPathLen {
				return chainError(nil, "certificate %d's pathLenConstraint %d allows fewer than the %d CA certificates below it", i+1, parent.MaxPathLen, n)
			}
		}
		if err := child.CheckSignatureFrom(parent); err != nil {
			return chainError(err, "certificate %d is not signed by certificate %d", i, i+1)
		}
	}
	last := chain[len(chain)-1]
	if len(chain) > 1 && bytes.Equal(last.RawIssuer, last.RawSubject) {
		if err := last.CheckSignatureFrom(last); err != nil {
			return chainError(err, "the self-issued last certificate is not self-signed")
		}
	}
	if opts.Roots == nil {
		return nil
	}
	// x509.Certificate.Verify refuses a certificate with a critical
	// extension it does not handle; the DICE ones were accepted above.
	anchor := *last
	anchor.UnhandledCriticalExtensions = nil
	at := opts.CurrentTime
	if at.IsZero() {
		at = last.NotBefore
	}
	if _, err := anchor.Verify(x509.VerifyOptions{
		Roots:       opts.Roots,
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return chainError(err, "the chain does not lead to a trusted root")
	}
	return nil
}
