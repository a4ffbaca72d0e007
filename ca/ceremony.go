package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"time"
)

// CAOptions configure [NewRoot] and [NewIntermediate]. nil works.
type CAOptions struct {
	// NotAfter of the CA certificate. Zero means [NotAfterForever]: the
	// IDevIDs below never expire, so neither may the chain above them
	// (IEEE 802.1AR-2018, §8.5). An intermediate may not outlive its root.
	NotAfter time.Time
	// Rand draws the serial number. Default: crypto/rand.Reader.
	Rand io.Reader
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

func (o *CAOptions) rand() io.Reader {
	if o == nil || o.Rand == nil {
		return rand.Reader
	}
	return o.Rand
}

func (o *CAOptions) now() time.Time {
	if o == nil || o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

func (o *CAOptions) notAfter() time.Time {
	if o == nil || o.NotAfter.IsZero() {
		return NotAfterForever()
	}
	return o.NotAfter.UTC().Truncate(time.Second)
}

// NewRoot makes the self-signed root certificate of the hierarchy: the
// offline ceremony. signer is the root key (normally in an HSM; it signs
// its own certificate there). The certificate says (RFC 5280):
//
//   - basicConstraints cA TRUE, pathLenConstraint 1, critical (§4.2.1.9):
//     one level of intermediates (the products'), then devices;
//   - keyUsage keyCertSign and cRLSign, critical (§4.2.1.3);
//   - a subject key identifier (§4.2.1.2; RFC 7093, §2, method 1) and no
//     authority key identifier, as a self-signed certificate may (§4.2.1.1);
//   - a random serial number ([NewSerial]), notBefore now and notAfter
//     CAOptions.NotAfter.
//
// The subject must not be empty (§4.1.2.6). The key must be ECDSA P-256 or
// P-384, or Ed25519. The certificate returned has been parsed back and its
// self-signature verified.
func NewRoot(ctx context.Context, signer crypto.Signer, subject pkix.Name, opts *CAOptions) (*x509.Certificate, error) {
	if signer == nil {
		return nil, fmt.Errorf("%w: nil root signer", ErrInvalidCA)
	}
	if err := checkCAKey(signer.Public()); err != nil {
		return nil, err
	}
	t, err := caTemplate(signer.Public(), subject, 1, opts)
	if err != nil {
		return nil, err
	}
	if t.NotAfter.Before(t.NotBefore) {
		return nil, fmt.Errorf("%w: root notAfter %v is before now", ErrInvalidCA, t.NotAfter)
	}
	c, err := signCA(ctx, t, t, signer, opts)
	if err != nil {
		return nil, err
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		return nil, fmt.Errorf("%w: root does not verify: %v", ErrSigning, err)
	}
	return c, nil
}

// NewIntermediate makes the certificate of a product's online issuing CA,
// signed by the root key (in the offline ceremony): as [NewRoot]'s, but
// with pathLenConstraint 0 (it certifies devices only) and an authority
// key identifier, and for the public key pub of the intermediate's own key
// (normally in the factory's HSM). rootSigner must be root's key; the
// intermediate may not outlive root. The certificate returned has been
// parsed back and verified against root.
func NewIntermediate(ctx context.Context, root *x509.Certificate, rootSigner crypto.Signer, pub crypto.PublicKey, subject pkix.Name, opts *CAOptions) (*x509.Certificate, error) {
	if root == nil || rootSigner == nil {
		return nil, fmt.Errorf("%w: nil root", ErrInvalidCA)
	}
	if !root.IsCA || !root.BasicConstraintsValid || (root.MaxPathLen == 0 && root.MaxPathLenZero) {
		return nil, fmt.Errorf("%w: the root certificate may not certify CAs", ErrInvalidCA)
	}
	if err := keysMatch(root.PublicKey, rootSigner.Public()); err != nil {
		return nil, fmt.Errorf("%w: root signer: %v", ErrInvalidCA, err)
	}
	if err := checkCAKey(pub); err != nil {
		return nil, err
	}
	t, err := caTemplate(pub, subject, 0, opts)
	if err != nil {
		return nil, err
	}
	if t.NotAfter.After(root.NotAfter) {
		return nil, fmt.Errorf("%w: intermediate notAfter %v is after the root's %v", ErrInvalidCA, t.NotAfter, root.NotAfter)
	}
	c, err := signCA(ctx, t, root, rootSigner, opts)
	if err != nil {
		return nil, err
	}
	if err := c.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%w: intermediate does not verify: %v", ErrSigning, err)
	}
	return c, nil
}

func caTemplate(pub crypto.PublicKey, subject pkix.Name, pathLen int, opts *CAOptions) (*x509.Certificate, error) {
	if len(subject.ToRDNSequence()) == 0 {
		return nil, fmt.Errorf("%w: empty CA subject (RFC 5280, §4.1.2.6)", ErrInvalidCA)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCA, err)
	}
	skid, err := subjectKeyID(spki)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCA, err)
	}
	serial, err := NewSerial(opts.rand())
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		PublicKey:             pub,
		NotBefore:             opts.now().UTC().Truncate(time.Second),
		NotAfter:              opts.notAfter(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
		SubjectKeyId:          skid,
	}, nil
}

func signCA(ctx context.Context, t, parent *x509.Certificate, signer crypto.Signer, opts *CAOptions) (*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(opts.rand(), t, parent, t.PublicKey, bind(ctx, signer))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigning, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigning, err)
	}
	return c, nil
}

// checkCAKey accepts the key types a CA of this package may have: those
// package hsm makes.
func checkCAKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("%w: CA key %T is not ECDSA P-256/P-384 or Ed25519", ErrInvalidCA, pub)
}

// keysMatch reports whether two public keys are the same key.
func keysMatch(a, b crypto.PublicKey) error {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !k.Equal(b) {
		return fmt.Errorf("the key does not match the certificate")
	}
	return nil
}
