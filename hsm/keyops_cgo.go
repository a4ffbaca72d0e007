//go:build cgo && !nopkcs11

package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// maxObjects bounds how many objects one search reads.
const maxObjects = 100000

// idLen is the length of the CKA_ID of a new key: 128 bits from a CSPRNG,
// so that ids never collide and a URI with id= names one key forever.
const idLen = 16

// findObjects returns up to limit objects matching tmpl.
func (m *Module) findObjects(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, limit int) ([]pkcs11.ObjectHandle, error) {
	if err := m.p.FindObjectsInit(sh, tmpl); err != nil {
		return nil, m.wrap("C_FindObjectsInit", err)
	}
	var out []pkcs11.ObjectHandle
	for len(out) < limit {
		hs, _, err := m.p.FindObjects(sh, min(64, limit-len(out)))
		if err != nil {
			m.p.FindObjectsFinal(sh)
			return nil, m.wrap("C_FindObjects", err)
		}
		if len(hs) == 0 {
			break
		}
		out = append(out, hs...)
	}
	if err := m.p.FindObjectsFinal(sh); err != nil {
		return nil, m.wrap("C_FindObjectsFinal", err)
	}
	return out, nil
}

// attrs reads attributes of an object, as a map by type.
func (m *Module) attrs(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = pkcs11.NewAttribute(t, nil)
	}
	got, err := m.p.GetAttributeValue(sh, o, tmpl)
	if err != nil {
		return nil, m.wrap("C_GetAttributeValue", err)
	}
	out := make(map[uint][]byte, len(got))
	for _, a := range got {
		out[a.Type] = a.Value
	}
	return out, nil
}

func attrBool(v []byte) bool { return len(v) == 1 && v[0] != 0 }

// attrUlong decodes a CK_ULONG attribute, in the host's byte order.
func attrUlong(v []byte) (uint, bool) {
	switch len(v) {
	case 8:
		return uint(binary.NativeEndian.Uint64(v)), true
	case 4:
		return uint(binary.NativeEndian.Uint32(v)), true
	}
	return 0, false
}

// keyTemplate is the search template for objects of class a key URI names.
func keyTemplate(class uint, u *URI) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if u.Object != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object))
	}
	if len(u.ID) > 0 {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, u.ID))
	}
	return t
}

// parseKeyURI parses a URI that must name one private key of this token.
func (m *Module) parseKeyURI(uri string) (*URI, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if !u.namesKey() {
		return nil, fmt.Errorf("%w: %s names no key (give object= or id=)", ErrBadURI, u)
	}
	if u.Type != "" && u.Type != "private" {
		return nil, fmt.Errorf("%w: type=%s: a signing key is type=private", ErrBadURI, u.Type)
	}
	if !m.selects(u) {
		return nil, fmt.Errorf("%w: %s selects another token than the open one (%q, serial %s)", ErrTokenNotFound, tokenSelector(u), m.token.Label, m.token.SerialNumber)
	}
	return u, nil
}

// findKey finds the one private key u names.
func (m *Module) findKey(sh pkcs11.SessionHandle, u *URI) (pkcs11.ObjectHandle, error) {
	hs, err := m.findObjects(sh, keyTemplate(pkcs11.CKO_PRIVATE_KEY, u), 2)
	if err != nil {
		return 0, err
	}
	sel := (&URI{Object: u.Object, ID: u.ID, Type: "private"}).String()
	switch len(hs) {
	case 0:
		return 0, fmt.Errorf("%w: no private key on token %q matches %s", ErrKeyNotFound, m.token.Label, sel)
	case 1:
		return hs[0], nil
	}
	return 0, fmt.Errorf("%w: several private keys on token %q match %s; name one by id=", ErrAmbiguousKey, m.token.Label, sel)
}

// keyInfo reads what the package needs of a private key: its label, id,
// algorithm, the public key of its public-key object, and its protection.
func (m *Module) keyInfo(sh pkcs11.SessionHandle, priv pkcs11.ObjectHandle) (*KeyInfo, error) {
	a, err := m.attrs(sh, priv, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_KEY_TYPE,
		pkcs11.CKA_SENSITIVE, pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_NEVER_EXTRACTABLE)
	if err != nil {
		return nil, err
	}
	ki := &KeyInfo{
		Label:            string(a[pkcs11.CKA_LABEL]),
		ID:               a[pkcs11.CKA_ID],
		Sensitive:        attrBool(a[pkcs11.CKA_SENSITIVE]),
		AlwaysSensitive:  attrBool(a[pkcs11.CKA_ALWAYS_SENSITIVE]),
		Extractable:      attrBool(a[pkcs11.CKA_EXTRACTABLE]),
		NeverExtractable: attrBool(a[pkcs11.CKA_NEVER_EXTRACTABLE]),
	}
	ki.URI = m.keyURI(ki.Label, ki.ID)
	kt, _ := attrUlong(a[pkcs11.CKA_KEY_TYPE])
	if kt != ckkEC && kt != ckkECEdwards {
		return ki, nil
	}
	p, err := m.attrs(sh, priv, pkcs11.CKA_EC_PARAMS)
	if err != nil {
		return nil, err
	}
	ki.Algorithm = algorithmOf(kt, p[pkcs11.CKA_EC_PARAMS])
	if ki.Algorithm == AlgorithmUnknown {
		return ki, nil
	}
	// The public key is in the public-key object of the same CKA_ID (or,
	// for a key without one, the same label).
	pu := &URI{ID: ki.ID}
	if len(ki.ID) == 0 {
		pu.Object = ki.Label
	}
	pubs, err := m.findObjects(sh, append(keyTemplate(pkcs11.CKO_PUBLIC_KEY, pu), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, kt)), 2)
	if err != nil {
		return nil, err
	}
	if len(pubs) != 1 {
		return ki, nil
	}
	pa, err := m.attrs(sh, pubs[0], pkcs11.CKA_EC_POINT, pkcs11.CKA_EC_PARAMS)
	if err != nil {
		return nil, err
	}
	if algorithmOf(kt, pa[pkcs11.CKA_EC_PARAMS]) != ki.Algorithm {
		return ki, nil
	}
	if ki.Public, err = parsePublicKey(ki.Algorithm, pa[pkcs11.CKA_EC_POINT]); err != nil {
		return nil, err
	}
	return ki, nil
}

// Signer returns a crypto.Signer for the private key a URI names (by
// object, id or both; type, if given, must be private). Exactly one private
// key must match: none is [ErrKeyNotFound], several [ErrAmbiguousKey]. The
// URI's token attributes, if any, must select this Module's token; its
// query attributes are ignored.
//
// The signer also has SignContext (see [ContextSigner]); Sign waits for a
// free session without a deadline. ECDSA signatures are ASN.1 DER over the
// digest the caller passes; Ed25519 signs the whole message (opts.HashFunc()
// must be 0).
func (m *Module) Signer(ctx context.Context, uri string) (crypto.Signer, error) {
	u, err := m.parseKeyURI(uri)
	if err != nil {
		return nil, err
	}
	var s *signer
	err = m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		h, err := m.findKey(sh, u)
		if err != nil {
			return err
		}
		ki, err := m.keyInfo(sh, h)
		if err != nil {
			return err
		}
		s, err = m.newSigner(ki, h)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ContextSigner is a crypto.Signer whose signing can be bounded by a
// context: the wait for a free session, and the PIN source when the token
// must be logged in again. Signers from [Module.Signer] implement it.
type ContextSigner interface {
	crypto.Signer
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

var _ ContextSigner = (*signer)(nil)

type signer struct {
	m     *Module
	alg   Algorithm
	pub   crypto.PublicKey
	label string
	id    []byte
	mech  []*pkcs11.Mechanism
	// The cached private key handle and the login epoch it was found in.
	// Handles of private objects do not survive a logout on every token
	// (SoftHSM2 drops them), so a new login means a new lookup.
	cached atomic.Pointer[keyHandle]
}

type keyHandle struct {
	handle pkcs11.ObjectHandle
	epoch  uint64
}

func (m *Module) newSigner(ki *KeyInfo, h pkcs11.ObjectHandle) (*signer, error) {
	if ki.Algorithm == AlgorithmUnknown {
		return nil, fmt.Errorf("%w: key %q is not ECDSA P-256/P-384 or Ed25519", ErrMechanismUnsupported, ki.Label)
	}
	if ki.Public == nil {
		return nil, fmt.Errorf("%w: key %q has no public-key object with its CKA_ID", ErrKeyNotFound, ki.Label)
	}
	_, mech := ki.Algorithm.mechanisms()
	if !m.mechs[mech] {
		return nil, fmt.Errorf("%w: token %q lacks mechanism 0x%x for %v", ErrMechanismUnsupported, m.token.Label, mech, ki.Algorithm)
	}
	s := &signer{m: m, alg: ki.Algorithm, pub: ki.Public, label: ki.Label, id: ki.ID,
		mech: []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}}
	s.cached.Store(&keyHandle{h, m.epoch.Load()})
	return s, nil
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign implements crypto.Signer; see [Module.Signer]. rand is not used: the
// token draws the ECDSA nonce itself.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext signs on a pooled session: C_SignInit and C_Sign, with the
// recoveries of [Module.do].
func (s *signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := s.checkOpts(digest, opts); err != nil {
		return nil, err
	}
	var sig []byte
	err := s.m.do(ctx, s.refresh, func(sh pkcs11.SessionHandle) error {
		h, err := s.handle(ctx, sh)
		if err != nil {
			return err
		}
		if err := s.m.p.SignInit(sh, s.mech, h); err != nil {
			return s.m.wrap("C_SignInit", err)
		}
		raw, err := s.m.p.Sign(sh, digest)
		if err != nil {
			return s.m.wrap("C_Sign", err)
		}
		if s.alg == Ed25519 {
			if len(raw) != ed25519.SignatureSize {
				return fmt.Errorf("hsm: token returned an Ed25519 signature of %d bytes", len(raw))
			}
			sig = raw
			return nil
		}
		sig, err = ecdsaRawToDER(raw, s.alg.coordSize())
		return err
	})
	if err != nil {
		return nil, err
	}
	return sig, nil
}

// checkOpts holds the caller to the crypto.Signer contract of each
// algorithm: ECDSA signs a digest of opts.HashFunc(); Ed25519 signs the
// message itself (no pre-hash, no context: Ed25519ph and Ed25519ctx need
// CK_EDDSA_PARAMS, which this package does not send).
func (s *signer) checkOpts(digest []byte, opts crypto.SignerOpts) error {
	if opts == nil {
		return errors.New("hsm: nil SignerOpts")
	}
	if s.alg == Ed25519 {
		if opts.HashFunc() != crypto.Hash(0) {
			return fmt.Errorf("%w: Ed25519ph (pre-hashed Ed25519)", ErrMechanismUnsupported)
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return fmt.Errorf("%w: Ed25519ctx (Ed25519 with a context)", ErrMechanismUnsupported)
		}
		return nil
	}
	h := opts.HashFunc()
	if !slices.Contains(ecdsaHashes, h) {
		return fmt.Errorf("hsm: ECDSA signs a SHA-2 or SHA-3 digest of at least 224 bits; opts.HashFunc() is %v", h)
	}
	if len(digest) != h.Size() {
		return fmt.Errorf("hsm: digest of %d bytes for %v, want %d", len(digest), h, h.Size())
	}
	return nil
}

// ecdsaHashes are the digests an ECDSA signer takes.
var ecdsaHashes = []crypto.Hash{crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512,
	crypto.SHA512_224, crypto.SHA512_256, crypto.SHA3_224, crypto.SHA3_256, crypto.SHA3_384, crypto.SHA3_512}

// handle returns the private key's handle, looking it up again if the token
// was logged in since it was found.
func (s *signer) handle(ctx context.Context, sh pkcs11.SessionHandle) (pkcs11.ObjectHandle, error) {
	if k := s.cached.Load(); k.epoch == s.m.epoch.Load() {
		return k.handle, nil
	}
	if err := s.refresh(ctx, sh); err != nil {
		return 0, err
	}
	return s.cached.Load().handle, nil
}

// refresh finds the key again by what identifies it (CKA_ID, or the label
// of a key without one) and checks it is still the same key.
func (s *signer) refresh(_ context.Context, sh pkcs11.SessionHandle) error {
	ep := s.m.epoch.Load()
	u := &URI{ID: s.id}
	if len(s.id) == 0 {
		u.Object = s.label
	}
	h, err := s.m.findKey(sh, u)
	if err != nil {
		return err
	}
	a, err := s.m.attrs(sh, h, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_EC_PARAMS)
	if err != nil {
		return err
	}
	kt, _ := attrUlong(a[pkcs11.CKA_KEY_TYPE])
	if algorithmOf(kt, a[pkcs11.CKA_EC_PARAMS]) != s.alg {
		return fmt.Errorf("%w: key %q changed type on the token", ErrKeyNotFound, s.label)
	}
	s.cached.Store(&keyHandle{h, ep})
	return nil
}

// CreateKey generates a key pair inside the token and returns its public
// key and the URI of its private key. The private key is created with
// CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE true and CKA_EXTRACTABLE false,
// so the token never lets it out, and both objects carry the label and a
// CKA_ID of 128 bits from Options.Rand. After generation the private key's
// attributes are read back (a token that did not honour the template gets
// its key destroyed: [ErrKeyAttributes]), and the pair must pass a
// pairwise-consistency test, a signature verified with the public key
// (as FIPS 140-3 asks after every key generation; else [ErrSelfTest]).
//
// A label that any object of the token has already is refused with
// [ErrKeyExists]; an algorithm whose mechanisms the token lacks with
// [ErrMechanismUnsupported]. Two processes creating the same label at once
// can both succeed; a Module serialises its own calls.
func (m *Module) CreateKey(ctx context.Context, req *CreateKeyRequest) (crypto.PublicKey, *URI, error) {
	if err := req.validate(); err != nil {
		return nil, nil, err
	}
	gen, sign := req.Algorithm.mechanisms()
	if !m.mechs[gen] || !m.mechs[sign] {
		return nil, nil, fmt.Errorf("%w: token %q does not offer %v (mechanisms 0x%x and 0x%x)", ErrMechanismUnsupported, m.token.Label, req.Algorithm, gen, sign)
	}
	ctx, unlock := m.lockObjects(ctx)
	defer unlock()

	id := make([]byte, idLen)
	if _, err := io.ReadFull(m.opts.Rand, id); err != nil {
		return nil, nil, fmt.Errorf("hsm: drawing a key id: %w", err)
	}
	label := req.Label
	pubTmpl, privTmpl := keyPairTemplates(req.Algorithm.keyType(), req.Algorithm.ecParams(), label, id, signingKey)
	err := m.generateKeyPair(ctx, gen, label, pubTmpl, privTmpl)
	if err != nil {
		return nil, nil, err
	}

	// Read the pair back (by CKA_ID: handles may not survive a re-login)
	// and test it. On any failure both objects are destroyed.
	var s *signer
	err = m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		h, err := m.findKey(sh, &URI{ID: id})
		if err != nil {
			return err
		}
		ki, err := m.keyInfo(sh, h)
		if err != nil {
			return err
		}
		if m.testTamperKeyInfo != nil {
			m.testTamperKeyInfo(ki)
		}
		if !ki.Sensitive || !ki.AlwaysSensitive || ki.Extractable || !ki.NeverExtractable {
			return fmt.Errorf("%w: key %q has sensitive=%v always-sensitive=%v extractable=%v never-extractable=%v", ErrKeyAttributes,
				label, ki.Sensitive, ki.AlwaysSensitive, ki.Extractable, ki.NeverExtractable)
		}
		if ki.Label != label || ki.Algorithm != req.Algorithm {
			return fmt.Errorf("%w: key %q read back with another label or algorithm", ErrKeyAttributes, label)
		}
		s, err = m.newSigner(ki, h)
		return err
	})
	if err == nil {
		err = pairwiseTest(ctx, s)
	}
	if err != nil {
		derr := m.do(context.WithoutCancel(ctx), nil, func(sh pkcs11.SessionHandle) error { return m.destroyID(sh, id) })
		m.log.Error("hsm: new key failed its checks and was destroyed", "token", m.token.Label, "label", label, "error", err, "destroy_error", derr)
		return nil, nil, errors.Join(err, derr)
	}
	m.log.Info("hsm: key created", "token", m.token.Label, "label", label, "id", hex.EncodeToString(id), "algorithm", req.Algorithm.String())
	return s.pub, m.keyURI(label, id), nil
}

// pairwiseTest signs a fixed message with a new key and verifies the
// signature with its public key.
func pairwiseTest(ctx context.Context, s *signer) error {
	msg := []byte("rootline hsm pairwise-consistency test")
	var (
		sig []byte
		err error
		ok  bool
	)
	switch pub := s.pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		if sig, err = s.SignContext(ctx, d[:], crypto.SHA256); err == nil {
			ok = ecdsa.VerifyASN1(pub, d[:], sig)
		}
	case ed25519.PublicKey:
		if sig, err = s.SignContext(ctx, msg, crypto.Hash(0)); err == nil {
			ok = ed25519.Verify(pub, msg, sig)
		}
	}
	if err != nil {
		return err
	}
	if hook := s.m.testBreakPCT; hook != nil && hook() {
		ok = false
	}
	if !ok {
		return fmt.Errorf("%w: key %q", ErrSelfTest, s.label)
	}
	return nil
}

// List returns the private keys of the token, by label then id, with what
// the token reports of them. Keys of algorithms this package does not sign
// with are listed with AlgorithmUnknown.
func (m *Module) List(ctx context.Context) ([]KeyInfo, error) {
	var keys []KeyInfo
	err := m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		keys = keys[:0]
		hs, err := m.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}, maxObjects)
		if err != nil {
			return err
		}
		for _, h := range hs {
			ki, err := m.keyInfo(sh, h)
			if err != nil {
				return err
			}
			keys = append(keys, *ki)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(keys, func(a, b KeyInfo) int {
		if c := strings.Compare(a.Label, b.Label); c != 0 {
			return c
		}
		return bytes.Compare(a.ID, b.ID)
	})
	return keys, nil
}

// DestroyKey destroys the one private key a URI names, and the public-key
// objects of the same CKA_ID (or label, for a key without one). The same
// matching rules as [Module.Signer] apply.
func (m *Module) DestroyKey(ctx context.Context, uri string) error {
	u, err := m.parseKeyURI(uri)
	if err != nil {
		return err
	}
	ctx, unlock := m.lockObjects(ctx)
	defer unlock()
	return m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		h, err := m.findKey(sh, u)
		if err != nil {
			return err
		}
		a, err := m.attrs(sh, h, pkcs11.CKA_LABEL, pkcs11.CKA_ID)
		if err != nil {
			return err
		}
		label, id := string(a[pkcs11.CKA_LABEL]), a[pkcs11.CKA_ID]
		pu := &URI{ID: id}
		if len(id) == 0 {
			pu.Object = label
		}
		pubs, err := m.findObjects(sh, keyTemplate(pkcs11.CKO_PUBLIC_KEY, pu), 16)
		if err != nil {
			return err
		}
		if err := m.p.DestroyObject(sh, h); err != nil {
			return m.wrap("C_DestroyObject", err)
		}
		for _, p := range pubs {
			if err := m.p.DestroyObject(sh, p); err != nil {
				return m.wrap("C_DestroyObject", err)
			}
		}
		m.log.Info("hsm: key destroyed", "token", m.token.Label, "label", label, "id", hex.EncodeToString(id))
		return nil
	})
}

// keyUse is what a generated private key is for.
type keyUse int

const (
	// signingKey signs inside the token and never leaves it
	// (CKA_SIGN, not CKA_EXTRACTABLE): CreateKey's keys.
	signingKey keyUse = iota
	// injectedKey signs nothing in the token and leaves it only wrapped
	// (CKA_EXTRACTABLE and CKA_SENSITIVE): InjectKey's device keys.
	injectedKey
)

// keyPairTemplates are the attributes of a token key pair labelled label
// with CKA_ID id. Both halves are token objects; the private half is
// private and sensitive, and neither derives, wraps, encrypts or
// decrypts. use decides whether the private key signs (and is never
// extractable) or is extractable for wrapping (and signs nothing).
func keyPairTemplates(keyType uint, ecParams []byte, label string, id []byte, use keyUse) (pub, priv []*pkcs11.Attribute) {
	common := func(class uint) []*pkcs11.Attribute {
		return []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
	}
	signs := use == signingKey
	pub = append(common(pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, signs),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ecParams),
	)
	priv = append(common(pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, !signs),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, signs),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	)
	return pub, priv
}

// generateKeyPair generates a token key pair with mechanism mech, refusing
// a label the token already has (ErrKeyExists). The caller holds the
// objects' lock: ctx comes from lockObjects.
func (m *Module) generateKeyPair(ctx context.Context, mech uint, label string, pub, priv []*pkcs11.Attribute) error {
	return m.do(ctx, nil, func(sh pkcs11.SessionHandle) error {
		// Private objects are searched too: the session is logged in.
		hs, err := m.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 1)
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			return fmt.Errorf("%w: token %q already has an object labelled %q", ErrKeyExists, m.token.Label, label)
		}
		_, _, err = m.p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pub, priv)
		return m.wrap("C_GenerateKeyPair", err)
	})
}
