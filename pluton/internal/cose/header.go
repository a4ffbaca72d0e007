package cose

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// Header parameter labels (RFC 9052, §3.1, Table 3; RFC 9360, §2).
const (
	LabelAlg         = 1
	LabelCrit        = 2
	LabelContentType = 3
	LabelKID         = 4
	LabelX5Chain     = 33
)

// maxContentTypeLen bounds a text content type.
const maxContentTypeLen = 256

// Header is one bucket of header parameters (RFC 9052, §3): protected or
// unprotected.
type Header struct {
	// Alg is the COSE algorithm identifier (label 1), or 0 if absent (0 is
	// reserved in the IANA registry). It is only allowed in the protected
	// bucket; Sign1 and Sign set it.
	Alg int64
	// KID is the key identifier (label 4), or nil.
	KID []byte
	// ContentType (label 3) is nil, a uint64 CoAP Content-Format (at most
	// 65535), or a string media type.
	ContentType any
	// X5Chain (label 33, RFC 9360, §2) is an ordered chain of DER X.509
	// certificates, the signer's first. One certificate is encoded as a
	// byte string, several as an array; both are decoded.
	X5Chain [][]byte
	// Extra holds the other parameters: label → the CBOR encoding of its
	// value (one well-formed data item without tags). Labels 1, 2, 3, 4
	// and 33 may not appear here. Private-use labels (less than -65536,
	// RFC 9052, §16.2) are the place for application parameters.
	Extra map[int64][]byte
}

func (h *Header) empty() bool {
	return h == nil || (h.Alg == 0 && h.KID == nil && h.ContentType == nil && h.X5Chain == nil && len(h.Extra) == 0)
}

func (h *Header) clone() Header {
	if h == nil {
		return Header{}
	}
	c := *h
	c.KID = bytes.Clone(h.KID)
	if h.X5Chain != nil {
		c.X5Chain = make([][]byte, len(h.X5Chain))
		for i, cert := range h.X5Chain {
			c.X5Chain[i] = bytes.Clone(cert)
		}
	}
	if h.Extra != nil {
		c.Extra = make(map[int64][]byte, len(h.Extra))
		for k, v := range h.Extra {
			c.Extra[k] = bytes.Clone(v)
		}
	}
	return c
}

func (h *Header) labels() []int64 {
	var l []int64
	if h.Alg != 0 {
		l = append(l, LabelAlg)
	}
	if h.ContentType != nil {
		l = append(l, LabelContentType)
	}
	if h.KID != nil {
		l = append(l, LabelKID)
	}
	if h.X5Chain != nil {
		l = append(l, LabelX5Chain)
	}
	for k := range h.Extra {
		l = append(l, k)
	}
	return l
}

// encode returns the CBOR map of h in Core Deterministic Encoding (RFC
// 8949, §4.2.1), after checking it as decode would.
func (h *Header) encode(protected bool) ([]byte, error) {
	m := make(map[int64]any)
	if h != nil {
		if h.Alg != 0 {
			if !protected {
				return nil, fmt.Errorf("cose: the algorithm belongs in the protected header")
			}
			m[LabelAlg] = h.Alg
		}
		switch ct := h.ContentType.(type) {
		case nil:
		case uint64:
			if ct > 0xffff {
				return nil, fmt.Errorf("cose: content format %d is larger than 65535", ct)
			}
			m[LabelContentType] = ct
		case string:
			if ct == "" || len(ct) > maxContentTypeLen || !utf8.ValidString(ct) {
				return nil, fmt.Errorf("cose: invalid content type %q", ct)
			}
			m[LabelContentType] = ct
		default:
			return nil, fmt.Errorf("cose: content type of type %T (want uint64 or string)", ct)
		}
		if h.KID != nil {
			if len(h.KID) > MaxKIDSize {
				return nil, fmt.Errorf("cose: key identifier longer than %d bytes", MaxKIDSize)
			}
			m[LabelKID] = h.KID
		}
		switch n := len(h.X5Chain); {
		case h.X5Chain == nil:
		case n == 0:
			return nil, fmt.Errorf("cose: empty x5chain")
		case n > MaxX5ChainCerts:
			return nil, fmt.Errorf("cose: x5chain of more than %d certificates", MaxX5ChainCerts)
		case n == 1:
			m[LabelX5Chain] = h.X5Chain[0]
		default:
			m[LabelX5Chain] = h.X5Chain
		}
		for k, v := range h.Extra {
			switch k {
			case LabelAlg, LabelCrit, LabelContentType, LabelKID, LabelX5Chain:
				return nil, fmt.Errorf("cose: label %d may not be set through Extra", k)
			}
			if err := innerDecMode.Wellformed(v); err != nil {
				return nil, fmt.Errorf("cose: value of label %d: %w", k, err)
			}
			m[k] = cbor.RawMessage(v)
		}
	}
	if len(m) > MaxHeaderLabels {
		return nil, fmt.Errorf("cose: more than %d header labels", MaxHeaderLabels)
	}
	b, err := encMode.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("cose: encoding header: %w", err)
	}
	return b, nil
}

// encodeProtected returns the protected bucket as the contents of its byte
// string: the zero-length string when empty (RFC 9052, §3).
func encodeProtected(h *Header) ([]byte, error) {
	if h.empty() {
		return []byte{}, nil
	}
	return h.encode(true)
}

// decodeHeader interprets one decoded bucket.
func decodeHeader(m map[int64]cbor.RawMessage, protected bool) (Header, error) {
	var h Header
	for label, raw := range m {
		switch label {
		case LabelAlg:
			if !protected {
				return Header{}, malformed("algorithm in the unprotected header", nil)
			}
			if t := majorType(raw); t != majorUint && t != majorNint {
				return Header{}, malformed("algorithm is not an integer", nil)
			}
			if err := innerDecMode.Unmarshal(raw, &h.Alg); err != nil {
				return Header{}, malformed("algorithm", err)
			}
			if h.Alg == 0 {
				return Header{}, malformed("reserved algorithm 0", nil)
			}
		case LabelCrit:
			// Handled by checkCrit, which needs both buckets.
		case LabelContentType:
			switch majorType(raw) {
			case majorUint:
				var ct uint64
				if err := innerDecMode.Unmarshal(raw, &ct); err != nil {
					return Header{}, malformed("content type", err)
				}
				// RFC 9052, §3.1: uint (0..65535), a CoAP Content-Format.
				if ct > 0xffff {
					return Header{}, malformed("content format larger than 65535", nil)
				}
				h.ContentType = ct
			case majorText:
				var ct string
				if err := innerDecMode.Unmarshal(raw, &ct); err != nil {
					return Header{}, malformed("content type", err)
				}
				if ct == "" || len(ct) > maxContentTypeLen {
					return Header{}, malformed("content type empty or too long", nil)
				}
				h.ContentType = ct
			default:
				return Header{}, malformed("content type is neither uint nor text", nil)
			}
		case LabelKID:
			kid, err := decodeBytes(raw, "key identifier")
			if err != nil {
				return Header{}, err
			}
			if len(kid) > MaxKIDSize {
				return Header{}, tooLarge("key identifier")
			}
			h.KID = kid
		case LabelX5Chain:
			// RFC 9360, §2: COSE_X509 = bstr / [ 2*certs: bstr ].
			switch majorType(raw) {
			case majorBytes:
				cert, err := decodeBytes(raw, "x5chain")
				if err != nil {
					return Header{}, err
				}
				h.X5Chain = [][]byte{cert}
			case majorArray:
				elems, err := decodeArray(raw, "x5chain")
				if err != nil {
					return Header{}, err
				}
				if len(elems) < 2 {
					return Header{}, malformed("x5chain array of fewer than 2 certificates", nil)
				}
				if len(elems) > MaxX5ChainCerts {
					return Header{}, tooLarge("x5chain")
				}
				for _, e := range elems {
					cert, err := decodeBytes(e, "x5chain certificate")
					if err != nil {
						return Header{}, err
					}
					h.X5Chain = append(h.X5Chain, cert)
				}
			default:
				return Header{}, malformed("x5chain is neither a byte string nor an array", nil)
			}
		default:
			if h.Extra == nil {
				h.Extra = make(map[int64][]byte)
			}
			h.Extra[label] = bytes.Clone(raw)
		}
	}
	return h, nil
}

// decodeBuckets decodes and checks a protected bucket (the contents of its
// byte string) and an unprotected one (an encoded map).
func decodeBuckets(rawProtected []byte, rawUnprotected cbor.RawMessage) (protected, unprotected Header, err error) {
	var pm map[int64]cbor.RawMessage
	if len(rawProtected) > 0 {
		// RFC 9052, §3: recipients accept both the zero-length string and
		// an encoded empty map (h'a0').
		if pm, err = decodeLabels(rawProtected, "protected header"); err != nil {
			return Header{}, Header{}, err
		}
	}
	um, err := decodeLabels(rawUnprotected, "unprotected header")
	if err != nil {
		return Header{}, Header{}, err
	}
	// RFC 9052, §3: a label may appear in one bucket only.
	for l := range um {
		if _, ok := pm[l]; ok {
			return Header{}, Header{}, malformed(fmt.Sprintf("label %d in both header buckets", l), nil)
		}
	}
	if err := checkCrit(pm, um); err != nil {
		return Header{}, Header{}, err
	}
	if protected, err = decodeHeader(pm, true); err != nil {
		return Header{}, Header{}, err
	}
	if unprotected, err = decodeHeader(um, false); err != nil {
		return Header{}, Header{}, err
	}
	return protected, unprotected, nil
}

// checkCrit applies RFC 9052, §3.1 "crit": it must be protected, a
// non-empty array of labels that are present in the protected bucket; and
// a recipient that does not process one of them must refuse the message.
// This package processes alg, content type, kid and x5chain only.
func checkCrit(pm, um map[int64]cbor.RawMessage) error {
	if _, ok := um[LabelCrit]; ok {
		return malformed("crit in the unprotected header", nil)
	}
	raw, ok := pm[LabelCrit]
	if !ok {
		return nil
	}
	elems, err := decodeArray(raw, "crit")
	if err != nil {
		return err
	}
	if len(elems) == 0 {
		return malformed("empty crit", nil)
	}
	for _, e := range elems {
		var l int64
		if t := majorType(e); t != majorUint && t != majorNint {
			return malformed("crit label is not an integer", nil)
		}
		if err := innerDecMode.Unmarshal(e, &l); err != nil {
			return malformed("crit", err)
		}
		if _, ok := pm[l]; !ok {
			return malformed(fmt.Sprintf("crit names label %d, absent from the protected header", l), nil)
		}
		if !slices.Contains([]int64{LabelAlg, LabelContentType, LabelKID, LabelX5Chain}, l) {
			return malformed(fmt.Sprintf("crit names label %d, which this implementation does not process", l), nil)
		}
	}
	return nil
}

// checkDisjoint refuses a label set in both buckets when encoding.
func checkDisjoint(protected, unprotected *Header) error {
	if protected == nil || unprotected == nil {
		return nil
	}
	p := protected.labels()
	for _, l := range unprotected.labels() {
		if slices.Contains(p, l) {
			return fmt.Errorf("cose: label %d set in both header buckets", l)
		}
	}
	return nil
}
