package evidence

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"github.com/rootline/rootline/pluton"
)

// Sign makes a token: the claims c, encoded as the rootline evidence
// profile v1 says, signed by signer (the top layer's Alias key) under alg
// in a tagged COSE_Sign1 (RFC 9052, §4.2) whose protected header carries
// the content type [ContentFormat] and the x5chain chain (RFC 9360, §2).
//
// chain is the signer's certificate chain, DER, leaf first: the Alias
// certificate, whose public key must be signer's, then its issuer's
// certificate and so on up to the DeviceID certificate or, once the chip is
// provisioned, the IDevID certificate and the factory CA's intermediates.
// It has 1 to MaxCertificates certificates of at most MaxCertificateSize
// bytes each. Sign checks that each is a certificate and that the leaf
// certifies signer's key, not the signatures of the chain: [Verify] does.
//
// Sign checks c as [Parse] would, so a token Sign makes always parses; an
// invalid c or chain yields an error wrapping [ErrMalformed] or
// [ErrTooLarge], and [pluton.ErrInvalidArgument]. The signature is checked
// before Sign returns (internal/cose). rand is passed to signer.Sign.
//
// An ML-DSA-65 signer works like the others, but its certificate cannot be
// made with crypto/x509, which cannot encode an ML-DSA public key: it must
// come from elsewhere (for example OpenSSL 3.5), signed by an ECDSA or
// Ed25519 issuer. Without a certificate of its key, Sign refuses it.
func Sign(rand io.Reader, signer crypto.Signer, alg pluton.Algorithm, c *Claims, chain [][]byte) ([]byte, error) {
	if signer == nil {
		return nil, fmt.Errorf("evidence: nil signer: %w", pluton.ErrInvalidArgument)
	}
	payload, err := encodeClaims(c)
	if err != nil {
		return nil, invalid(err)
	}
	if err := checkSignerChain(signer, chain); err != nil {
		return nil, err
	}
	return signPayload(rand, signer, alg, payload, len(c.EventLog), chain)
}

// invalid marks a refusal of Sign's input as an invalid argument too.
func invalid(err error) error {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w (%w)", err, pluton.ErrInvalidArgument)
	}
	return err
}

// checkTokenSize applies MaxTokenSize.
func checkTokenSize(n, logSize int) error {
	if n > MaxTokenSize || n-logSize > maxTokenSizeWithoutLog {
		return tooLarge("token of %d bytes with an event log of %d (at most %d without the log)", n, logSize, maxTokenSizeWithoutLog)
	}
	return nil
}

// parseChain parses an x5chain, checking its limits; with opts, its
// certificates may come from opts.Certificates (see ParseOptions). Errors
// are *VerifyError.
func parseChain(chain [][]byte, opts *ParseOptions) ([]*x509.Certificate, error) {
	switch n := len(chain); {
	case n == 0:
		return nil, malformed("no certificate chain")
	case n > MaxCertificates:
		return nil, tooLarge("x5chain of %d certificates (at most %d)", n, MaxCertificates)
	}
	if certs := opts.cachedChain(chain); certs != nil {
		return certs, nil
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		if len(der) > MaxCertificateSize {
			return nil, tooLarge("certificate %d of %d bytes (at most %d)", i, len(der), MaxCertificateSize)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, refuse(ErrMalformed, err, "certificate %d", i)
		}
		certs[i] = c
	}
	return certs, nil
}

// leafPublicKey returns the public key of the leaf certificate:
// crypto/x509's for ECDSA and Ed25519, and for a SubjectPublicKeyInfo
// crypto/x509 does not know (ML-DSA-65) pluton.ParsePublicKey's. A key of
// no algorithm of pluton is refused.
func leafPublicKey(c *x509.Certificate) (crypto.PublicKey, error) {
	pub := c.PublicKey
	if pub == nil {
		k, _, err := pluton.ParsePublicKey(c.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, refuse(ErrMalformed, err, "leaf certificate public key")
		}
		pub = k
	}
	if _, err := pluton.AlgorithmOf(pub); err != nil {
		return nil, refuse(ErrMalformed, err, "leaf certificate public key")
	}
	return pub, nil
}
