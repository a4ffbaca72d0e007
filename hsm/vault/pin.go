package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rootline/rootline/hsm"
)

// maxPINLen bounds a PIN read from Vault, as package hsm bounds one read
// from a file.
const maxPINLen = 256

// KVPINSource reads a PKCS#11 user PIN from a field of a secret in
// Vault's KV engine, version 1 or 2, through a [KMS]'s login. The PIN is
// read at each call, so a rotated PIN is picked up, and never logged or
// quoted in an error.
type KVPINSource struct {
	k *KMS
	// Path is the API path of the secret: for KV version 2 with its
	// "data/" segment ("secret/data/factory"), for version 1 as mounted
	// ("kv/factory").
	Path string
	// Field is the name of the field that holds the PIN.
	Field string
}

var _ hsm.PINSource = (*KVPINSource)(nil)

// KVPIN returns a PIN source for the field of a KV secret.
func (k *KMS) KVPIN(path, field string) (*KVPINSource, error) {
	if err := validatePath("KV path", path); err != nil {
		return nil, err
	}
	if err := validateField(field); err != nil {
		return nil, err
	}
	return &KVPINSource{k: k, Path: path, Field: field}, nil
}

// ParseKVRef splits a KV reference, "PATH#FIELD" ("secret/data/factory#pin"),
// and checks both parts. In a PKCS#11 URI the "#" is written %23:
// pin-source=vault:secret/data/factory%23pin.
func ParseKVRef(ref string) (path, field string, err error) {
	path, field, ok := strings.Cut(ref, "#")
	if !ok {
		return "", "", fmt.Errorf("vault: KV reference %q is not PATH#FIELD", clip(ref))
	}
	if err := validatePath("KV path", path); err != nil {
		return "", "", err
	}
	if err := validateField(field); err != nil {
		return "", "", err
	}
	return path, field, nil
}

// validateField takes 1 to maxNameLen bytes of printable ASCII, no "#".
func validateField(f string) error {
	if f == "" || len(f) > maxNameLen {
		return fmt.Errorf("vault: KV field must be 1 to %d bytes", maxNameLen)
	}
	for i := 0; i < len(f); i++ {
		if f[i] <= ' ' || f[i] >= 0x7f || f[i] == '#' {
			return fmt.Errorf("vault: KV field %q: printable ASCII only, no space or #", clip(f))
		}
	}
	return nil
}

// PINSourceFunc makes "vault:PATH#FIELD" PIN sources for package hsm:
//
//	opts := &hsm.Options{PINSources: map[string]hsm.PINSourceFunc{"vault": k.PINSourceFunc()}}
//	m, err := hsm.Open(ctx, "pkcs11:token=factory?pin-source=vault:secret/data/factory%23pin", opts)
func (k *KMS) PINSourceFunc() hsm.PINSourceFunc {
	return func(ref string) (hsm.PINSource, error) {
		path, field, err := ParseKVRef(ref)
		if err != nil {
			return nil, err
		}
		return &KVPINSource{k: k, Path: path, Field: field}, nil
	}
}

// PIN implements [hsm.PINSource]: it reads the secret and returns a copy of
// the field, which the caller wipes. A failure wraps [hsm.ErrPINSource] and
// this package's error (ErrSealed, ErrPermission, ErrKeyNotFound for a
// missing secret or field...).
func (p *KVPINSource) PIN(ctx context.Context) ([]byte, error) {
	pin, err := p.pin(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: vault:%s#%s: %w", hsm.ErrPINSource, p.Path, p.Field, err)
	}
	return pin, nil
}

func (p *KVPINSource) pin(ctx context.Context) ([]byte, error) {
	if p.k == nil {
		return nil, errors.New("vault: KVPINSource made without a KMS")
	}
	s, err := p.k.read(ctx, "read PIN", p.Path)
	if err != nil {
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, &Error{Op: "read PIN", Path: p.Path, StatusCode: 404, Kind: ErrKeyNotFound}
	}
	data := s.Data
	// KV version 2 nests the secret's fields under "data", beside
	// "metadata" (Vault's KV v2 API, "Read Secret Version"); a deleted or
	// destroyed version has data null.
	if _, v2 := data["metadata"]; v2 {
		if _, ok := data["data"]; ok {
			inner, ok := data["data"].(map[string]any)
			if !ok {
				return nil, &Error{Op: "read PIN", Path: p.Path, Kind: ErrKeyNotFound,
					Err: errors.New("the secret's current version is deleted")}
			}
			data = inner
		}
	}
	v, ok := data[p.Field]
	if !ok {
		return nil, &Error{Op: "read PIN", Path: p.Path, Kind: ErrKeyNotFound,
			Err: fmt.Errorf("the secret has no field %q", p.Field)}
	}
	text, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("vault: field %q of %s is a %T, not a string", p.Field, p.Path, v)
	}
	pin := []byte(text)
	switch {
	case len(pin) == 0:
		return nil, fmt.Errorf("vault: field %q of %s is empty", p.Field, p.Path)
	case len(pin) > maxPINLen:
		clear(pin)
		return nil, fmt.Errorf("vault: field %q of %s is longer than %d bytes", p.Field, p.Path, maxPINLen)
	case bytes.ContainsAny(pin, "\r\n\x00"):
		clear(pin)
		return nil, fmt.Errorf("vault: field %q of %s holds a line break or NUL", p.Field, p.Path)
	}
	p.k.log.Debug("vault: read a PIN", "path", p.Path, "field", p.Field)
	return pin, nil
}
