package hsminject_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/hsminject"
)

// fakeModule records what the adapter asks and answers as an HSM would.
// (The adapter runs against SoftHSM2 in package provision's tests.)
type fakeModule struct {
	pub       *ecdsa.PublicKey
	gotInject *hsm.InjectKeyRequest
	gotWrap   *hsm.WrapKeyRequest
	gotSecret *hsm.DeriveSecretRequest
	destroyed []string
	err       error
}

func (f *fakeModule) wrapped(kind hsm.WrappedKind, t hsm.ChipTransport, name string, alg hsm.Algorithm) *hsm.Wrapped {
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	return &hsm.Wrapped{Kind: kind, Transport: t.Algorithm, KDF: hsm.KDFECDHAESECB, UEID: t.UEID, Name: name,
		KeyAlgorithm: alg, Ephemeral: eph.PublicKey().Bytes(), Wrapped: make([]byte, 48), Public: f.pub}
}

func (f *fakeModule) InjectKey(ctx context.Context, req *hsm.InjectKeyRequest) (*hsm.Wrapped, error) {
	f.gotInject = req
	if f.err != nil {
		return nil, f.err
	}
	return f.wrapped(hsm.WrappedKeyKind, req.Chip, req.Name, req.Algorithm), nil
}

func (f *fakeModule) WrapKey(ctx context.Context, req *hsm.WrapKeyRequest) (*hsm.Wrapped, error) {
	f.gotWrap = req
	if f.err != nil {
		return nil, f.err
	}
	return f.wrapped(hsm.WrappedKeyKind, req.Chip, req.Name, hsm.P256), nil
}

func (f *fakeModule) DeriveSecret(ctx context.Context, req *hsm.DeriveSecretRequest) (*hsm.Wrapped, error) {
	f.gotSecret = req
	if f.err != nil {
		return nil, f.err
	}
	w := f.wrapped(hsm.WrappedSecretKind, req.Chip, req.Name, hsm.AlgorithmUnknown)
	w.Public = nil
	return w, nil
}

func (f *fakeModule) DestroyKey(ctx context.Context, uri string) error {
	f.destroyed = append(f.destroyed, uri)
	return f.err
}

func chip(t *testing.T) provision.ChipTransport {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return provision.ChipTransport{Algorithm: soft.TransportP256, Public: k.PublicKey().Bytes(), UEID: []byte("ueid-0001")}
}

func TestAdapter(t *testing.T) {
	ctx := context.Background()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f := &fakeModule{pub: &k.PublicKey}
	in := hsminject.New(f, &hsminject.Options{WrapWithTrusted: true})
	c := chip(t)
	wk, err := in.InjectKey(ctx, &provision.InjectKeyRequest{Label: "rootline-idevid-ab", Name: "idevid", Algorithm: pluton.ECDSAP256, Chip: c})
	if err != nil {
		t.Fatal(err)
	}
	if f.gotInject.Label != "rootline-idevid-ab" || f.gotInject.Algorithm != hsm.P256 || f.gotInject.Chip.Algorithm != hsm.P256 ||
		!f.gotInject.WrapWithTrusted || !bytes.Equal(f.gotInject.Chip.UEID, c.UEID) {
		t.Fatalf("InjectKey asked %+v", f.gotInject)
	}
	want, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if !bytes.Equal(wk.PublicKey, want) || wk.Blob.Kind != soft.BlobKey || wk.Blob.KeyAlgorithm != pluton.ECDSAP256 ||
		wk.Blob.Transport != soft.TransportP256 || wk.Blob.KDF != soft.KDFECDHAESECB {
		t.Fatalf("wrapped key %+v", wk)
	}
	if _, err := wk.Blob.Marshal(); err != nil {
		t.Fatalf("blob does not marshal: %v", err)
	}
	if _, err := in.WrapKey(ctx, &provision.InjectKeyRequest{Label: "rootline-idevid-ab", Name: "idevid", Chip: c}); err != nil {
		t.Fatal(err)
	}
	if f.gotWrap.Key != hsminject.KeyURI("rootline-idevid-ab") {
		t.Fatalf("WrapKey asked for %s", f.gotWrap.Key)
	}
	u, err := hsm.ParseURI(f.gotWrap.Key)
	if err != nil || u.Object != "rootline-idevid-ab" || u.Type != "private" {
		t.Fatalf("key URI %s: %+v, %v", f.gotWrap.Key, u, err)
	}
	b, err := in.DeriveSecret(ctx, &provision.DeriveSecretRequest{Master: "pkcs11:object=m;type=secret-key", Name: "wifi-psk", Chip: c})
	if err != nil || b.Kind != soft.BlobSecret || b.KeyAlgorithm != 0 || f.gotSecret.Master != "pkcs11:object=m;type=secret-key" {
		t.Fatalf("DeriveSecret: %+v, %v", b, err)
	}

	// A missing key is destroyed already; other errors come through,
	// typed.
	f.err = fmt.Errorf("%w: none", hsm.ErrKeyNotFound)
	if err := in.DestroyKey(ctx, "x"); err != nil {
		t.Fatalf("DestroyKey of a missing key: %v", err)
	}
	f.err = &hsm.MissingMechanismError{Op: "inject key", Name: "CKM_ECDH1_DERIVE", Mechanism: 0x1050}
	_, err = in.InjectKey(ctx, &provision.InjectKeyRequest{Label: "l", Name: "idevid", Algorithm: pluton.ECDSAP384, Chip: c})
	var me *hsm.MissingMechanismError
	if !errors.As(err, &me) || !errors.Is(err, hsm.ErrMechanismUnsupported) || f.gotInject.Algorithm != hsm.P384 {
		t.Fatalf("InjectKey: %v", err)
	}
	if err := in.DestroyKey(ctx, "x"); !errors.Is(err, hsm.ErrMechanismUnsupported) {
		t.Fatalf("DestroyKey: %v", err)
	}
	// What the HSM cannot take is refused before it is asked.
	f.err, f.gotInject = nil, nil
	if _, err := in.InjectKey(ctx, &provision.InjectKeyRequest{Label: "l", Name: "idevid", Algorithm: pluton.Ed25519, Chip: c}); err == nil || f.gotInject != nil {
		t.Fatalf("Ed25519 device key: %v", err)
	}
	bad := c
	bad.Algorithm = 9
	if _, err := in.WrapKey(ctx, &provision.InjectKeyRequest{Label: "l", Name: "idevid", Chip: bad}); err == nil {
		t.Fatal("unknown transport algorithm accepted")
	}
}
