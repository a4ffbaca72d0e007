package boot

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/cose"
)

// Limits of the trust policy.
const (
	// MaxPolicySize bounds an encoded trust policy.
	MaxPolicySize = 128 << 10
	// MaxSignersPerLayer bounds the authorized keys of one layer.
	MaxSignersPerLayer = 8
	maxRevoked         = 256

	policyFormat = 1
)

// RootKeyLabel is the COSE header label, in the protected header of a
// trust policy, of the root public key's DER SubjectPublicKeyInfo (a byte
// string). It is in the private-use range (less than -65536, RFC 9052,
// §16.2): the boot ROM reads the key from there, hashes it, compares the
// hash with the fuse, and only then verifies the policy's signature.
const RootKeyLabel = -65537

// LayerRule says who may sign a layer's images.
type LayerRule struct {
	// Signers are the authorized keys (*ecdsa.PublicKey, ed25519.PublicKey
	// or *mldsa65.PublicKey). At most MaxSignersPerLayer.
	Signers []crypto.PublicKey
	// Hybrid requires every image of the layer to carry one ECDSA and one
	// ML-DSA-65 signature, both by authorized keys. A hybrid layer must
	// authorize at least one key of each kind.
	Hybrid bool
}

// PolicyContent is what the root key signs: which keys may sign which
// layer's images, and which keys are revoked.
//
// The encoding is a CBOR map in Core Deterministic Encoding (RFC 8949,
// §4.2.1), format version 1:
//
//	1: format version (1)    4: { layer name => { 1: [+ SPKI DER], ? 2: true (hybrid) } }
//	2: policy version (uint) 5: revoked key ids ([* bstr .size 32]; optional)
//	3: product (text)        6: creation time (uint, Unix seconds; optional)
type PolicyContent struct {
	// Version increases with every new policy; VerifyPolicy refuses a
	// version below the chip's minimum, so an old policy (with a key that
	// was revoked since) cannot be replayed.
	Version uint64
	Product string
	Layers  map[Layer]LayerRule
	// Revoked lists [KeyID]s that no image may be signed with, even if a
	// layer authorizes them. At most 256.
	Revoked [][]byte
	Created time.Time // optional, whole seconds
}

type policyWire struct {
	Format  uint64               `cbor:"1,keyasint"`
	Version uint64               `cbor:"2,keyasint"`
	Product string               `cbor:"3,keyasint"`
	Layers  map[string]layerWire `cbor:"4,keyasint"`
	Revoked [][]byte             `cbor:"5,keyasint,omitempty"`
	Created uint64               `cbor:"6,keyasint,omitempty"`
}

type layerWire struct {
	Signers [][]byte `cbor:"1,keyasint"`
	Hybrid  bool     `cbor:"2,keyasint,omitempty"`
}

// Policy is a verified trust policy (from [VerifyPolicy]).
type Policy struct {
	PolicyContent
	RootKey       crypto.PublicKey
	RootAlgorithm pluton.Algorithm

	signers map[Layer]map[[keyIDSize]byte]authorizedKey // nil unless verified
	revoked map[[keyIDSize]byte]bool
}

type authorizedKey struct {
	pub crypto.PublicKey
	alg pluton.Algorithm
}

// encode validates the content and returns its encoding and its parsed
// signer index.
func (p *PolicyContent) encode() ([]byte, error) {
	if err := checkProduct(p.Product); err != nil {
		return nil, err
	}
	w := policyWire{Format: policyFormat, Version: p.Version, Product: p.Product, Layers: map[string]layerWire{}}
	if len(p.Layers) == 0 {
		return nil, badField("no layer has authorized signers")
	}
	for l, r := range p.Layers {
		lw := layerWire{Hybrid: r.Hybrid}
		for _, pub := range r.Signers {
			der, err := pluton.MarshalPublicKey(pub)
			if err != nil {
				return nil, badField("layer %s: %v", l, err)
			}
			lw.Signers = append(lw.Signers, der)
		}
		w.Layers[string(l)] = lw
	}
	if len(p.Revoked) > 0 {
		w.Revoked = p.Revoked
	}
	if !p.Created.IsZero() {
		if p.Created.Unix() < 0 || p.Created.Nanosecond() != 0 {
			return nil, badField("creation time before 1970 or not in whole seconds")
		}
		w.Created = uint64(p.Created.Unix())
	}
	b, err := encMode.Marshal(&w)
	if err != nil {
		return nil, err
	}
	if _, _, err := w.index(); err != nil {
		return nil, err
	}
	return b, nil
}

// index checks the decoded content and builds the signer index.
func (w *policyWire) index() (map[Layer]map[[keyIDSize]byte]authorizedKey, map[[keyIDSize]byte]bool, error) {
	if err := checkProduct(w.Product); err != nil {
		return nil, nil, err
	}
	if len(w.Layers) == 0 {
		return nil, nil, badField("no layer has authorized signers")
	}
	signers := make(map[Layer]map[[keyIDSize]byte]authorizedKey)
	for name, lw := range w.Layers {
		l, err := ParseLayer(name)
		if err != nil {
			return nil, nil, badField("%v", err)
		}
		switch n := len(lw.Signers); {
		case n == 0:
			return nil, nil, badField("layer %s has no signers", l)
		case n > MaxSignersPerLayer:
			return nil, nil, bigField("layer %s has %d signers (at most %d)", l, n, MaxSignersPerLayer)
		}
		keys := make(map[[keyIDSize]byte]authorizedKey)
		var hasECDSA, hasMLDSA bool
		for _, der := range lw.Signers {
			pub, alg, err := pluton.ParsePublicKey(der)
			if err != nil {
				return nil, nil, badField("layer %s: signer: %v", l, err)
			}
			id := sha256.Sum256(der)
			if _, dup := keys[id]; dup {
				return nil, nil, badField("layer %s lists a signer twice", l)
			}
			keys[id] = authorizedKey{pub: pub, alg: alg}
			hasECDSA = hasECDSA || isECDSA(alg)
			hasMLDSA = hasMLDSA || alg == pluton.MLDSA65
		}
		if lw.Hybrid && !(hasECDSA && hasMLDSA) {
			return nil, nil, badField("layer %s requires hybrid signatures but does not authorize both an ECDSA and an ML-DSA-65 key", l)
		}
		signers[l] = keys
	}
	if len(w.Revoked) > maxRevoked {
		return nil, nil, bigField("%d revoked keys (at most %d)", len(w.Revoked), maxRevoked)
	}
	revoked := make(map[[keyIDSize]byte]bool, len(w.Revoked))
	for _, id := range w.Revoked {
		if len(id) != keyIDSize {
			return nil, nil, badField("revoked key id of %d bytes (want %d)", len(id), keyIDSize)
		}
		revoked[[keyIDSize]byte(id)] = true
	}
	return signers, revoked, nil
}

// SignPolicy signs a trust policy with the root key: a COSE_Sign1 whose
// protected header carries the root key's SubjectPublicKeyInfo (label
// [RootKeyLabel]) and [KeyID] (kid), and whose payload is the encoded
// content. rootAlg must be the algorithm of root's key.
func SignPolicy(rand io.Reader, root crypto.Signer, rootAlg pluton.Algorithm, p *PolicyContent) ([]byte, error) {
	if root == nil || p == nil {
		return nil, fmt.Errorf("boot: nil root key or policy")
	}
	content, err := p.encode()
	if err != nil {
		return nil, fmt.Errorf("boot: invalid policy: %w", err)
	}
	if len(content) > MaxPolicySize-8<<10 {
		return nil, fmt.Errorf("boot: policy of %d bytes is too large", len(content))
	}
	spki, err := pluton.MarshalPublicKey(root.Public())
	if err != nil {
		return nil, fmt.Errorf("boot: root key: %w", err)
	}
	spkiCBOR, err := encMode.Marshal(spki)
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256(spki)
	b, err := cose.Sign1(rand, root, rootAlg, &cose.Header{
		ContentType: contentTypePolicy,
		KID:         id[:],
		Extra:       map[int64][]byte{RootKeyLabel: spkiCBOR},
	}, nil, content, nil)
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	return b, nil
}

// VerifyPolicy verifies an untrusted trust policy for a chip whose fuses
// hold rootKeyHash (the SHA-256 or SHA-384 of the root key's
// SubjectPublicKeyInfo, by its length: 32 or 48 bytes) and product, and
// whose policy counter is minVersion. In order:
//
//  1. the policy parses as a COSE_Sign1 of at most MaxPolicySize bytes,
//     with the trust policy content type (else ErrMalformed, ErrTruncated
//     or ErrTooLarge);
//  2. the root key in its protected header hashes to rootKeyHash,
//     compared in constant time (else ErrRootKeyMismatch);
//  3. its signature verifies with that key (else ErrBadSignature);
//  4. the content is well formed (else ErrMalformed or ErrTooLarge);
//  5. it is for product (else ErrWrongProduct) and its version is at least
//     minVersion (else ErrRollback).
//
// Every refusal is a *[VerifyError]. The caller, after a successful boot,
// may raise its policy counter to the returned policy's Version.
func VerifyPolicy(policy []byte, rootKeyHash []byte, product string, minVersion uint64) (*Policy, error) {
	var h crypto.Hash
	switch len(rootKeyHash) {
	case sha256.Size:
		h = crypto.SHA256
	case sha512.Size384:
		h = crypto.SHA384
	default:
		return nil, refuse("", ErrRootKeyMismatch, fmt.Sprintf("fused root key hash of %d bytes (want 32 or 48)", len(rootKeyHash)), nil)
	}
	if len(policy) > MaxPolicySize {
		return nil, refuse("", ErrTooLarge, fmt.Sprintf("policy of %d bytes (at most %d)", len(policy), MaxPolicySize), nil)
	}
	m, err := cose.ParseSign1(policy)
	if err != nil {
		return nil, coseError("", "COSE_Sign1", err)
	}
	if m.Protected.ContentType != contentTypePolicy {
		return nil, refuse("", ErrMalformed, fmt.Sprintf("content type %v is not a trust policy", m.Protected.ContentType), nil)
	}
	raw, ok := m.Protected.Extra[RootKeyLabel]
	if !ok {
		return nil, refuse("", ErrMalformed, "no root key in the protected header", nil)
	}
	var spki []byte
	if err := decMode.Unmarshal(raw, &spki); err != nil || len(raw) == 0 || raw[0]>>5 != 2 {
		return nil, refuse("", ErrMalformed, "root key is not a byte string", err)
	}
	d := h.New()
	d.Write(spki)
	if subtle.ConstantTimeCompare(d.Sum(nil), rootKeyHash) != 1 {
		return nil, refuse("", ErrRootKeyMismatch, fmt.Sprintf("the policy's root key does not hash (%v) to the fused value", h), nil)
	}
	root, rootAlg, err := pluton.ParsePublicKey(spki)
	if err != nil {
		return nil, refuse("", ErrMalformed, "root key", err)
	}
	if alg, err := m.Algorithm(); err != nil || alg != rootAlg {
		return nil, refuse("", ErrBadSignature, fmt.Sprintf("signature algorithm is not that of the %v root key", rootAlg), err)
	}
	if err := m.Verify(root, nil); err != nil {
		return nil, refuse("", ErrBadSignature, "root signature", err)
	}

	var w policyWire
	if err := decMode.Unmarshal(m.Payload, &w); err != nil {
		return nil, refuse("", ErrMalformed, "policy content", err)
	}
	if w.Format != policyFormat {
		return nil, refuse("", ErrMalformed, fmt.Sprintf("unsupported policy format version %d", w.Format), nil)
	}
	if again, err := encMode.Marshal(&w); err != nil || !bytes.Equal(again, m.Payload) {
		return nil, refuse("", ErrMalformed, "policy content is not in deterministic encoding, or lacks a field", nil)
	}
	signers, revoked, err := w.index()
	if err != nil {
		return nil, asRefusal("", "policy content", err)
	}
	if w.Product != product {
		return nil, refuse("", ErrWrongProduct, fmt.Sprintf("policy for product %q, the chip is %q", w.Product, product), nil)
	}
	if w.Version < minVersion {
		return nil, refuse("", ErrRollback, fmt.Sprintf("policy version %d is below the minimum %d", w.Version, minVersion), nil)
	}

	p := &Policy{RootKey: root, RootAlgorithm: rootAlg, signers: signers, revoked: revoked}
	p.Version, p.Product, p.Revoked = w.Version, w.Product, w.Revoked
	if w.Created != 0 && w.Created <= 1<<40 {
		p.Created = time.Unix(int64(w.Created), 0).UTC()
	}
	p.Layers = make(map[Layer]LayerRule, len(signers))
	for name, lw := range w.Layers {
		l := Layer(name)
		r := LayerRule{Hybrid: lw.Hybrid}
		for _, der := range lw.Signers {
			r.Signers = append(r.Signers, signers[l][sha256.Sum256(der)].pub)
		}
		p.Layers[l] = r
	}
	return p, nil
}

// VerifyImage verifies an untrusted image of layer against the policy and
// the chip's anti-rollback counter for that layer (minSVN). In order:
//
//  1. the image parses: a COSE_Sign1 or COSE_Sign with the manifest
//     content type, then the payload (else ErrMalformed, ErrTruncated or
//     ErrTooLarge);
//  2. if the layer requires hybrid signatures, the image has exactly one
//     ECDSA and one ML-DSA-65 signature; a multi-signature image always
//     must (else ErrHybridRequired);
//  3. no signer is revoked (else ErrRevokedSigner), every signer is
//     authorized for the layer (else ErrUnknownSigner), and every signature
//     verifies with its signer's key (else ErrBadSignature);
//  4. the now authenticated manifest is well formed (else ErrMalformed or
//     ErrTooLarge) and names exactly the keys that signed (else
//     ErrUnknownSigner);
//  5. it is for this layer (else ErrWrongLayer) and the policy's product
//     (else ErrWrongProduct), and its SVN is at least minSVN (else
//     ErrRollback);
//  6. the payload has the manifest's size (else ErrTruncated, or
//     ErrMalformed if longer) and digest (else ErrDigestMismatch).
//
// It returns the manifest and the payload (which aliases image). The caller
// raises the layer's counter to the manifest's SVN only once the image is
// confirmed good (after a successful boot), never before, so that an
// interrupted update can still fall back to the previous image. Every
// refusal is a *[VerifyError].
func (p *Policy) VerifyImage(image []byte, layer Layer, minSVN uint64) (*Manifest, []byte, error) {
	if p == nil || p.signers == nil {
		return nil, nil, refuse(layer, ErrUnknownSigner, "the trust policy was not verified (use VerifyPolicy)", nil)
	}
	if !layer.Valid() {
		return nil, nil, refuse(layer, ErrWrongLayer, "unknown layer", nil)
	}
	im, err := parseImage(layer, image)
	if err != nil {
		return nil, nil, err
	}
	rule, ok := p.Layers[layer]
	if !ok {
		return nil, nil, refuse(layer, ErrUnknownSigner, "the policy authorizes no signer for this layer", nil)
	}
	switch {
	case im.Hybrid && !hybridPair(im.Signatures):
		return nil, nil, refuse(layer, ErrHybridRequired, "a multi-signature image must have exactly one ECDSA and one ML-DSA-65 signature", nil)
	case rule.Hybrid && !im.Hybrid:
		return nil, nil, refuse(layer, ErrHybridRequired, fmt.Sprintf("the layer requires ECDSA and ML-DSA-65 signatures; the image has one %v signature", im.Signatures[0].Algorithm), nil)
	}
	keys := p.signers[layer]
	for i, s := range im.Signatures {
		id := [keyIDSize]byte(s.KeyID)
		if p.revoked[id] {
			return nil, nil, refuse(layer, ErrRevokedSigner, fmt.Sprintf("signer %x is revoked", s.KeyID), nil)
		}
		k, ok := keys[id]
		if !ok {
			return nil, nil, refuse(layer, ErrUnknownSigner, fmt.Sprintf("signer %x is not authorized for this layer", s.KeyID), nil)
		}
		if k.alg != s.Algorithm {
			return nil, nil, refuse(layer, ErrBadSignature, fmt.Sprintf("signature algorithm %v, signer %x has a %v key", s.Algorithm, s.KeyID, k.alg), nil)
		}
		if im.sign1 != nil {
			err = im.sign1.Verify(k.pub, nil)
		} else {
			err = im.sign.VerifySignature(i, k.pub, nil)
		}
		if err != nil {
			return nil, nil, refuse(layer, ErrBadSignature, fmt.Sprintf("signature by %x", s.KeyID), err)
		}
	}

	m, err := parseManifest(im.RawManifest)
	if err != nil {
		return nil, nil, asRefusal(layer, "manifest", err)
	}
	if len(m.SignerKeyIDs) != len(im.Signatures) {
		return nil, nil, refuse(layer, ErrUnknownSigner, "the manifest names other signers than those that signed it", nil)
	}
	for _, s := range im.Signatures {
		if !containsID(m.SignerKeyIDs, s.KeyID) {
			return nil, nil, refuse(layer, ErrUnknownSigner, "the manifest names other signers than those that signed it", nil)
		}
	}
	if m.Layer != layer {
		return nil, nil, refuse(layer, ErrWrongLayer, fmt.Sprintf("manifest for layer %q", m.Layer), nil)
	}
	if m.Product != p.Product {
		return nil, nil, refuse(layer, ErrWrongProduct, fmt.Sprintf("manifest for product %q, the policy is for %q", m.Product, p.Product), nil)
	}
	if m.SVN < minSVN {
		return nil, nil, refuse(layer, ErrRollback, fmt.Sprintf("svn %d is below the counter %d", m.SVN, minSVN), nil)
	}
	if err := checkPayloadLength(layer, m, im.Payload); err != nil {
		return nil, nil, err
	}
	im.Manifest = m
	if !im.DigestMatches() {
		return nil, nil, refuse(layer, ErrDigestMismatch, fmt.Sprintf("%v of the payload differs from the manifest's", m.DigestAlg), nil)
	}
	return m, im.Payload, nil
}

// Authorized reports whether the key with this KeyID may sign images of
// layer: authorized for it and not revoked.
func (p *Policy) Authorized(layer Layer, keyID []byte) bool {
	if p == nil || p.signers == nil || len(keyID) != keyIDSize {
		return false
	}
	id := [keyIDSize]byte(keyID)
	_, ok := p.signers[layer][id]
	return ok && !p.revoked[id]
}
