package cose

import (
	"errors"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// CBOR major types (RFC 8949, §3.1).
const (
	majorUint  = 0
	majorNint  = 1
	majorBytes = 2
	majorText  = 3
	majorArray = 4
	majorMap   = 5
)

// appendHead appends the preferred (shortest) encoding of a data item's
// head: major type and argument (RFC 8949, §3 and §4.2.1).
func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return append(b, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendBytes(b, v []byte) []byte {
	return append(appendHead(b, majorBytes, uint64(len(v))), v...)
}

func appendText(b []byte, s string) []byte {
	return append(appendHead(b, majorText, uint64(len(s))), s...)
}

// majorType returns the major type of the encoded item raw (not empty).
func majorType(raw []byte) byte { return raw[0] >> 5 }

// decodeBytes decodes raw, which must be a byte string (major type 2):
// fxamacker/cbor would also turn a CBOR null into a nil slice.
func decodeBytes(raw cbor.RawMessage, what string) ([]byte, error) {
	if len(raw) == 0 || majorType(raw) != majorBytes {
		return nil, malformed(what+" is not a byte string", nil)
	}
	var v []byte
	if err := innerDecMode.Unmarshal(raw, &v); err != nil {
		return nil, malformed(what, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// decodeArray decodes raw, which must be an array, into its elements.
func decodeArray(raw cbor.RawMessage, what string) ([]cbor.RawMessage, error) {
	if len(raw) == 0 || majorType(raw) != majorArray {
		return nil, malformed(what+" is not an array", nil)
	}
	var v []cbor.RawMessage
	if err := innerDecMode.Unmarshal(raw, &v); err != nil {
		return nil, malformed(what, err)
	}
	return v, nil
}

// decodeLabels decodes raw, which must be a map with integer keys.
func decodeLabels(raw []byte, what string) (map[int64]cbor.RawMessage, error) {
	if len(raw) == 0 || majorType(raw) != majorMap {
		return nil, malformed(what+" is not a map", nil)
	}
	var m map[int64]cbor.RawMessage
	if err := innerDecMode.Unmarshal(raw, &m); err != nil {
		return nil, malformed(what+" (labels must be integers)", err)
	}
	return m, nil
}

// decodeFirst decodes the first data item of b, which must carry the tag
// tag, and returns its content and the bytes after it. Reading stops at
// MaxMessageSize bytes.
func decodeFirst(b []byte, tag uint64, head []byte) (content cbor.RawMessage, rest []byte, err error) {
	data := b
	if len(data) > MaxMessageSize {
		data = data[:MaxMessageSize]
	}
	// The preferred encoding of the tag and of the array's head (RFC 8949,
	// §4.2.1); anything else is refused before the decoder runs.
	if len(data) < len(head) {
		if string(data) == string(head[:len(data)]) {
			return nil, nil, &FormatError{Reason: "input ends inside the message head", Err: ErrTruncated}
		}
		return nil, nil, malformed("not a tagged COSE message of the expected kind", nil)
	}
	if string(data[:len(head)]) != string(head) {
		return nil, nil, malformed("not a tagged COSE message of the expected kind", nil)
	}
	var t cbor.RawTag
	r, err := outerDecMode.UnmarshalFirst(data, &t)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if len(b) > MaxMessageSize {
			return nil, nil, tooLarge("message longer than the maximum")
		}
		return nil, nil, &FormatError{Reason: "input ends inside the message", Err: ErrTruncated}
	case err != nil:
		var tooBig *cbor.MaxArrayElementsError
		var tooMany *cbor.MaxMapPairsError
		var tooDeep *cbor.MaxNestedLevelError
		if errors.As(err, &tooBig) || errors.As(err, &tooMany) || errors.As(err, &tooDeep) {
			return nil, nil, &FormatError{Reason: "message exceeds a structural limit", Err: ErrTooLarge, Cause: err}
		}
		return nil, nil, malformed("invalid CBOR", err)
	case t.Number != tag:
		return nil, nil, malformed("wrong tag", nil)
	}
	consumed := len(data) - len(r)
	return t.Content, b[consumed:], nil
}
