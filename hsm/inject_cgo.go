//go:build cgo && !nopkcs11

package hsm

/*
#include <stdlib.h>

// CK_KEY_DERIVATION_STRING_DATA (PKCS#11 v3.0, 2.15.2 / 6.6.3), which
// github.com/miekg/pkcs11 v1.1.2 does not define. CK_ULONG is unsigned long.
typedef struct {
	unsigned char *pData;
	unsigned long ulLen;
} rl_key_derivation_string_data;
*/
import "C"

import (
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// CKR codes of wrapping that this file names.
const (
	ckrKeyNotWrappable  = 0x069
	ckrKeyUnextractable = 0x06A
)

var mechanismNames = map[uint]string{
	pkcs11.CKM_EC_KEY_PAIR_GEN:      "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDH1_DERIVE:         "CKM_ECDH1_DERIVE",
	pkcs11.CKM_AES_ECB_ENCRYPT_DATA: "CKM_AES_ECB_ENCRYPT_DATA",
	pkcs11.CKM_AES_KEY_WRAP_PAD:     "CKM_AES_KEY_WRAP_PAD",
	pkcs11.CKM_AES_KEY_GEN:          "CKM_AES_KEY_GEN",
}

type mechNeed struct {
	mech, flag uint
	flagName   string
}

var (
	needECDHWrap = []mechNeed{
		{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR, "CKF_GENERATE_KEY_PAIR"},
		{pkcs11.CKM_ECDH1_DERIVE, pkcs11.CKF_DERIVE, "CKF_DERIVE"},
		{pkcs11.CKM_AES_ECB_ENCRYPT_DATA, pkcs11.CKF_DERIVE, "CKF_DERIVE"},
		{pkcs11.CKM_AES_KEY_WRAP_PAD, pkcs11.CKF_WRAP, "CKF_WRAP"},
	}
	needMaster = []mechNeed{{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKF_GENERATE, "CKF_GENERATE"}}
)

// requireMechanisms checks, before anything is created, that the token
// offers every mechanism of needs (C_GetMechanismList, cached at Open) with
// the flag the operation uses (C_GetMechanismInfo).
func (m *Module) requireMechanisms(op string, needs []mechNeed) error {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return ErrClosed
	}
	for _, n := range needs {
		missing := func(reason string) error {
			return &MissingMechanismError{Op: op, Mechanism: n.mech, Name: mechanismNames[n.mech], Token: m.token.Label, Reason: reason}
		}
		if !m.mechs[n.mech] {
			return missing("is not offered (C_GetMechanismList)")
		}
		info, err := m.p.GetMechanismInfo(m.slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(n.mech, nil)})
		if err != nil {
			return m.wrap("C_GetMechanismInfo", err)
		}
		if info.Flags&n.flag == 0 {
			return missing("lacks " + n.flagName + " (C_GetMechanismInfo)")
		}
	}
	return nil
}

// derivationData builds a CK_KEY_DERIVATION_STRING_DATA for data in C
// memory; free releases it after the call.
func derivationData(data []byte) (param []byte, free func()) {
	p := C.CBytes(data)
	var s C.rl_key_derivation_string_data
	s.pData = (*C.uchar)(p)
	s.ulLen = C.ulong(len(data))
	param = C.GoBytes(unsafe.Pointer(&s), C.int(unsafe.Sizeof(s)))
	return param, func() { C.free(p) }
}

// session objects created by one wrap, destroyed when it ends.
type scratch struct {
	m  *Module
	sh pkcs11.SessionHandle
	hs []pkcs11.ObjectHandle
}

func (s *scratch) add(h ...pkcs11.ObjectHandle) { s.hs = append(s.hs, h...) }

func (s *scratch) destroy() error {
	var errs []error
	for _, h := range s.hs {
		if err := s.m.p.DestroyObject(s.sh, h); err != nil {
			errs = append(errs, s.m.wrap("C_DestroyObject", err))
		}
	}
	s.hs = nil
	return errors.Join(errs...)
}

// wrapFor wraps the object target for the chip in w (w.Kind, Name, UEID,
// Transport and KeyAlgorithm set), filling w.KDF, w.Ephemeral and
// w.Wrapped. Steps, all inside the token, on session objects destroyed
// before it returns:
//
//  1. C_GenerateKeyPair (CKM_EC_KEY_PAIR_GEN): an ephemeral key pair on
//     the transport curve, private half sensitive, not extractable.
//  2. C_DeriveKey (CKM_ECDH1_DERIVE, kdf CKD_NULL, the chip's transport
//     public key): Z, kept as a 32-byte CKK_AES key (SoftHSM2 keeps the
//     last 32 bytes of a longer Z).
//  3. C_DeriveKey (CKM_AES_ECB_ENCRYPT_DATA, base Z): the wrapping key,
//     AES-256-ECB_Z(SHA-256(info)), a CKK_AES key with only CKA_WRAP.
//  4. C_WrapKey (CKM_AES_KEY_WRAP_PAD, RFC 5649): the wrapped target.
func (m *Module) wrapFor(sh pkcs11.SessionHandle, target pkcs11.ObjectHandle, w *Wrapped, transportPub []byte) (err error) {
	sc := &scratch{m: m, sh: sh}
	defer func() {
		if derr := sc.destroy(); derr != nil && err == nil {
			err = derr
		}
	}()
	w.KDF = KDFECDHAESECB
	// Step 1.
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkEC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, w.Transport.ecParams()),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkEC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
	}
	ephPub, ephPriv, err := m.p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECKeyPairGen, nil)}, pubT, privT)
	if err != nil {
		return m.wrap("C_GenerateKeyPair", err)
	}
	sc.add(ephPub, ephPriv)
	a, err := m.attrs(sh, ephPub, pkcs11.CKA_EC_POINT)
	if err != nil {
		return err
	}
	pub, err := parsePublicKey(w.Transport, a[pkcs11.CKA_EC_POINT])
	if err != nil {
		return err
	}
	epk, err := ecdhPublic(pub)
	if err != nil {
		return err
	}
	w.Ephemeral = epk
	// Step 2.
	secretT := func(extra ...*pkcs11.Attribute) []*pkcs11.Attribute {
		return append([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		}, extra...)
	}
	ecdhMech := pkcs11.NewMechanism(pkcs11.CKM_ECDH1_DERIVE, pkcs11.NewECDH1DeriveParams(pkcs11.CKD_NULL, nil, transportPub))
	z, err := m.p.DeriveKey(sh, []*pkcs11.Mechanism{ecdhMech}, ephPriv,
		secretT(pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true), pkcs11.NewAttribute(pkcs11.CKA_WRAP, false)))
	if err != nil {
		return m.wrap("C_DeriveKey(CKM_ECDH1_DERIVE)", err)
	}
	sc.add(z)
	// Step 3.
	d := sha256Sum(kdfInfo(w, transportPub))
	param, free := derivationData(d[:])
	defer free()
	kek, err := m.p.DeriveKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB_ENCRYPT_DATA, param)}, z,
		secretT(pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false), pkcs11.NewAttribute(pkcs11.CKA_WRAP, true)))
	if err != nil {
		return m.wrap("C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA)", err)
	}
	sc.add(kek)
	// Step 4.
	wrapped, err := m.p.WrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, kek, target)
	if err != nil {
		if c := ckr(err); c == ckrKeyNotWrappable || c == ckrKeyUnextractable {
			return fmt.Errorf("%w (%w)", ErrWrapWithTrusted, m.wrap("C_WrapKey", err))
		}
		return m.wrap("C_WrapKey", err)
	}
	w.Wrapped = wrapped
	return nil
}

// InjectKey generates a device key pair in the token and wraps its private
// key for one chip. The private key is a token object with CKA_SENSITIVE
// true and CKA_EXTRACTABLE true (it may leave only wrapped: a sensitive
// key's CKA_VALUE cannot be read), CKA_SIGN false (the HSM never uses it),
// and CKA_WRAP_WITH_TRUSTED if asked; the public key is a token object
// too, so that [Module.WrapKey] can wrap the same key again on a retry.
// Destroy both ([Module.DestroyKey] with [Wrapped.URI]) once the chip has
// confirmed the install.
//
// The mechanisms are checked first (a missing one is a
// *[MissingMechanismError], nothing created). On any later failure the
// new key is destroyed.
func (m *Module) InjectKey(ctx context.Context, req *InjectKeyRequest) (*Wrapped, error) {
	if req == nil {
		return nil, errors.New("hsm: nil InjectKeyRequest")
	}
	if err := (&CreateKeyRequest{Label: req.Label, Algorithm: req.Algorithm}).validate(); err != nil {
		return nil, err
	}
	if req.Algorithm != P256 && req.Algorithm != P384 {
		return nil, fmt.Errorf("hsm: inject key: %v is not an ECDSA algorithm", req.Algorithm)
	}
	if err := validName(req.Name); err != nil {
		return nil, err
	}
	if err := req.Chip.validate(); err != nil {
		return nil, err
	}
	if err := m.requireMechanisms("inject key", needECDHWrap); err != nil {
		return nil, err
	}
	id := make([]byte, idLen)
	if _, err := io.ReadFull(m.opts.Rand, id); err != nil {
		return nil, fmt.Errorf("hsm: drawing a key id: %w", err)
	}
	pubT, privT := keyPairTemplates(ckkEC, req.Algorithm.ecParams(), req.Label, id, injectedKey)
	if req.WrapWithTrusted {
		privT = append(privT, pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true))
	}
	// Generation holds the objects' lock (no two objects get the label,
	// and nothing else runs meanwhile); the wrap shares it, so that
	// injections for several chips run at once.
	lctx, unlock := m.lockObjects(ctx)
	err := m.generateKeyPair(lctx, ckmECKeyPairGen, req.Label, pubT, privT)
	unlock()
	if err != nil {
		return nil, err
	}
	w := &Wrapped{Kind: WrappedKeyKind, Transport: req.Chip.Algorithm, UEID: append([]byte(nil), req.Chip.UEID...),
		Name: req.Name, KeyAlgorithm: req.Algorithm}
	err = m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		return m.wrapExisting(sh, &URI{ID: id}, w, req.Chip.Public)
	})
	if err != nil {
		derr := m.destroyByID(context.WithoutCancel(ctx), id)
		m.log.Error("hsm: device key could not be wrapped and was destroyed", "token", m.token.Label, "label", req.Label,
			"error", err, "destroy_error", derr)
		return nil, errors.Join(err, derr)
	}
	m.log.Info("hsm: device key generated and wrapped", "token", m.token.Label, "label", req.Label,
		"id", hex.EncodeToString(id), "algorithm", req.Algorithm.String(), "name", req.Name)
	return w, nil
}

// wrapExisting finds the private key u names, checks it is an extractable,
// sensitive EC key of w.KeyAlgorithm, reads its public key, and wraps it.
func (m *Module) wrapExisting(sh pkcs11.SessionHandle, u *URI, w *Wrapped, transportPub []byte) error {
	h, err := m.findKey(sh, u)
	if err != nil {
		return err
	}
	ki, err := m.keyInfo(sh, h)
	if err != nil {
		return err
	}
	switch {
	case ki.Algorithm != w.KeyAlgorithm && w.KeyAlgorithm != AlgorithmUnknown:
		return fmt.Errorf("%w: key %q is %v, not %v", ErrKeyAttributes, ki.Label, ki.Algorithm, w.KeyAlgorithm)
	case ki.Algorithm != P256 && ki.Algorithm != P384:
		return fmt.Errorf("%w: key %q is not ECDSA P-256 or P-384", ErrMechanismUnsupported, ki.Label)
	case !ki.Sensitive || !ki.Extractable:
		return fmt.Errorf("%w: key %q has sensitive=%v extractable=%v (an injected key is sensitive and extractable only by wrapping)",
			ErrKeyAttributes, ki.Label, ki.Sensitive, ki.Extractable)
	case ki.Public == nil:
		return fmt.Errorf("%w: key %q has no public-key object", ErrKeyNotFound, ki.Label)
	}
	w.KeyAlgorithm, w.Public, w.URI = ki.Algorithm, ki.Public, ki.URI
	return m.wrapFor(sh, h, w, transportPub)
}

// WrapKey wraps an existing device key (made by [Module.InjectKey]) again
// for a chip, with a new ephemeral key: for a station that retries after
// losing the first blob. The key must still be sensitive and extractable.
func (m *Module) WrapKey(ctx context.Context, req *WrapKeyRequest) (*Wrapped, error) {
	if req == nil {
		return nil, errors.New("hsm: nil WrapKeyRequest")
	}
	u, err := m.parseKeyURI(req.Key)
	if err != nil {
		return nil, err
	}
	if err := validName(req.Name); err != nil {
		return nil, err
	}
	if err := req.Chip.validate(); err != nil {
		return nil, err
	}
	if err := m.requireMechanisms("wrap key", needECDHWrap); err != nil {
		return nil, err
	}
	w := &Wrapped{Kind: WrappedKeyKind, Transport: req.Chip.Algorithm, UEID: append([]byte(nil), req.Chip.UEID...), Name: req.Name}
	err = m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		return m.wrapExisting(sh, u, w, req.Chip.Public)
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// CreateSecretMaster generates a product master secret in the token: an
// AES-256 token key (CKM_AES_KEY_GEN), sensitive and never extractable,
// whose only use is CKA_DERIVE (per-device secrets, [Module.DeriveSecret]).
// It returns its URI (type=secret-key).
func (m *Module) CreateSecretMaster(ctx context.Context, label string) (*URI, error) {
	if err := (&CreateKeyRequest{Label: label, Algorithm: P256}).validate(); err != nil {
		return nil, err
	}
	if err := m.requireMechanisms("create secret master", needMaster); err != nil {
		return nil, err
	}
	ctx, unlock := m.lockObjects(ctx)
	defer unlock()
	id := make([]byte, idLen)
	if _, err := io.ReadFull(m.opts.Rand, id); err != nil {
		return nil, fmt.Errorf("hsm: drawing a key id: %w", err)
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
	}
	err := m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		hs, err := m.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 1)
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			return fmt.Errorf("%w: token %q already has an object labelled %q", ErrKeyExists, m.token.Label, label)
		}
		_, err = m.p.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		return m.wrap("C_GenerateKey", err)
	})
	if err != nil {
		return nil, err
	}
	u := m.keyURI(label, id)
	u.Type = "secret-key"
	m.log.Info("hsm: secret master created", "token", m.token.Label, "label", label, "id", hex.EncodeToString(id))
	return u, nil
}

// DeriveSecret derives a device's secret inside the token from the
// product master and the chip's UEID, and wraps it for the chip:
//
//	secret = AES-256-ECB_master(SHA-256("rootline/inject secret v1" || 0x00
//	         || len16(name) || name || len16(UEID) || UEID))      (32 bytes)
//
// with CKM_AES_ECB_ENCRYPT_DATA into a session object (CKK_GENERIC_SECRET,
// sensitive, extractable only to be wrapped), wrapped as in
// [Module.InjectKey] and destroyed. The secret is never outside the token
// in the clear; only its diversifier (name and UEID) needs keeping, and
// the same request gives the same secret again.
func (m *Module) DeriveSecret(ctx context.Context, req *DeriveSecretRequest) (*Wrapped, error) {
	if req == nil {
		return nil, errors.New("hsm: nil DeriveSecretRequest")
	}
	mu, err := ParseURI(req.Master)
	if err != nil {
		return nil, err
	}
	if !mu.namesKey() || (mu.Type != "" && mu.Type != "secret-key") || !m.selects(mu) {
		return nil, fmt.Errorf("%w: %s does not name a secret key of this token", ErrBadURI, mu)
	}
	if err := validName(req.Name); err != nil {
		return nil, err
	}
	if err := req.Chip.validate(); err != nil {
		return nil, err
	}
	if err := m.requireMechanisms("derive secret", needECDHWrap); err != nil {
		return nil, err
	}
	w := &Wrapped{Kind: WrappedSecretKind, Transport: req.Chip.Algorithm, UEID: append([]byte(nil), req.Chip.UEID...), Name: req.Name}
	div := secretDiversifier(req.Name, req.Chip.UEID)
	err = m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		hs, err := m.findObjects(sh, keyTemplate(pkcs11.CKO_SECRET_KEY, mu), 2)
		if err != nil {
			return err
		}
		switch len(hs) {
		case 0:
			return fmt.Errorf("%w: no secret key on token %q matches %s", ErrKeyNotFound, m.token.Label, mu)
		case 1:
		default:
			return fmt.Errorf("%w: several secret keys match %s", ErrAmbiguousKey, mu)
		}
		param, free := derivationData(div[:])
		defer free()
		s, err := m.p.DeriveKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB_ENCRYPT_DATA, param)}, hs[0],
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, secretLen),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
				pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
				pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
			})
		if err != nil {
			return m.wrap("C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA)", err)
		}
		sc := &scratch{m: m, sh: sh, hs: []pkcs11.ObjectHandle{s}}
		err = m.wrapFor(sh, s, w, req.Chip.Public)
		return errors.Join(err, sc.destroy())
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// destroyByID destroys every object with CKA_ID id.
func (m *Module) destroyByID(ctx context.Context, id []byte) error {
	ctx, unlock := m.lockObjects(ctx)
	defer unlock()
	return m.do(ctx, nil, func(sh pkcs11.SessionHandle) error { return m.destroyID(sh, id) })
}

// destroyID destroys, in session sh, every object with CKA_ID id. The
// caller holds the token objects' lock (lockObjects).
func (m *Module) destroyID(sh pkcs11.SessionHandle, id []byte) error {
	hs, err := m.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id)}, 16)
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := m.p.DestroyObject(sh, h); err != nil {
			return m.wrap("C_DestroyObject", err)
		}
	}
	return nil
}

// ecdhPublic encodes an ECDSA public key as its SEC 1 uncompressed point.
func ecdhPublic(pub any) ([]byte, error) {
	type ecdher interface {
		ECDH() (*ecdh.PublicKey, error)
	}
	k, ok := pub.(ecdher)
	if !ok {
		return nil, fmt.Errorf("hsm: ephemeral key of type %T", pub)
	}
	e, err := k.ECDH()
	if err != nil {
		return nil, fmt.Errorf("hsm: ephemeral key: %w", err)
	}
	return e.Bytes(), nil
}
