// Package hsminject adapts a factory HSM (an *hsm.Module) to the
// provisioning service's provision.Injector, for products whose identity is
// injected (DESIGN.md, "Injected identity"). It only translates: the
// procedure, the key attributes and the wire format are package hsm's and
// pluton/soft's.
//
// A device key is named on the token by its label (CKA_LABEL), which the
// service chooses from the chip's UEID and records before the key exists;
// the adapter names it as pkcs11:object=LABEL;type=private on the
// module's token. Errors are the hsm package's, wrapped, so that
// errors.Is(err, hsm.ErrMechanismUnsupported) and errors.As(err,
// **hsm.MissingMechanismError) work through the service.
package hsminject

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
	"github.com/rootline/rootline/provision"
)

// Module is the part of *hsm.Module an Injector uses.
type Module interface {
	InjectKey(ctx context.Context, req *hsm.InjectKeyRequest) (*hsm.Wrapped, error)
	WrapKey(ctx context.Context, req *hsm.WrapKeyRequest) (*hsm.Wrapped, error)
	DeriveSecret(ctx context.Context, req *hsm.DeriveSecretRequest) (*hsm.Wrapped, error)
	DestroyKey(ctx context.Context, uri string) error
}

var _ Module = (*hsm.Module)(nil)

// Injector implements provision.Injector on an HSM.
type Injector struct {
	m Module
	// wrapWithTrusted: see hsm.InjectKeyRequest.WrapWithTrusted.
	wrapWithTrusted bool
}

var _ provision.Injector = (*Injector)(nil)

// Options configure New. The zero value works on SoftHSM2.
type Options struct {
	// WrapWithTrusted sets CKA_WRAP_WITH_TRUSTED on the device keys (see
	// hsm.InjectKeyRequest): only for tokens that can mark a derived key
	// trusted, which SoftHSM2 cannot.
	WrapWithTrusted bool
}

// New returns an Injector on m (normally an *hsm.Module, which the caller
// closes).
func New(m Module, opts *Options) *Injector {
	in := &Injector{m: m}
	if opts != nil {
		in.wrapWithTrusted = opts.WrapWithTrusted
	}
	return in
}

// KeyURI is the URI the Injector gives the HSM for the device key label.
func KeyURI(label string) string {
	return (&hsm.URI{Object: label, Type: "private"}).String()
}

func keyAlgorithm(a pluton.Algorithm) (hsm.Algorithm, error) {
	switch a {
	case pluton.ECDSAP256:
		return hsm.P256, nil
	case pluton.ECDSAP384:
		return hsm.P384, nil
	}
	return hsm.AlgorithmUnknown, fmt.Errorf("hsminject: device key algorithm %v (want ECDSA P-256 or P-384)", a)
}

func transport(c *provision.ChipTransport) (hsm.ChipTransport, error) {
	t := hsm.ChipTransport{Public: c.Public, UEID: c.UEID}
	switch c.Algorithm {
	case soft.TransportP256:
		t.Algorithm = hsm.P256
	case soft.TransportP384:
		t.Algorithm = hsm.P384
	default:
		return t, fmt.Errorf("hsminject: transport algorithm %v", c.Algorithm)
	}
	return t, nil
}

// blob turns the HSM's answer into the chip's wire blob content.
func blob(w *hsm.Wrapped) (*soft.WrappedBlob, error) {
	b := &soft.WrappedBlob{
		Kind: soft.BlobKind(w.Kind), KDF: soft.KDF(w.KDF), UEID: w.UEID, Name: w.Name,
		Ephemeral: w.Ephemeral, Wrapped: w.Wrapped,
	}
	switch w.Transport {
	case hsm.P256:
		b.Transport = soft.TransportP256
	case hsm.P384:
		b.Transport = soft.TransportP384
	default:
		return nil, fmt.Errorf("hsminject: HSM answered with transport %v", w.Transport)
	}
	switch w.KeyAlgorithm {
	case hsm.P256:
		b.KeyAlgorithm = pluton.ECDSAP256
	case hsm.P384:
		b.KeyAlgorithm = pluton.ECDSAP384
	case hsm.AlgorithmUnknown:
	default:
		return nil, fmt.Errorf("hsminject: HSM answered with key algorithm %v", w.KeyAlgorithm)
	}
	return b, nil
}

func wrappedKey(w *hsm.Wrapped) (*provision.WrappedKey, error) {
	b, err := blob(w)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(w.Public)
	if err != nil {
		return nil, fmt.Errorf("hsminject: device public key: %w", err)
	}
	return &provision.WrappedKey{Blob: b, PublicKey: spki}, nil
}

// InjectKey implements provision.Injector with hsm.Module.InjectKey.
func (in *Injector) InjectKey(ctx context.Context, req *provision.InjectKeyRequest) (*provision.WrappedKey, error) {
	alg, err := keyAlgorithm(req.Algorithm)
	if err != nil {
		return nil, err
	}
	t, err := transport(&req.Chip)
	if err != nil {
		return nil, err
	}
	w, err := in.m.InjectKey(ctx, &hsm.InjectKeyRequest{Label: req.Label, Name: req.Name, Algorithm: alg, Chip: t,
		WrapWithTrusted: in.wrapWithTrusted})
	if err != nil {
		return nil, err
	}
	wk, err := wrappedKey(w)
	if err != nil {
		// Not handed to the service, so never recorded: destroy it now
		// rather than on the retry.
		return nil, errors.Join(err, in.DestroyKey(context.WithoutCancel(ctx), req.Label))
	}
	return wk, nil
}

// WrapKey implements provision.Injector with hsm.Module.WrapKey.
func (in *Injector) WrapKey(ctx context.Context, req *provision.InjectKeyRequest) (*provision.WrappedKey, error) {
	t, err := transport(&req.Chip)
	if err != nil {
		return nil, err
	}
	w, err := in.m.WrapKey(ctx, &hsm.WrapKeyRequest{Key: KeyURI(req.Label), Name: req.Name, Chip: t})
	if err != nil {
		return nil, err
	}
	return wrappedKey(w)
}

// DeriveSecret implements provision.Injector with hsm.Module.DeriveSecret.
func (in *Injector) DeriveSecret(ctx context.Context, req *provision.DeriveSecretRequest) (*soft.WrappedBlob, error) {
	t, err := transport(&req.Chip)
	if err != nil {
		return nil, err
	}
	w, err := in.m.DeriveSecret(ctx, &hsm.DeriveSecretRequest{Master: req.Master, Name: req.Name, Chip: t})
	if err != nil {
		return nil, err
	}
	return blob(w)
}

// DestroyKey implements provision.Injector with hsm.Module.DestroyKey; a
// missing key (hsm.ErrKeyNotFound) is not an error.
func (in *Injector) DestroyKey(ctx context.Context, label string) error {
	err := in.m.DestroyKey(ctx, KeyURI(label))
	if errors.Is(err, hsm.ErrKeyNotFound) {
		return nil
	}
	return err
}
