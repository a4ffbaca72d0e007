package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The subject alternative names of the profiles are otherNames, which
// crypto/x509 can neither write nor read, so this file encodes and parses
// the extension itself (RFC 5280, §4.2.1.6):
//
//	SubjectAltName ::= GeneralNames
//	GeneralNames ::= SEQUENCE SIZE (1..MAX) OF GeneralName
//	GeneralName ::= CHOICE { otherName [0] OtherName, … }
//	OtherName ::= SEQUENCE {
//	    type-id    OBJECT IDENTIFIER,
//	    value      [0] EXPLICIT ANY DEFINED BY type-id }
//
// The module's tagging is IMPLICIT, so otherName is the OtherName SEQUENCE
// with its tag replaced by [0] (constructed).

// OIDHardwareModuleName is id-on-hardwareModuleName, 1.3.6.1.5.5.7.8.4
// (RFC 4108, §5), the otherName of the IDevID and operational profiles.
// Treat it as a constant.
var OIDHardwareModuleName = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 4}

// OIDRootline is rootline's own OID arc, minted without registration from
// the UUID a217ee50-bb67-4ebc-8a19-90e2e90a28f6 under Microsoft's arc for
// GUID-based OIDs, 1.2.840.113556.1.8000.2554 (the UUID's seven groups of
// 4, 4, 4, 4, 4, 6 and 6 hex digits as decimal arcs). The shorter
// 2.25.<UUID> form (ITU-T X.667) has a 128-bit arc that
// encoding/asn1, zcrypto and many other parsers cannot read. Treat it as
// a constant.
var OIDRootline = asn1.ObjectIdentifier{1, 2, 840, 113556, 1, 8000, 2554, 41495, 61008, 47975, 20156, 35353, 9495273, 665846}

// OIDStation is OIDRootline.1, the otherName type of the station profile.
// Its value is
//
//	RootlineStation ::= SEQUENCE {
//	    name      UTF8String (SIZE (1..64)),
//	    products  SEQUENCE SIZE (1..64) OF UTF8String (SIZE (1..64)) }
//
// naming the station and the products it may provision. Treat it as a
// constant.
var OIDStation = append(slices.Clone(OIDRootline), 1)

func oidHardwareModuleName() asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 4}
}

func oidStation() asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{1, 2, 840, 113556, 1, 8000, 2554, 41495, 61008, 47975, 20156, 35353, 9495273, 665846, 1}
}

// ErrNoName: a certificate has no subject alternative name of the kind
// asked for, or it is malformed or repeated.
var ErrNoName = errors.New("ca: no such subject alternative name")

var (
	tagOtherName = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagExplicit0 = cbasn1.Tag(0).ContextSpecific().Constructed()
)

// MarshalHardwareModuleName returns the value of a subjectAltName
// extension holding one HardwareModuleName otherName (RFC 4108, §5):
//
//	HardwareModuleName ::= SEQUENCE {
//	    hwType OBJECT IDENTIFIER,
//	    hwSerialNum OCTET STRING }
//
// IEEE 802.1AR-2018, §8.9, names the device this way in a DevID: hwType is
// the product's hardware type and hwSerialNum its serial number (here, the
// UEID).
func MarshalHardwareModuleName(hwType asn1.ObjectIdentifier, serial []byte) ([]byte, error) {
	if len(hwType) < 2 {
		return nil, fmt.Errorf("ca: hwType %v is not an OID", hwType)
	}
	if len(serial) == 0 {
		return nil, errors.New("ca: empty hwSerialNum")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralNames
		b.AddASN1(tagOtherName, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidHardwareModuleName()) // type-id
			b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(hwType)
					b.AddASN1OctetString(serial)
				})
			})
		})
	})
	return b.Bytes()
}

// MarshalStation returns the value of a subjectAltName extension holding
// one RootlineStation otherName (see [OIDStation]).
func MarshalStation(name string, products []string) ([]byte, error) {
	if err := checkName("station name", name); err != nil {
		return nil, err
	}
	if len(products) == 0 || len(products) > MaxStationProducts {
		return nil, refuse(ErrInvalidField, "a station needs 1 to %d products, not %d", MaxStationProducts, len(products))
	}
	for _, p := range products {
		if err := checkName("product name", p); err != nil {
			return nil, err
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagOtherName, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidStation())
			b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						for _, p := range products {
							b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
						}
					})
				})
			})
		})
	})
	return b.Bytes()
}

// otherNames returns the otherNames of type typ in an untrusted
// GeneralNames value, as the contents of their [0] EXPLICIT value. Names
// of other kinds are skipped.
func otherNames(san []byte, typ asn1.ObjectIdentifier) ([]cryptobyte.String, error) {
	in := cryptobyte.String(san)
	var names cryptobyte.String
	if !in.ReadASN1(&names, cbasn1.SEQUENCE) || !in.Empty() || names.Empty() {
		return nil, errors.New("not a GeneralNames SEQUENCE SIZE (1..MAX)")
	}
	var found []cryptobyte.String
	for !names.Empty() {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&gn, &tag) {
			return nil, errors.New("malformed GeneralName")
		}
		if tag != tagOtherName {
			continue
		}
		var id asn1.ObjectIdentifier
		var val cryptobyte.String
		if !gn.ReadASN1ObjectIdentifier(&id) || !gn.ReadASN1(&val, tagExplicit0) || !gn.Empty() {
			return nil, errors.New("malformed otherName")
		}
		if id.Equal(typ) {
			found = append(found, val)
		}
	}
	return found, nil
}

// sanOf returns the value of c's one subjectAltName extension.
func sanOf(c *x509.Certificate) ([]byte, error) {
	var v []byte
	n := 0
	for _, e := range c.Extensions {
		if e.Id.Equal(oidExtSubjectAltName) {
			v = e.Value
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: %d subjectAltName extensions", ErrNoName, n)
	}
	return v, nil
}

// ParseHardwareModuleName finds the one HardwareModuleName otherName in an
// untrusted subjectAltName value. Errors wrap [ErrNoName].
func ParseHardwareModuleName(san []byte) (hwType asn1.ObjectIdentifier, serial []byte, err error) {
	found, err := otherNames(san, oidHardwareModuleName())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNoName, err)
	}
	if len(found) != 1 {
		return nil, nil, fmt.Errorf("%w: %d HardwareModuleNames", ErrNoName, len(found))
	}
	v := found[0]
	var seq, sn cryptobyte.String
	if !v.ReadASN1(&seq, cbasn1.SEQUENCE) || !v.Empty() ||
		!seq.ReadASN1ObjectIdentifier(&hwType) || !seq.ReadASN1(&sn, cbasn1.OCTET_STRING) || !seq.Empty() {
		return nil, nil, fmt.Errorf("%w: malformed HardwareModuleName", ErrNoName)
	}
	if len(sn) == 0 {
		return nil, nil, fmt.Errorf("%w: empty hwSerialNum", ErrNoName)
	}
	return hwType, bytes.Clone(sn), nil
}

// HardwareModuleName returns the hwType and hwSerialNum (the UEID) of an
// IDevID or operational certificate. c is untrusted until its chain is
// verified. Errors wrap [ErrNoName].
func HardwareModuleName(c *x509.Certificate) (hwType asn1.ObjectIdentifier, serial []byte, err error) {
	san, err := sanOf(c)
	if err != nil {
		return nil, nil, err
	}
	return ParseHardwareModuleName(san)
}

// ParseStation finds the one RootlineStation otherName in an untrusted
// subjectAltName value. Errors wrap [ErrNoName].
func ParseStation(san []byte) (name string, products []string, err error) {
	found, err := otherNames(san, oidStation())
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrNoName, err)
	}
	if len(found) != 1 {
		return "", nil, fmt.Errorf("%w: %d RootlineStation names", ErrNoName, len(found))
	}
	v := found[0]
	var seq, n, list cryptobyte.String
	if !v.ReadASN1(&seq, cbasn1.SEQUENCE) || !v.Empty() ||
		!seq.ReadASN1(&n, cbasn1.UTF8String) || !seq.ReadASN1(&list, cbasn1.SEQUENCE) || !seq.Empty() {
		return "", nil, fmt.Errorf("%w: malformed RootlineStation", ErrNoName)
	}
	name = string(n)
	if err := checkName("station name", name); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrNoName, err)
	}
	for !list.Empty() {
		var p cryptobyte.String
		if !list.ReadASN1(&p, cbasn1.UTF8String) {
			return "", nil, fmt.Errorf("%w: malformed RootlineStation products", ErrNoName)
		}
		if err := checkName("product name", string(p)); err != nil {
			return "", nil, fmt.Errorf("%w: %v", ErrNoName, err)
		}
		if len(products) == MaxStationProducts {
			return "", nil, fmt.Errorf("%w: more than %d products", ErrNoName, MaxStationProducts)
		}
		products = append(products, string(p))
	}
	if len(products) == 0 {
		return "", nil, fmt.Errorf("%w: a station with no products", ErrNoName)
	}
	return name, products, nil
}

// Station returns the station name and products of a station certificate.
// c is untrusted until its chain is verified. Errors wrap [ErrNoName].
func Station(c *x509.Certificate) (name string, products []string, err error) {
	san, err := sanOf(c)
	if err != nil {
		return "", nil, err
	}
	return ParseStation(san)
}

// MaxNameLen bounds station and product names: ub-common-name (RFC 5280,
// Appendix A.1), since both go into a subject commonName.
const MaxNameLen = 64

// MaxStationProducts bounds the products of one station.
const MaxStationProducts = 64

// checkName accepts 1 to MaxNameLen bytes of letters, digits, '.', '-' and
// '_', starting with a letter or digit: names that are safe in a subject,
// a file name, a log line and a URL path.
func checkName(what, s string) error {
	if len(s) == 0 {
		return refuse(ErrInvalidField, "empty %s", what)
	}
	if len(s) > MaxNameLen {
		return refuse(ErrTooLarge, "%s of %d bytes, at most %d", what, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			i > 0 && (c == '.' || c == '-' || c == '_')
		if !ok {
			if !utf8.ValidString(s) {
				return refuse(ErrInvalidField, "%s is not UTF-8", what)
			}
			return refuse(ErrInvalidField, "%s %q: use letters, digits, '.', '-', '_'", what, s)
		}
	}
	return nil
}
