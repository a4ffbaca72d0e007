package cose

import (
	"bytes"
	"crypto"
	"fmt"
	"io"

	"github.com/rootline/rootline/pluton"
)

// headSign1 is the preferred encoding of tag 18 followed by the head of a
// four-element array: COSE_Sign1_Tagged (RFC 9052, §4.2).
var headSign1 = []byte{0xd2, 0x84}

// Sign1Message is a parsed COSE_Sign1 (RFC 9052, §4.2):
//
//	COSE_Sign1 = [ protected: bstr .cbor header_map / bstr .size 0,
//	               unprotected: header_map,
//	               payload: bstr / nil,
//	               signature: bstr ]
//
// Until [Sign1Message.Verify] succeeds, everything in it is untrusted.
type Sign1Message struct {
	Protected   Header
	Unprotected Header
	// RawProtected is the protected bucket exactly as received (the
	// contents of its byte string), which is what the signature covers.
	RawProtected []byte
	Payload      []byte
	Signature    []byte
}

// Sign1 signs payload with signer under alg and returns a tagged
// COSE_Sign1 message (RFC 9052, §4.2).
//
// protected and unprotected may be nil. Sign1 sets the algorithm in (a copy
// of) the protected header; a protected header that names another
// algorithm is refused, and so is a signer whose public key is not of alg.
// external is the externally supplied data of the Sig_structure (RFC 9052,
// §4.3), usually nil.
//
// The signature is computed over Sig_structure (RFC 9052, §4.4) with
// context "Signature1". For ECDSA, the signer's ASN.1 DER signature is
// converted to the fixed-width r‖s form (RFC 9053, §2.1). Sign1 verifies the
// signature it made before returning it, so a faulty signer cannot produce
// a message that does not verify. rand is passed to signer.Sign.
func Sign1(rand io.Reader, signer crypto.Signer, alg pluton.Algorithm, protected, unprotected *Header, payload, external []byte) ([]byte, error) {
	if payload == nil {
		payload = []byte{}
	}
	if len(payload) > MaxMessageSize {
		return nil, fmt.Errorf("cose: payload longer than %d bytes", MaxMessageSize)
	}
	ph, err := withAlg(protected, alg)
	if err != nil {
		return nil, err
	}
	if err := checkDisjoint(&ph, unprotected); err != nil {
		return nil, err
	}
	rawProtected, err := encodeProtected(&ph)
	if err != nil {
		return nil, err
	}
	rawUnprotected, err := unprotected.encode(false)
	if err != nil {
		return nil, err
	}
	tbs := sigStructure1(rawProtected, external, payload)
	sig, err := sign(rand, signer, alg, tbs)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(headSign1)+len(rawProtected)+len(rawUnprotected)+len(payload)+len(sig)+32)
	out = append(out, headSign1...)
	out = appendBytes(out, rawProtected)
	out = append(out, rawUnprotected...)
	out = appendBytes(out, payload)
	out = appendBytes(out, sig)
	if len(out) > MaxMessageSize {
		return nil, fmt.Errorf("cose: message longer than %d bytes", MaxMessageSize)
	}
	return out, nil
}

// withAlg returns a copy of h with the algorithm of alg set.
func withAlg(h *Header, alg pluton.Algorithm) (Header, error) {
	id, err := AlgorithmID(alg)
	if err != nil {
		return Header{}, err
	}
	c := h.clone()
	if c.Alg != 0 && c.Alg != id {
		return Header{}, fmt.Errorf("cose: protected header names algorithm %d, signing with %v (%d)", c.Alg, alg, id)
	}
	c.Alg = id
	return c, nil
}

// sign signs the to-be-signed bytes and checks the result.
func sign(rand io.Reader, signer crypto.Signer, alg pluton.Algorithm, tbs []byte) ([]byte, error) {
	if signer == nil {
		return nil, fmt.Errorf("cose: nil signer")
	}
	pub := signer.Public()
	got, err := pluton.AlgorithmOf(pub)
	if err != nil {
		return nil, fmt.Errorf("cose: signer: %w", err)
	}
	if got != alg {
		return nil, fmt.Errorf("cose: signer has a %v key, not %v", got, alg)
	}
	sig, err := signer.Sign(rand, alg.Digest(tbs), alg.SignerOpts())
	if err != nil {
		return nil, fmt.Errorf("cose: signing with %v: %w", alg, err)
	}
	if alg == pluton.ECDSAP256 || alg == pluton.ECDSAP384 {
		// RFC 9053, §2.1: the signature is r‖s, each as wide as the group
		// order, not the ASN.1 structure.
		if sig, err = pluton.ECDSASignatureToP1363(alg, sig); err != nil {
			return nil, fmt.Errorf("cose: signer returned a malformed signature: %w", err)
		}
	}
	if err := pluton.VerifyP1363(pub, alg, tbs, sig); err != nil {
		return nil, fmt.Errorf("cose: signer produced a signature that does not verify: %w", err)
	}
	return sig, nil
}

// sigStructure1 encodes Sig_structure for COSE_Sign1 (RFC 9052, §4.4):
//
//	[ "Signature1", body_protected: empty_or_serialized_map,
//	  external_aad: bstr, payload: bstr ]
//
// in preferred serialization, as §9 requires of the to-be-signed bytes.
func sigStructure1(rawProtected, external, payload []byte) []byte {
	b := make([]byte, 0, 32+len(rawProtected)+len(external)+len(payload))
	b = appendHead(b, majorArray, 4)
	b = appendText(b, "Signature1")
	b = appendBytes(b, rawProtected)
	b = appendBytes(b, external)
	return appendBytes(b, payload)
}

// ParseSign1 parses a tagged COSE_Sign1 message that must fill b exactly.
// b is untrusted; see the package documentation for what is refused.
// Errors wrap [ErrMalformed], [ErrTruncated] or [ErrTooLarge].
func ParseSign1(b []byte) (*Sign1Message, error) {
	m, rest, err := ParseSign1Prefix(b)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, malformed("trailing data after the message", nil)
	}
	return m, nil
}

// ParseSign1Prefix parses a tagged COSE_Sign1 message at the start of b
// and returns it and the bytes that follow it. The message itself is at
// most [MaxMessageSize] bytes; what follows is not read.
func ParseSign1Prefix(b []byte) (*Sign1Message, []byte, error) {
	content, rest, err := decodeFirst(b, TagSign1, headSign1)
	if err != nil {
		return nil, nil, err
	}
	elems, err := decodeArray(content, "COSE_Sign1")
	if err != nil {
		return nil, nil, err
	}
	if len(elems) != 4 {
		return nil, nil, malformed("COSE_Sign1 is not an array of 4", nil)
	}
	m := new(Sign1Message)
	if m.RawProtected, err = decodeBytes(elems[0], "protected header"); err != nil {
		return nil, nil, err
	}
	if m.Protected, m.Unprotected, err = decodeBuckets(m.RawProtected, elems[1]); err != nil {
		return nil, nil, err
	}
	if m.Protected.Alg == 0 {
		return nil, nil, malformed("no algorithm in the protected header", nil)
	}
	if m.Payload, err = decodeBytes(elems[2], "payload (detached payloads are not supported)"); err != nil {
		return nil, nil, err
	}
	if m.Signature, err = decodeBytes(elems[3], "signature"); err != nil {
		return nil, nil, err
	}
	return m, rest, nil
}

// Algorithm returns the algorithm named in the protected header.
func (m *Sign1Message) Algorithm() (pluton.Algorithm, error) {
	return AlgorithmFromID(m.Protected.Alg)
}

// Verify checks the signature with pub over Sig_structure (RFC 9052, §4.4)
// and external, through [pluton.VerifyP1363]. It returns nil if the
// signature is valid; an error wrapping [pluton.ErrUnsupportedAlgorithm],
// [pluton.ErrInvalidKey] (a key of another algorithm than the message's) or
// [pluton.ErrInvalidSignature] otherwise.
func (m *Sign1Message) Verify(pub crypto.PublicKey, external []byte) error {
	alg, err := m.Algorithm()
	if err != nil {
		return err
	}
	tbs := sigStructure1(m.RawProtected, external, m.Payload)
	if err := pluton.VerifyP1363(pub, alg, tbs, m.Signature); err != nil {
		return fmt.Errorf("cose: COSE_Sign1: %w", err)
	}
	return nil
}

// Marshal encodes m again as a tagged COSE_Sign1, with RawProtected as it
// is and the unprotected header in deterministic encoding. For a message
// whose unprotected header was received in deterministic encoding, it gives
// back the parsed bytes.
func (m *Sign1Message) Marshal() ([]byte, error) {
	rawUnprotected, err := m.Unprotected.encode(false)
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(headSign1)
	out = appendBytes(out, m.RawProtected)
	out = append(out, rawUnprotected...)
	out = appendBytes(out, m.Payload)
	return appendBytes(out, m.Signature), nil
}
