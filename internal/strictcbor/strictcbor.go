// Package strictcbor holds the CBOR modes every rootline wire format uses:
// Core Deterministic Encoding (RFC 8949, §4.2.1) out, and strict, bounded
// decoding in (no duplicate map keys, no indefinite lengths, valid UTF-8
// only, limits on nesting and sizes), so that hostile input is refused
// before it can cost much, and an accepted value has one encoding.
package strictcbor

import "github.com/fxamacker/cbor/v2"

// Limits bound what a decoding mode accepts.
type Limits struct {
	MaxNestedLevels  int // 4 to 65535
	MaxArrayElements int // 16 or more
	MaxMapPairs      int // 16 or more
	// AllowTags admits CBOR tags (only for a message's own outer tag).
	AllowTags bool
	// AllowUnknownFields admits map keys that the Go struct does not name.
	AllowUnknownFields bool
}

var enc = func() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("strictcbor: " + err.Error())
	}
	return m
}()

// EncMode returns the Core Deterministic Encoding mode.
func EncMode() cbor.EncMode { return enc }

// DecMode returns a strict decoding mode with limits l. It panics on limits
// the CBOR library refuses, which is a programming error: call it when
// initializing a package variable.
func DecMode(l Limits) cbor.DecMode {
	tags := cbor.TagsForbidden
	if l.AllowTags {
		tags = cbor.TagsAllowed
	}
	extra := cbor.ExtraDecErrorUnknownField
	if l.AllowUnknownFields {
		extra = cbor.ExtraDecErrorNone
	}
	m, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            tags,
		MaxNestedLevels:   l.MaxNestedLevels,
		MaxArrayElements:  l.MaxArrayElements,
		MaxMapPairs:       l.MaxMapPairs,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: extra,
	}.DecMode()
	if err != nil {
		panic("strictcbor: " + err.Error())
	}
	return m
}
