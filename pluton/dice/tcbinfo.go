package dice

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"unicode/utf8"

	"github.com/rootline/rootline/pluton"
)

// The DiceTcbInfo extension of the TCG DICE Attestation Architecture
// (version 1.1, §6.1.1; the ASN.1 below as transcribed by NXP spsdk,
// spsdk/dice/tcg_asn.py, and, for the first ten fields, by lowRISC
// OpenTitan, sw/host/ot_certs/src/asn1/dice_tcb.rs):
//
//	tcg-dice-TcbInfo OBJECT IDENTIFIER ::= {2 23 133 5 4 1}
//	DiceTcbInfo ::= SEQUENCE {
//	    vendor     [0] IMPLICIT UTF8String OPTIONAL,
//	    model      [1] IMPLICIT UTF8String OPTIONAL,
//	    version    [2] IMPLICIT UTF8String OPTIONAL,
//	    svn        [3] IMPLICIT INTEGER OPTIONAL,
//	    layer      [4] IMPLICIT INTEGER OPTIONAL,
//	    index      [5] IMPLICIT INTEGER OPTIONAL,
//	    fwids      [6] IMPLICIT FWIDLIST OPTIONAL,
//	    flags      [7] IMPLICIT OperationalFlags OPTIONAL,
//	    vendorInfo [8] IMPLICIT OCTET STRING OPTIONAL,
//	    type       [9] IMPLICIT OCTET STRING OPTIONAL,
//	    flagsMask  [10] IMPLICIT OperationalFlagsMask OPTIONAL
//	}
//	FWIDLIST ::= SEQUENCE SIZE (1..MAX) OF FWID
//	FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }
//	OperationalFlags ::= BIT STRING { notConfigured (0), notSecure (1),
//	    recovery (2), debug (3), notReplayProtected (4),
//	    notIntegrityProtected (5), notRuntimeMeasured (6), notImmutable (7),
//	    notTcb (8), fixedWidth (31) }
//	OperationalFlagsMask ::= BIT STRING { (the same named bits) }
//
// The field integrityRegisters [11] of later versions is not supported:
// ParseTcbInfo refuses it, as any other unknown field.

// Errors of the DiceTcbInfo parser.
var (
	// ErrInvalidTcbInfo: an untrusted DiceTcbInfo encoding is malformed, is
	// not DER, or holds a value this package cannot represent. Parse errors
	// are [*TcbInfoError] values that wrap it.
	ErrInvalidTcbInfo = errors.New("dice: invalid DiceTcbInfo")
	// ErrNoTcbInfo: a certificate has no DiceTcbInfo extension.
	ErrNoTcbInfo = errors.New("dice: certificate has no DiceTcbInfo extension")
)

// TcbInfoError says which field of an untrusted DiceTcbInfo was refused and
// why. It wraps [ErrInvalidTcbInfo].
type TcbInfoError struct {
	Field  string // "vendor", "fwids[2]", "flags"…; empty for the structure
	Reason string
}

func (e *TcbInfoError) Error() string {
	if e.Field == "" {
		return "dice: invalid DiceTcbInfo: " + e.Reason
	}
	return "dice: invalid DiceTcbInfo " + e.Field + ": " + e.Reason
}

// Unwrap returns [ErrInvalidTcbInfo].
func (e *TcbInfoError) Unwrap() error { return ErrInvalidTcbInfo }

// OIDTcbInfo is tcg-dice-TcbInfo, 2.23.133.5.4.1, the extension that
// carries a [TcbInfo]. Treat it as a constant: this package never reads
// it, so changing it changes nothing here.
var OIDTcbInfo = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 1}

// oidTcbInfo returns a fresh copy of tcg-dice-TcbInfo.
func oidTcbInfo() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{2, 23, 133, 5, 4, 1} }

// Bounds on untrusted input. A DiceTcbInfo in practice is a few hundred
// bytes (NVIDIA's Blackwell GSP one is 180, with two SHA-384 FWIDs).
const (
	// MaxTcbInfoSize bounds the DER encoding ParseTcbInfo accepts and
	// Marshal produces.
	MaxTcbInfoSize = 16 << 10
	// MaxFWIDs bounds the number of FWIDs.
	MaxFWIDs = 64
)

// OperationalFlags are the named bits of OperationalFlags and
// OperationalFlagsMask: bit n of the ASN.1 BIT STRING is 1<<n here, so
// FlagDebug (named bit 3) is 1<<3 = 8.
type OperationalFlags uint32

// The named bits, TCG DICE Attestation Architecture v1.1, §6.1.1.
const (
	FlagNotConfigured         OperationalFlags = 1 << 0 // notConfigured (0)
	FlagNotSecure             OperationalFlags = 1 << 1 // notSecure (1)
	FlagRecovery              OperationalFlags = 1 << 2 // recovery (2)
	FlagDebug                 OperationalFlags = 1 << 3 // debug (3)
	FlagNotReplayProtected    OperationalFlags = 1 << 4 // notReplayProtected (4)
	FlagNotIntegrityProtected OperationalFlags = 1 << 5 // notIntegrityProtected (5)
	FlagNotRuntimeMeasured    OperationalFlags = 1 << 6 // notRuntimeMeasured (6)
	FlagNotImmutable          OperationalFlags = 1 << 7 // notImmutable (7)
	FlagNotTcb                OperationalFlags = 1 << 8 // notTcb (8)
	// FlagFixedWidth (31): since bit 31 is the last one, a value with it set
	// always encodes as a full 32-bit BIT STRING, which lets template-based
	// encoders patch flags in place and still produce DER.
	FlagFixedWidth OperationalFlags = 1 << 31
)

var flagNames = [...]struct {
	f    OperationalFlags
	name string
}{
	{FlagNotConfigured, "notConfigured"},
	{FlagNotSecure, "notSecure"},
	{FlagRecovery, "recovery"},
	{FlagDebug, "debug"},
	{FlagNotReplayProtected, "notReplayProtected"},
	{FlagNotIntegrityProtected, "notIntegrityProtected"},
	{FlagNotRuntimeMeasured, "notRuntimeMeasured"},
	{FlagNotImmutable, "notImmutable"},
	{FlagNotTcb, "notTcb"},
	{FlagFixedWidth, "fixedWidth"},
}

// String lists the set bits by their ASN.1 names, joined by "|", with
// "bit(n)" for bits the specification does not name; "none" if none is set.
func (f OperationalFlags) String() string {
	if f == 0 {
		return "none"
	}
	var parts []string
	for n := range 32 {
		bit := OperationalFlags(1) << n
		if f&bit == 0 {
			continue
		}
		name := fmt.Sprintf("bit(%d)", n)
		for _, fn := range flagNames {
			if fn.f == bit {
				name = fn.name
			}
		}
		parts = append(parts, name)
	}
	return strings.Join(parts, "|")
}

// FWID is one firmware identifier of a layer: a digest of its code (or of
// whatever the layer's vendor measures) and the hash that made it.
type FWID struct {
	// Hash is crypto.SHA256, SHA384, SHA512, SHA3_256, SHA3_384 or
	// SHA3_512; SHA1 is accepted too, for reading older devices (Project
	// Cerberus' RIoT certificates use it), but is collision-weak.
	Hash crypto.Hash
	// Digest must be Hash.Size() bytes.
	Digest []byte
}

// hashOIDs maps the supported FWID hashes to the DER contents of their
// OBJECT IDENTIFIERs: the NIST CSOR hashAlgs arc 2.16.840.1.101.3.4.2, with
// sha256 (1), sha384 (2), sha512 (3) as RFC 5754, §2, lists them and
// sha3-256 (8), sha3-384 (9), sha3-512 (10); and OIW SHA-1 1.3.14.3.2.26
// (RFC 3279, §2.2.1).
var hashOIDs = [...]struct {
	h   crypto.Hash
	oid string
}{
	{crypto.SHA256, "\x60\x86\x48\x01\x65\x03\x04\x02\x01"},
	{crypto.SHA384, "\x60\x86\x48\x01\x65\x03\x04\x02\x02"},
	{crypto.SHA512, "\x60\x86\x48\x01\x65\x03\x04\x02\x03"},
	{crypto.SHA3_256, "\x60\x86\x48\x01\x65\x03\x04\x02\x08"},
	{crypto.SHA3_384, "\x60\x86\x48\x01\x65\x03\x04\x02\x09"},
	{crypto.SHA3_512, "\x60\x86\x48\x01\x65\x03\x04\x02\x0a"},
	{crypto.SHA1, "\x2b\x0e\x03\x02\x1a"},
}

func hashOID(h crypto.Hash) (string, bool) {
	for _, e := range hashOIDs {
		if e.h == h {
			return e.oid, true
		}
	}
	return "", false
}

func oidHash(oid []byte) (crypto.Hash, bool) {
	for _, e := range hashOIDs {
		if string(oid) == e.oid {
			return e.h, true
		}
	}
	return 0, false
}

// TcbInfo is a DiceTcbInfo: what a DICE layer says about the layer it
// measured.
//
// Presence of the OPTIONAL fields:
//   - Vendor, Model, Version are present when non-empty (so ParseTcbInfo
//     refuses an empty UTF8String, which this struct could not give back);
//   - SVN, Layer, Index, Flags, FlagsMask are present when their Has field
//     is true (zero is a meaningful value: layer 0, no flag set). Marshal
//     refuses a non-zero value whose Has field is false, rather than drop it;
//   - FWIDs is present when non-empty (FWIDLIST has at least one element);
//   - VendorInfo and Type are present when non-nil; an empty non-nil slice
//     is an empty OCTET STRING.
//
// ParseTcbInfo then Marshal gives back the input, byte for byte.
type TcbInfo struct {
	Vendor  string // [0] the layer's vendor
	Model   string // [1] the product
	Version string // [2] the layer's version, free text

	SVN    uint64 // [3] security version number
	HasSVN bool

	Layer    uint64 // [4] DICE layer number (0: the first mutable code)
	HasLayer bool

	Index    uint64 // [5] the TCB's index, when a layer has several
	HasIndex bool

	FWIDs []FWID // [6] the layer's digests

	Flags    OperationalFlags // [7] operational state
	HasFlags bool

	VendorInfo []byte // [8] vendor-defined
	Type       []byte // [9] vendor-defined TCB type

	FlagsMask    OperationalFlags // [10] which bits of Flags are meaningful
	HasFlagsMask bool
}

// Context-specific tags of the DiceTcbInfo fields (X.690, §8.1.2: class
// context-specific is 0b10 in the top bits, bit 6 set for constructed).
const (
	tagVendor     = 0x80
	tagModel      = 0x81
	tagVersion    = 0x82
	tagSVN        = 0x83
	tagLayer      = 0x84
	tagIndex      = 0x85
	tagFWIDs      = 0xa6 // constructed: a SEQUENCE OF, implicitly tagged
	tagFlags      = 0x87
	tagVendorInfo = 0x88
	tagType       = 0x89
	tagFlagsMask  = 0x8a

	tagBitString   = 0x03
	tagOctetString = 0x04
	tagOID         = 0x06
	tagSequence    = 0x30
)

var fieldNames = [...]string{"vendor", "model", "version", "svn", "layer", "index", "fwids", "flags", "vendorInfo", "type", "flagsMask"}

// Marshal returns the DER encoding of the DiceTcbInfo, the value of its
// X.509 extension. It fails, with an error wrapping
// [pluton.ErrInvalidArgument], on a string that is not UTF-8, a non-zero
// SVN, Layer, Index, Flags or FlagsMask whose Has field is false, a digest
// of the wrong size, too many FWIDs or an encoding over [MaxTcbInfoSize];
// and with one wrapping [pluton.ErrUnsupportedAlgorithm] on an FWID hash
// it does not know. Whatever Marshal returns, ParseTcbInfo accepts.
func (t *TcbInfo) Marshal() ([]byte, error) {
	if t == nil {
		return nil, fmt.Errorf("dice: nil TcbInfo: %w", pluton.ErrInvalidArgument)
	}
	for _, s := range []struct {
		name, v string
	}{{"vendor", t.Vendor}, {"model", t.Model}, {"version", t.Version}} {
		if !utf8.ValidString(s.v) {
			return nil, fmt.Errorf("dice: TcbInfo %s is not UTF-8: %w", s.name, pluton.ErrInvalidArgument)
		}
	}
	for _, n := range []struct {
		name string
		set  bool
		has  bool
	}{
		{"SVN", t.SVN != 0, t.HasSVN},
		{"Layer", t.Layer != 0, t.HasLayer},
		{"Index", t.Index != 0, t.HasIndex},
		{"Flags", t.Flags != 0, t.HasFlags},
		{"FlagsMask", t.FlagsMask != 0, t.HasFlagsMask},
	} {
		if n.set && !n.has {
			return nil, fmt.Errorf("dice: TcbInfo %s is set but Has%s is false: %w", n.name, n.name, pluton.ErrInvalidArgument)
		}
	}
	if len(t.FWIDs) > MaxFWIDs {
		return nil, fmt.Errorf("dice: TcbInfo has %d FWIDs, at most %d: %w", len(t.FWIDs), MaxFWIDs, pluton.ErrInvalidArgument)
	}

	// The SEQUENCE components, in the order of their tags (X.690, §8.9.2;
	// DER keeps the order of the definition).
	var c []byte
	if t.Vendor != "" {
		c = appendTLV(c, tagVendor, []byte(t.Vendor))
	}
	if t.Model != "" {
		c = appendTLV(c, tagModel, []byte(t.Model))
	}
	if t.Version != "" {
		c = appendTLV(c, tagVersion, []byte(t.Version))
	}
	if t.HasSVN {
		c = appendTLV(c, tagSVN, uintContents(t.SVN))
	}
	if t.HasLayer {
		c = appendTLV(c, tagLayer, uintContents(t.Layer))
	}
	if t.HasIndex {
		c = appendTLV(c, tagIndex, uintContents(t.Index))
	}
	if len(t.FWIDs) > 0 {
		var list []byte
		for i, f := range t.FWIDs {
			oid, ok := hashOID(f.Hash)
			if !ok {
				return nil, fmt.Errorf("dice: TcbInfo FWID %d: hash %v: %w", i, f.Hash, pluton.ErrUnsupportedAlgorithm)
			}
			if len(f.Digest) != f.Hash.Size() {
				return nil, fmt.Errorf("dice: TcbInfo FWID %d: %d-byte digest for %v, want %d: %w", i, len(f.Digest), f.Hash, f.Hash.Size(), pluton.ErrInvalidArgument)
			}
			// FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }
			fwid := appendTLV(nil, tagOID, []byte(oid))
			fwid = appendTLV(fwid, tagOctetString, f.Digest)
			list = appendTLV(list, tagSequence, fwid)
		}
		c = appendTLV(c, tagFWIDs, list)
	}
	if t.HasFlags {
		c = appendTLV(c, tagFlags, namedBitsContents(t.Flags))
	}
	if t.VendorInfo != nil {
		c = appendTLV(c, tagVendorInfo, t.VendorInfo)
	}
	if t.Type != nil {
		c = appendTLV(c, tagType, t.Type)
	}
	if t.HasFlagsMask {
		c = appendTLV(c, tagFlagsMask, namedBitsContents(t.FlagsMask))
	}
	der := appendTLV(nil, tagSequence, c)
	if len(der) > MaxTcbInfoSize {
		return nil, fmt.Errorf("dice: TcbInfo encodes to %d bytes, at most %d: %w", len(der), MaxTcbInfoSize, pluton.ErrInvalidArgument)
	}
	return der, nil
}

// ParseTcbInfo parses the untrusted DER encoding of a DiceTcbInfo (the
// value of a tcg-dice-TcbInfo extension). It accepts DER only (X.690, §10:
// definite, minimal lengths; §8.3.2 minimal INTEGERs; §11.2 BIT STRINGs
// with zero unused bits and, for the named-bit flags, no trailing zero
// bit), fields in the order of their tags with none repeated, and nothing
// after the SEQUENCE. It also refuses what [TcbInfo] cannot hold: an
// unknown field, an empty vendor, model or version, a negative or
// over-64-bit INTEGER, a flag beyond bit 31, an empty FWIDLIST, more than
// [MaxFWIDs] FWIDs, an unknown FWID hash or a digest of the wrong size; and
// any input over [MaxTcbInfoSize] bytes. Errors are [*TcbInfoError] values
// wrapping [ErrInvalidTcbInfo].
func ParseTcbInfo(der []byte) (*TcbInfo, error) {
	if len(der) > MaxTcbInfoSize {
		return nil, &TcbInfoError{Reason: fmt.Sprintf("%d bytes, at most %d", len(der), MaxTcbInfoSize)}
	}
	tag, body, rest, reason := readTLV(der)
	if reason != "" {
		return nil, &TcbInfoError{Reason: reason}
	}
	if tag != tagSequence {
		return nil, &TcbInfoError{Reason: fmt.Sprintf("tag 0x%02x, want SEQUENCE", tag)}
	}
	if len(rest) != 0 {
		return nil, &TcbInfoError{Reason: "trailing data after the SEQUENCE"}
	}

	t := new(TcbInfo)
	last := -1
	for len(body) > 0 {
		tag, c, r, reason := readTLV(body)
		if reason != "" {
			return nil, &TcbInfoError{Reason: reason}
		}
		body = r
		// Every field is [n] IMPLICIT, context-specific; only fwids is
		// constructed (a SEQUENCE OF).
		if tag&0xc0 != 0x80 || tag&0x1f > 10 {
			return nil, &TcbInfoError{Reason: fmt.Sprintf("unknown field with tag 0x%02x", tag)}
		}
		n := int(tag & 0x1f)
		field := fieldNames[n]
		wantConstructed := n == 6
		if (tag&0x20 != 0) != wantConstructed {
			return nil, &TcbInfoError{Field: field, Reason: "wrong primitive/constructed form"}
		}
		if n <= last {
			return nil, &TcbInfoError{Field: field, Reason: "out of order or repeated"}
		}
		last = n
		switch tag {
		case tagVendor, tagModel, tagVersion:
			if len(c) == 0 {
				return nil, &TcbInfoError{Field: field, Reason: "empty string"}
			}
			if !utf8.Valid(c) {
				return nil, &TcbInfoError{Field: field, Reason: "not UTF-8"}
			}
			switch tag {
			case tagVendor:
				t.Vendor = string(c)
			case tagModel:
				t.Model = string(c)
			default:
				t.Version = string(c)
			}
		case tagSVN, tagLayer, tagIndex:
			v, reason := parseUint(c)
			if reason != "" {
				return nil, &TcbInfoError{Field: field, Reason: reason}
			}
			switch tag {
			case tagSVN:
				t.SVN, t.HasSVN = v, true
			case tagLayer:
				t.Layer, t.HasLayer = v, true
			default:
				t.Index, t.HasIndex = v, true
			}
		case tagFWIDs:
			fwids, err := parseFWIDs(c)
			if err != nil {
				return nil, err
			}
			t.FWIDs = fwids
		case tagFlags, tagFlagsMask:
			f, reason := parseNamedBits(c)
			if reason != "" {
				return nil, &TcbInfoError{Field: field, Reason: reason}
			}
			if tag == tagFlags {
				t.Flags, t.HasFlags = f, true
			} else {
				t.FlagsMask, t.HasFlagsMask = f, true
			}
		case tagVendorInfo:
			t.VendorInfo = bytes.Clone(c)
			if t.VendorInfo == nil {
				t.VendorInfo = []byte{}
			}
		case tagType:
			t.Type = bytes.Clone(c)
			if t.Type == nil {
				t.Type = []byte{}
			}
		}
	}
	return t, nil
}

// parseFWIDs parses the contents of FWIDLIST ::= SEQUENCE SIZE (1..MAX) OF
// FWID.
func parseFWIDs(c []byte) ([]FWID, error) {
	if len(c) == 0 {
		return nil, &TcbInfoError{Field: "fwids", Reason: "empty list (FWIDLIST has at least one FWID)"}
	}
	var fwids []FWID
	for i := 0; len(c) > 0; i++ {
		field := fmt.Sprintf("fwids[%d]", i)
		if i == MaxFWIDs {
			return nil, &TcbInfoError{Field: "fwids", Reason: fmt.Sprintf("more than %d FWIDs", MaxFWIDs)}
		}
		tag, fwid, r, reason := readTLV(c)
		if reason != "" {
			return nil, &TcbInfoError{Field: field, Reason: reason}
		}
		c = r
		if tag != tagSequence {
			return nil, &TcbInfoError{Field: field, Reason: fmt.Sprintf("tag 0x%02x, want SEQUENCE", tag)}
		}
		tag, oid, fwid, reason := readTLV(fwid)
		if reason != "" {
			return nil, &TcbInfoError{Field: field, Reason: reason}
		}
		if tag != tagOID {
			return nil, &TcbInfoError{Field: field, Reason: fmt.Sprintf("hashAlg tag 0x%02x, want OBJECT IDENTIFIER", tag)}
		}
		h, ok := oidHash(oid)
		if !ok {
			// Name the OID when it decodes, for the error message only.
			var o asn1.ObjectIdentifier
			name := fmt.Sprintf("%x", oid)
			if _, err := asn1.Unmarshal(appendTLV(nil, tagOID, oid), &o); err == nil {
				name = o.String()
			}
			return nil, &TcbInfoError{Field: field, Reason: "unsupported hash algorithm " + name}
		}
		tag, digest, fwid, reason := readTLV(fwid)
		if reason != "" {
			return nil, &TcbInfoError{Field: field, Reason: reason}
		}
		if tag != tagOctetString {
			return nil, &TcbInfoError{Field: field, Reason: fmt.Sprintf("digest tag 0x%02x, want OCTET STRING", tag)}
		}
		if len(fwid) != 0 {
			return nil, &TcbInfoError{Field: field, Reason: "trailing data in FWID"}
		}
		if len(digest) != h.Size() {
			return nil, &TcbInfoError{Field: field, Reason: fmt.Sprintf("%d-byte digest for %v, want %d", len(digest), h, h.Size())}
		}
		fwids = append(fwids, FWID{Hash: h, Digest: bytes.Clone(digest)})
	}
	return fwids, nil
}

// readTLV reads one DER element with a single-octet tag (tag numbers up to
// 30, X.690, §8.1.2.2) from the front of b. reason is empty on success.
func readTLV(b []byte) (tag byte, contents, rest []byte, reason string) {
	if len(b) < 2 {
		return 0, nil, nil, "truncated"
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, "multi-octet tag"
	}
	n := int(b[1])
	b = b[2:]
	switch {
	case n < 0x80:
		// X.690, §8.1.3.4: short form.
	case n == 0x80:
		// §10.1: DER uses the definite form only.
		return 0, nil, nil, "indefinite length (BER)"
	case n == 0x81 || n == 0x82:
		// §8.1.3.5, long form; §10.1: in the fewest octets, so the short
		// form for lengths under 128 and no leading zero octet.
		k := n - 0x80
		if len(b) < k {
			return 0, nil, nil, "truncated"
		}
		n = 0
		for _, d := range b[:k] {
			n = n<<8 | int(d)
		}
		if n < 0x80 || (k == 2 && n < 0x100) {
			return 0, nil, nil, "non-minimal length (BER)"
		}
		b = b[k:]
	default:
		// Nothing here exceeds MaxTcbInfoSize, which two octets cover.
		return 0, nil, nil, "length too large"
	}
	if n > len(b) {
		return 0, nil, nil, "truncated"
	}
	return tag, b[:n], b[n:], ""
}

// appendTLV appends a DER element with a single-octet tag, its length in
// the fewest octets (X.690, §10.1).
func appendTLV(b []byte, tag byte, contents []byte) []byte {
	b = append(b, tag)
	switch n := len(contents); {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x100:
		b = append(b, 0x81, byte(n))
	case n < 0x10000:
		b = append(b, 0x82, byte(n>>8), byte(n))
	default:
		b = append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, contents...)
}

// uintContents returns the contents of a DER INTEGER holding v: two's
// complement big-endian in the fewest octets (X.690, §8.3.2), so a leading
// zero octet only when the top bit would otherwise be set.
func uintContents(v uint64) []byte {
	var buf [9]byte
	binary.BigEndian.PutUint64(buf[1:], v)
	i := 1
	for i < 8 && buf[i] == 0 {
		i++
	}
	if buf[i]&0x80 != 0 {
		i--
	}
	return bytes.Clone(buf[i:])
}

// parseUint parses the contents of a DER INTEGER that must be in [0,
// 2⁶⁴-1].
func parseUint(c []byte) (uint64, string) {
	switch {
	case len(c) == 0:
		return 0, "empty INTEGER"
	case len(c) > 1 && (c[0] == 0x00 && c[1]&0x80 == 0 || c[0] == 0xff && c[1]&0x80 != 0):
		// X.690, §8.3.2: the first nine bits are not all equal.
		return 0, "non-minimal INTEGER (BER)"
	case c[0]&0x80 != 0:
		return 0, "negative INTEGER"
	}
	if c[0] == 0 {
		c = c[1:]
	}
	if len(c) > 8 {
		return 0, "INTEGER over 64 bits"
	}
	var v uint64
	for _, d := range c {
		v = v<<8 | uint64(d)
	}
	return v, ""
}

// namedBitsContents returns the contents of the DER BIT STRING of a value
// of a type with a named bit list (X.690, §8.6.2 and §11.2): the initial
// octet is the number of unused bits in the final octet; named bit n is
// bit 7-(n mod 8) (the most significant first) of octet n/8; DER removes
// all trailing zero bits (§11.2.2) and sets the unused bits to zero
// (§11.2.1). No bit set is the empty bit string, the single octet 00
// (§8.6.2.3). So only debug (3) set is 04 10: four bits 0001, four unused.
func namedBitsContents(f OperationalFlags) []byte {
	if f == 0 {
		return []byte{0}
	}
	nbits := 32 - bits.LeadingZeros32(uint32(f)) // highest named bit set, plus one
	octets := (nbits + 7) / 8
	var buf [4]byte
	// Reversing the 32 bits puts named bit 0 in the most significant bit of
	// the first big-endian octet, as §8.6.2.1 numbers them.
	binary.BigEndian.PutUint32(buf[:], bits.Reverse32(uint32(f)))
	out := make([]byte, 1, 1+octets)
	out[0] = byte(8*octets - nbits)
	return append(out, buf[:octets]...)
}

// parseNamedBits parses the contents of a DER BIT STRING of named bits 0 to
// 31, checking the rules namedBitsContents follows.
func parseNamedBits(c []byte) (OperationalFlags, string) {
	if len(c) == 0 {
		return 0, "empty BIT STRING (no initial octet)"
	}
	unused := int(c[0])
	data := c[1:]
	switch {
	case unused > 7:
		return 0, "BIT STRING with more than 7 unused bits"
	case len(data) == 0:
		if unused != 0 {
			return 0, "empty BIT STRING with unused bits"
		}
		return 0, ""
	case len(data) > 4:
		// With no trailing zero bits allowed, a fifth octet holds a set
		// bit beyond 31.
		return 0, "flag beyond bit 31"
	}
	lastOctet := data[len(data)-1]
	if lastOctet&(1<<unused-1) != 0 {
		return 0, "unused bits not zero (DER, X.690 11.2.1)"
	}
	if lastOctet&(1<<unused) == 0 {
		return 0, "trailing zero bit in a named bit list (DER, X.690 11.2.2)"
	}
	var buf [4]byte
	copy(buf[:], data)
	return OperationalFlags(bits.Reverse32(binary.BigEndian.Uint32(buf[:]))), ""
}

// TcbInfoFromCertificate finds the DiceTcbInfo extension of c and parses
// it with ParseTcbInfo. c is untrusted until its chain is verified. It
// returns an error wrapping [ErrNoTcbInfo] if there is none and one wrapping
// [ErrInvalidTcbInfo] if there are several. The extension is read whether
// or not it is marked critical.
func TcbInfoFromCertificate(c *x509.Certificate) (*TcbInfo, error) {
	if c == nil {
		return nil, fmt.Errorf("dice: nil certificate: %w", pluton.ErrInvalidArgument)
	}
	var found []byte
	n := 0
	for _, e := range c.Extensions {
		if e.Id.Equal(oidTcbInfo()) {
			found = e.Value
			n++
		}
	}
	switch n {
	case 0:
		return nil, ErrNoTcbInfo
	case 1:
		return ParseTcbInfo(found)
	}
	return nil, &TcbInfoError{Reason: fmt.Sprintf("%d DiceTcbInfo extensions in one certificate", n)}
}
