package boot

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/cose"
)

// Content types (RFC 9052, §3.1, label 3) that keep an image's manifest
// and a trust policy from being taken for one another.
const (
	contentTypeManifest = "application/vnd.rootline.boot-manifest+cbor"
	contentTypePolicy   = "application/vnd.rootline.trust-policy+cbor"
)

// MaxImageSize bounds a whole image: the COSE object (which holds the
// manifest and the signatures) and the payload.
const MaxImageSize = cose.MaxMessageSize + MaxPayloadSize

// ImageSignature describes one signature of an image.
type ImageSignature struct {
	Algorithm pluton.Algorithm
	KeyID     []byte // the signer's KeyID, from the signature's protected header
}

// Image is a parsed, unverified image (see [ParseImage]). Everything in it
// is untrusted.
type Image struct {
	Manifest    *Manifest
	RawManifest []byte
	// Hybrid is true for a COSE_Sign image (several signatures), false for
	// a COSE_Sign1 image.
	Hybrid     bool
	Signatures []ImageSignature
	// HeaderSize is the length of the COSE object that precedes the
	// payload.
	HeaderSize int
	// Payload is the rest of the image (it aliases the input).
	Payload []byte

	sign1 *cose.Sign1Message
	sign  *cose.SignMessage
}

// DigestMatches reports whether the payload has the manifest's size and
// digest.
func (im *Image) DigestMatches() bool {
	if uint64(len(im.Payload)) != im.Manifest.PayloadSize {
		return false
	}
	d := im.Manifest.DigestAlg.New()
	d.Write(im.Payload)
	return subtle.ConstantTimeCompare(d.Sum(nil), im.Manifest.Digest) == 1
}

// SignImage builds an image: a manifest signed as a COSE_Sign1 (one
// signer) or a COSE_Sign (two signers, one ECDSA and one ML-DSA-65: a
// hybrid image), immediately followed by the payload.
//
// SignImage fills in (a copy of) m: the payload size and digest (with
// m.DigestAlg, or SHA-256 if it is zero) and the signers' key ids. Layer,
// Product, Version and SVN must be set; Created is optional. Each
// signature's protected header names its algorithm and the signer's
// [KeyID]; the COSE_Sign1 or body protected header carries the manifest
// content type. rand is passed to the signers.
func SignImage(rand io.Reader, signers []crypto.Signer, m *Manifest, payload []byte) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("boot: nil manifest")
	}
	if len(payload) > MaxPayloadSize {
		return nil, fmt.Errorf("boot: payload of %d bytes (at most %d)", len(payload), MaxPayloadSize)
	}
	mm := *m
	if mm.DigestAlg == 0 {
		mm.DigestAlg = crypto.SHA256
	}
	if digestSize(mm.DigestAlg) == 0 {
		return nil, fmt.Errorf("boot: digest algorithm %v (want SHA-256 or SHA-384)", mm.DigestAlg)
	}
	d := mm.DigestAlg.New()
	d.Write(payload)
	mm.Digest = d.Sum(nil)
	mm.PayloadSize = uint64(len(payload))

	algs := make([]pluton.Algorithm, len(signers))
	ids := make([][]byte, len(signers))
	for i, s := range signers {
		if s == nil {
			return nil, fmt.Errorf("boot: nil signer")
		}
		alg, err := pluton.AlgorithmOf(s.Public())
		if err != nil {
			return nil, fmt.Errorf("boot: signer %d: %w", i, err)
		}
		if ids[i], err = KeyID(s.Public()); err != nil {
			return nil, err
		}
		algs[i] = alg
	}
	switch len(signers) {
	case 1:
	case 2:
		// Hybrid: ECDSA first, then ML-DSA-65.
		if isECDSA(algs[1]) && algs[0] == pluton.MLDSA65 {
			signers = []crypto.Signer{signers[1], signers[0]}
			algs[0], algs[1] = algs[1], algs[0]
			ids[0], ids[1] = ids[1], ids[0]
		}
		if !isECDSA(algs[0]) || algs[1] != pluton.MLDSA65 {
			return nil, fmt.Errorf("boot: a hybrid image needs one ECDSA and one ML-DSA-65 signer, not %v and %v", algs[0], algs[1])
		}
	default:
		return nil, fmt.Errorf("boot: %d signers (want 1, or 2 for a hybrid image)", len(signers))
	}
	mm.SignerKeyIDs = ids
	manifest, err := mm.marshal()
	if err != nil {
		return nil, fmt.Errorf("boot: invalid manifest: %w", err)
	}

	var head []byte
	if len(signers) == 1 {
		head, err = cose.Sign1(rand, signers[0], algs[0],
			&cose.Header{ContentType: contentTypeManifest, KID: ids[0]}, nil, manifest, nil)
	} else {
		cs := make([]cose.Signer, len(signers))
		for i := range signers {
			cs[i] = cose.Signer{Signer: signers[i], Alg: algs[i], KID: ids[i]}
		}
		head, err = cose.Sign(rand, cs, &cose.Header{ContentType: contentTypeManifest}, manifest, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	out := make([]byte, 0, len(head)+len(payload))
	return append(append(out, head...), payload...), nil
}

func isECDSA(a pluton.Algorithm) bool { return a == pluton.ECDSAP256 || a == pluton.ECDSAP384 }

// ParseImage parses an untrusted image without deciding whether to trust
// it: structure, manifest and payload length are checked; signatures and
// the digest are not (see [Image.DigestMatches] and [Policy.VerifyImage]).
// Errors are *[VerifyError]s, with an empty Layer.
func ParseImage(image []byte) (*Image, error) {
	im, err := parseImage("", image)
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(im.RawManifest)
	if err != nil {
		return nil, asRefusal("", "manifest", err)
	}
	im.Manifest = m
	if err := checkPayloadLength("", m, im.Payload); err != nil {
		return nil, err
	}
	return im, nil
}

// parseImage parses the COSE object at the start of image, but not the
// manifest it carries.
func parseImage(layer Layer, image []byte) (*Image, error) {
	if len(image) > MaxImageSize {
		return nil, refuse(layer, ErrTooLarge, fmt.Sprintf("image of %d bytes (at most %d)", len(image), MaxImageSize), nil)
	}
	tag, err := cose.PeekTag(image)
	if err != nil {
		return nil, coseError(layer, "not a signed image", err)
	}
	im := new(Image)
	var protected *cose.Header
	switch tag {
	case cose.TagSign1:
		m, rest, err := cose.ParseSign1Prefix(image)
		if err != nil {
			return nil, coseError(layer, "COSE_Sign1", err)
		}
		alg, err := m.Algorithm()
		if err != nil {
			return nil, refuse(layer, ErrMalformed, "signature algorithm", err)
		}
		im.sign1, im.Payload, im.RawManifest = m, rest, m.Payload
		im.Signatures = []ImageSignature{{Algorithm: alg, KeyID: m.Protected.KID}}
		protected = &m.Protected
	case cose.TagSign:
		m, rest, err := cose.ParseSignPrefix(image)
		if err != nil {
			return nil, coseError(layer, "COSE_Sign", err)
		}
		im.sign, im.Payload, im.RawManifest, im.Hybrid = m, rest, m.Payload, true
		for _, s := range m.Signatures {
			alg, err := s.Algorithm()
			if err != nil {
				return nil, refuse(layer, ErrMalformed, "signature algorithm", err)
			}
			im.Signatures = append(im.Signatures, ImageSignature{Algorithm: alg, KeyID: s.Protected.KID})
		}
		protected = &m.Protected
	}
	im.HeaderSize = len(image) - len(im.Payload)
	if protected.ContentType != contentTypeManifest {
		return nil, refuse(layer, ErrMalformed, fmt.Sprintf("content type %v is not a boot manifest", protected.ContentType), nil)
	}
	for _, s := range im.Signatures {
		if len(s.KeyID) != keyIDSize {
			return nil, refuse(layer, ErrMalformed, "a signature without a 32-byte key id in its protected header", nil)
		}
	}
	return im, nil
}

// checkPayloadLength compares the payload with the manifest's size.
func checkPayloadLength(layer Layer, m *Manifest, payload []byte) error {
	switch n := uint64(len(payload)); {
	case n < m.PayloadSize:
		return refuse(layer, ErrTruncated, fmt.Sprintf("payload of %d bytes, the manifest says %d", n, m.PayloadSize), nil)
	case n > m.PayloadSize:
		return refuse(layer, ErrMalformed, fmt.Sprintf("%d bytes after the payload", n-m.PayloadSize), nil)
	}
	return nil
}

// hybridPair reports whether sigs are exactly one ECDSA and one ML-DSA-65
// signature.
func hybridPair(sigs []ImageSignature) bool {
	if len(sigs) != 2 {
		return false
	}
	a, b := sigs[0].Algorithm, sigs[1].Algorithm
	return (isECDSA(a) && b == pluton.MLDSA65) || (isECDSA(b) && a == pluton.MLDSA65)
}

func containsID(ids [][]byte, id []byte) bool {
	for _, x := range ids {
		if bytes.Equal(x, id) {
			return true
		}
	}
	return false
}
