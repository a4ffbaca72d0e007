//go:build !cgo || nopkcs11

package hsm

import (
	"context"
	"crypto"
	"fmt"
)

// This build has no PKCS#11 support: PKCS#11 modules are C libraries,
// loaded through cgo. Every entry point fails with ErrUnsupported, so that
// a pure-Go build (CGO_ENABLED=0, or -tags nopkcs11) still compiles and
// says why it cannot open a token. URIs and PIN sources work as usual.

// Module is an open token. In this build, Open always fails.
type Module struct{}

func unsupported(op string) error {
	return fmt.Errorf("%w (%s: rebuild with CGO_ENABLED=1 and without the nopkcs11 tag)", ErrUnsupported, op)
}

// Open fails with [ErrUnsupported] in this build.
func Open(ctx context.Context, uri string, opts *Options) (*Module, error) {
	if _, err := ParseURI(uri); err != nil {
		return nil, err
	}
	return nil, unsupported("Open")
}

// InitToken fails with [ErrUnsupported] in this build.
func InitToken(ctx context.Context, req *InitTokenRequest) (*URI, error) {
	return nil, unsupported("InitToken")
}

// ContextSigner is a crypto.Signer whose signing can be bounded by a
// context.
type ContextSigner interface {
	crypto.Signer
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

func (m *Module) Signer(ctx context.Context, uri string) (crypto.Signer, error) {
	return nil, unsupported("Signer")
}

func (m *Module) CreateKey(ctx context.Context, req *CreateKeyRequest) (crypto.PublicKey, *URI, error) {
	return nil, nil, unsupported("CreateKey")
}

func (m *Module) List(ctx context.Context) ([]KeyInfo, error) { return nil, unsupported("List") }

func (m *Module) DestroyKey(ctx context.Context, uri string) error {
	return unsupported("DestroyKey")
}

func (m *Module) TokenURI() *URI { return &URI{} }

func (m *Module) Close() error { return nil }

func (m *Module) InjectKey(ctx context.Context, req *InjectKeyRequest) (*Wrapped, error) {
	return nil, unsupported("InjectKey")
}

func (m *Module) WrapKey(ctx context.Context, req *WrapKeyRequest) (*Wrapped, error) {
	return nil, unsupported("WrapKey")
}

func (m *Module) CreateSecretMaster(ctx context.Context, label string) (*URI, error) {
	return nil, unsupported("CreateSecretMaster")
}

func (m *Module) DeriveSecret(ctx context.Context, req *DeriveSecretRequest) (*Wrapped, error) {
	return nil, unsupported("DeriveSecret")
}
