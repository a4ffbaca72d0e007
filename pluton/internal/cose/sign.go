package cose

import (
	"bytes"
	"crypto"
	"fmt"
	"io"

	"github.com/rootline/rootline/pluton"
)

// headSign is the preferred encoding of tag 98 followed by the head of a
// four-element array: COSE_Sign_Tagged (RFC 9052, §4.1).
var headSign = []byte{0xd8, 0x62, 0x84}

// Signer is one signer of a COSE_Sign message.
type Signer struct {
	Signer crypto.Signer
	Alg    pluton.Algorithm
	// KID, if not nil, is set in the signature's protected header, so that
	// it is covered by the signature.
	KID []byte
}

// Signature is one parsed COSE_Signature of a COSE_Sign message (RFC
// 9052, §4.1):
//
//	COSE_Signature = [ Headers, signature: bstr ]
type Signature struct {
	Protected    Header
	Unprotected  Header
	RawProtected []byte
	Signature    []byte
}

// SignMessage is a parsed COSE_Sign (RFC 9052, §4.1):
//
//	COSE_Sign = [ Headers, payload: bstr / nil,
//	              signatures: [+ COSE_Signature] ]
//
// Until [SignMessage.VerifySignature] succeeds for a signature, everything
// in it is untrusted.
type SignMessage struct {
	Protected    Header // the body's protected header
	Unprotected  Header
	RawProtected []byte
	Payload      []byte
	Signatures   []Signature
}

// Sign signs payload with every signer and returns a tagged COSE_Sign
// message (RFC 9052, §4.1). bodyProtected (which may be nil) is the
// protected header of the body and may not name an algorithm: each
// signature names its own in its protected header.
//
// Each signature is computed over Sig_structure (RFC 9052, §4.4) with
// context "Signature", and checked before Sign returns, as in [Sign1].
func Sign(rand io.Reader, signers []Signer, bodyProtected *Header, payload, external []byte) ([]byte, error) {
	if len(signers) == 0 || len(signers) > MaxSignatures {
		return nil, fmt.Errorf("cose: COSE_Sign needs 1 to %d signers, got %d", MaxSignatures, len(signers))
	}
	if payload == nil {
		payload = []byte{}
	}
	if len(payload) > MaxMessageSize {
		return nil, fmt.Errorf("cose: payload longer than %d bytes", MaxMessageSize)
	}
	if bodyProtected != nil && bodyProtected.Alg != 0 {
		return nil, fmt.Errorf("cose: the body of a COSE_Sign names no algorithm; each signature does")
	}
	rawBody, err := encodeProtected(bodyProtected)
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(headSign)
	out = appendBytes(out, rawBody)
	out = append(out, 0xa0) // empty unprotected header
	out = appendBytes(out, payload)
	out = appendHead(out, majorArray, uint64(len(signers)))
	for i, s := range signers {
		ph, err := withAlg(&Header{KID: s.KID}, s.Alg)
		if err != nil {
			return nil, err
		}
		rawSign, err := encodeProtected(&ph)
		if err != nil {
			return nil, err
		}
		sig, err := sign(rand, s.Signer, s.Alg, sigStructure(rawBody, rawSign, external, payload))
		if err != nil {
			return nil, fmt.Errorf("%w (signer %d)", err, i)
		}
		out = appendHead(out, majorArray, 3)
		out = appendBytes(out, rawSign)
		out = append(out, 0xa0)
		out = appendBytes(out, sig)
	}
	if len(out) > MaxMessageSize {
		return nil, fmt.Errorf("cose: message longer than %d bytes", MaxMessageSize)
	}
	return out, nil
}

// sigStructure encodes Sig_structure for a COSE_Signature (RFC 9052,
// §4.4):
//
//	[ "Signature", body_protected, sign_protected, external_aad, payload ]
func sigStructure(rawBody, rawSign, external, payload []byte) []byte {
	b := make([]byte, 0, 32+len(rawBody)+len(rawSign)+len(external)+len(payload))
	b = appendHead(b, majorArray, 5)
	b = appendText(b, "Signature")
	b = appendBytes(b, rawBody)
	b = appendBytes(b, rawSign)
	b = appendBytes(b, external)
	return appendBytes(b, payload)
}

// ParseSign parses a tagged COSE_Sign message that must fill b exactly.
// b is untrusted. Every signature must name its algorithm in its protected
// header; the body may not name one. Errors wrap [ErrMalformed],
// [ErrTruncated] or [ErrTooLarge].
func ParseSign(b []byte) (*SignMessage, error) {
	m, rest, err := ParseSignPrefix(b)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, malformed("trailing data after the message", nil)
	}
	return m, nil
}

// ParseSignPrefix parses a tagged COSE_Sign message at the start of b and
// returns it and the bytes that follow it.
func ParseSignPrefix(b []byte) (*SignMessage, []byte, error) {
	content, rest, err := decodeFirst(b, TagSign, headSign)
	if err != nil {
		return nil, nil, err
	}
	elems, err := decodeArray(content, "COSE_Sign")
	if err != nil {
		return nil, nil, err
	}
	if len(elems) != 4 {
		return nil, nil, malformed("COSE_Sign is not an array of 4", nil)
	}
	m := new(SignMessage)
	if m.RawProtected, err = decodeBytes(elems[0], "protected header"); err != nil {
		return nil, nil, err
	}
	if m.Protected, m.Unprotected, err = decodeBuckets(m.RawProtected, elems[1]); err != nil {
		return nil, nil, err
	}
	if m.Protected.Alg != 0 {
		return nil, nil, malformed("algorithm in the body's protected header", nil)
	}
	if m.Payload, err = decodeBytes(elems[2], "payload (detached payloads are not supported)"); err != nil {
		return nil, nil, err
	}
	sigs, err := decodeArray(elems[3], "signatures")
	if err != nil {
		return nil, nil, err
	}
	if len(sigs) == 0 {
		return nil, nil, malformed("no signatures", nil)
	}
	if len(sigs) > MaxSignatures {
		return nil, nil, tooLarge("too many signatures")
	}
	for _, raw := range sigs {
		s, err := decodeArray(raw, "COSE_Signature")
		if err != nil {
			return nil, nil, err
		}
		if len(s) != 3 {
			return nil, nil, malformed("COSE_Signature is not an array of 3", nil)
		}
		var sig Signature
		if sig.RawProtected, err = decodeBytes(s[0], "signature protected header"); err != nil {
			return nil, nil, err
		}
		if sig.Protected, sig.Unprotected, err = decodeBuckets(sig.RawProtected, s[1]); err != nil {
			return nil, nil, err
		}
		if sig.Protected.Alg == 0 {
			return nil, nil, malformed("no algorithm in a signature's protected header", nil)
		}
		if sig.Signature, err = decodeBytes(s[2], "signature"); err != nil {
			return nil, nil, err
		}
		m.Signatures = append(m.Signatures, sig)
	}
	return m, rest, nil
}

// Algorithm returns the algorithm named in the signature's protected
// header.
func (s *Signature) Algorithm() (pluton.Algorithm, error) {
	return AlgorithmFromID(s.Protected.Alg)
}

// VerifySignature checks signature i with pub over Sig_structure (RFC
// 9052, §4.4) and external. Its errors are those of [Sign1Message.Verify];
// an index out of range wraps [pluton.ErrInvalidArgument].
func (m *SignMessage) VerifySignature(i int, pub crypto.PublicKey, external []byte) error {
	if i < 0 || i >= len(m.Signatures) {
		return fmt.Errorf("cose: %w: no signature %d", pluton.ErrInvalidArgument, i)
	}
	s := &m.Signatures[i]
	alg, err := s.Algorithm()
	if err != nil {
		return err
	}
	tbs := sigStructure(m.RawProtected, s.RawProtected, external, m.Payload)
	if err := pluton.VerifyP1363(pub, alg, tbs, s.Signature); err != nil {
		return fmt.Errorf("cose: COSE_Sign signature %d: %w", i, err)
	}
	return nil
}

// PeekTag returns the tag of the COSE message at the start of b:
// [TagSign1] or [TagSign], from the preferred encoding of its head. It
// parses nothing else.
func PeekTag(b []byte) (uint64, error) {
	switch {
	case bytes.HasPrefix(b, headSign1):
		return TagSign1, nil
	case bytes.HasPrefix(b, headSign):
		return TagSign, nil
	case len(b) < len(headSign) && (bytes.HasPrefix(headSign1, b) || bytes.HasPrefix(headSign, b)):
		return 0, &FormatError{Reason: "input ends inside the message head", Err: ErrTruncated}
	}
	return 0, malformed("not a tagged COSE_Sign1 or COSE_Sign message", nil)
}
