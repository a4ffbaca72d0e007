package hsm

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// URI is a parsed PKCS#11 URI (RFC 7512). The path attributes select a
// library, slot, token and object; the query attributes say how to load the
// module and where to find the PIN. Text values are held decoded; an empty
// value means the attribute is absent.
//
// URIs name code to load (module-path) and where secrets live (pin-source):
// take them from configuration you trust, never from the network.
type URI struct {
	// Token attributes, matched against CK_TOKEN_INFO (RFC 7512, 2.3).
	Token        string // "token": the token label
	Manufacturer string // "manufacturer": manufacturerID
	Serial       string // "serial": serialNumber
	Model        string // "model": model

	// Library attributes, matched against CK_INFO.
	LibraryManufacturer string   // "library-manufacturer": manufacturerID
	LibraryDescription  string   // "library-description"
	LibraryVersion      *Version // "library-version": "M" or "M.N"

	// Slot attributes, matched against CK_SLOT_INFO and the slot ID.
	SlotDescription  string // "slot-description"
	SlotManufacturer string // "slot-manufacturer"
	SlotID           *uint  // "slot-id"

	// Object attributes.
	Object string // "object": CKA_LABEL
	Type   string // "type": "public", "private", "cert", "secret-key" or "data"
	ID     []byte // "id": CKA_ID, any bytes

	// Query attributes (RFC 7512, 2.4).
	ModulePath string // "module-path": absolute path of the PKCS#11 library
	ModuleName string // "module-name": library name without directory or suffix
	PINSource  string // "pin-source": where the PIN is, see [ResolvePINSource]

	// MaxSessions ("max-sessions", a rootline extension, 1 to 1024) bounds
	// the sessions a Module opens on the token. 0: the default, see
	// [Options].
	MaxSessions int
}

// Version is a library version, CK_VERSION.
type Version struct{ Major, Minor uint8 }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Object types of the "type" attribute (RFC 7512, 2.3), mapped to CKO_.
var uriTypes = map[string]bool{"public": true, "private": true, "cert": true, "secret-key": true, "data": true}

// Bounds on what ParseURI accepts. Text attributes are compared with
// fixed-length fields of CK_INFO, CK_SLOT_INFO and CK_TOKEN_INFO (16 to 64
// bytes); longer values are accepted, as RFC 7512's own examples have them,
// and match nothing.
const (
	maxURILen        = 8192
	maxTextLen       = 256
	maxIDLen         = 256
	maxPathLen       = 4096
	maxPINSourceLen  = 1024
	maxMaxSessions   = 1024
	maxDecimalDigits = 20
	maxObjectLen     = maxTextLen
	maxLabelLen      = 32 // CK_TOKEN_INFO.label, for InitToken
)

// pathAttrs lists the path attributes in the order String writes them.
var pathAttrs = []string{
	"token", "manufacturer", "serial", "model",
	"library-manufacturer", "library-description", "library-version",
	"slot-description", "slot-manufacturer", "slot-id",
	"object", "type", "id",
}

var queryAttrs = []string{"module-name", "module-path", "pin-source", "max-sessions"}

// ParseURI parses an untrusted PKCS#11 URI strictly, following the grammar
// of RFC 7512, section 2.3:
//
//	pk11-URI   = "pkcs11:" pk11-path [ "?" pk11-query ]
//	pk11-path  = [ pk11-pattr *(";" pk11-pattr) ]
//	pk11-query = [ pk11-qattr *("&" pk11-qattr) ]
//
// Beyond the grammar it refuses, with an error wrapping [ErrBadURI]: an
// attribute given twice; an attribute it does not know, vendor ones ("x-…")
// included, since it could not honour them (RFC 7512, 2.5, would have such
// a URI match nothing); upper-case attribute names; pin-value (a PIN must
// never be written in a URI, which ends up in configuration files, shell
// history and process listings; use pin-source); a relative module-path;
// text that is not UTF-8 or holds a NUL; a value longer than 256 bytes (a
// module-path than 4096, a URI than 8192). An empty value is the same as
// no attribute.
func ParseURI(s string) (*URI, error) {
	u, err := parseURI(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadURI, err)
	}
	return u, nil
}

func parseURI(s string) (*URI, error) {
	if len(s) > maxURILen {
		return nil, fmt.Errorf("longer than %d bytes", maxURILen)
	}
	// The scheme name is case-insensitive (RFC 3986, 3.1).
	const scheme = "pkcs11:"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, fmt.Errorf("does not start with %q", scheme)
	}
	rest := s[len(scheme):]
	path, query, hasQuery := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	if path != "" {
		for attr := range strings.SplitSeq(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("path attribute %q is not name=value", clip(attr))
			}
			if seen[name] {
				return nil, fmt.Errorf("attribute %q given twice", clip(name))
			}
			seen[name] = true
			val, err := pctDecode(raw, isPathChar)
			if err != nil {
				return nil, fmt.Errorf("attribute %q: %v", clip(name), err)
			}
			if err := u.setPath(name, val); err != nil {
				return nil, err
			}
		}
	}
	if hasQuery && query != "" {
		for attr := range strings.SplitSeq(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("query attribute %q is not name=value", clip(attr))
			}
			if seen[name] {
				return nil, fmt.Errorf("attribute %q given twice", clip(name))
			}
			seen[name] = true
			val, err := pctDecode(raw, isQueryChar)
			if err != nil {
				return nil, fmt.Errorf("attribute %q: %v", clip(name), err)
			}
			if err := u.setQuery(name, val); err != nil {
				return nil, err
			}
		}
	}
	return u, nil
}

// clip bounds untrusted text quoted in an error message.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func (u *URI) setPath(name string, val []byte) error {
	text := func(max int) (string, error) {
		if len(val) > max {
			return "", fmt.Errorf("attribute %q is longer than %d bytes", name, max)
		}
		if !utf8.Valid(val) || bytes.IndexByte(val, 0) >= 0 {
			return "", fmt.Errorf("attribute %q is not UTF-8 text without NUL", name)
		}
		return string(val), nil
	}
	var err error
	switch name {
	case "token":
		u.Token, err = text(maxTextLen)
	case "manufacturer":
		u.Manufacturer, err = text(maxTextLen)
	case "serial":
		u.Serial, err = text(maxTextLen)
	case "model":
		u.Model, err = text(maxTextLen)
	case "library-manufacturer":
		u.LibraryManufacturer, err = text(maxTextLen)
	case "library-description":
		u.LibraryDescription, err = text(maxTextLen)
	case "library-version":
		// "M" means M.0; both numbers are one byte (RFC 7512, 2.3).
		maj, min, hasMinor := strings.Cut(string(val), ".")
		v := &Version{}
		if v.Major, err = parseByte(maj); err == nil && hasMinor {
			v.Minor, err = parseByte(min)
		}
		if err != nil {
			return fmt.Errorf("library-version %q is not M or M.N", clip(string(val)))
		}
		u.LibraryVersion = v
	case "slot-description":
		u.SlotDescription, err = text(maxTextLen)
	case "slot-manufacturer":
		u.SlotManufacturer, err = text(maxTextLen)
	case "slot-id":
		n, perr := parseDecimal(string(val), 64)
		if perr != nil || uint64(uint(n)) != n {
			return fmt.Errorf("slot-id %q is not a decimal slot number", clip(string(val)))
		}
		id := uint(n)
		u.SlotID = &id
	case "object":
		u.Object, err = text(maxTextLen)
	case "type":
		t := string(val)
		if t != "" && !uriTypes[t] {
			return fmt.Errorf("type %q is not public, private, cert, secret-key or data", clip(t))
		}
		u.Type = t
	case "id":
		if len(val) > maxIDLen {
			return fmt.Errorf("id is longer than %d bytes", maxIDLen)
		}
		if len(val) > 0 {
			u.ID = val
		}
	case "pin-value":
		return fmt.Errorf("pin-value is refused: a PIN never goes in a URI; use pin-source")
	default:
		if isQueryAttr(name) {
			return fmt.Errorf("attribute %q belongs in the query (after '?')", clip(name))
		}
		return fmt.Errorf("unknown path attribute %q", clip(name))
	}
	return err
}

func (u *URI) setQuery(name string, val []byte) error {
	if !utf8.Valid(val) || bytes.IndexByte(val, 0) >= 0 {
		return fmt.Errorf("attribute %q is not UTF-8 text without NUL", name)
	}
	s := string(val)
	switch name {
	case "module-path":
		if len(s) > maxPathLen {
			return fmt.Errorf("module-path is longer than %d bytes", maxPathLen)
		}
		// An empty module-path is outside the grammar (1*pk11-qchar); a
		// relative one would load whatever library the working directory
		// holds.
		if !filepath.IsAbs(s) {
			return fmt.Errorf("module-path %q is not an absolute path", clip(s))
		}
		u.ModulePath = s
	case "module-name":
		if s == "" || len(s) > 255 || strings.ContainsAny(s, `/\`) {
			return fmt.Errorf("module-name %q is not a library name without directory", clip(s))
		}
		u.ModuleName = s
	case "pin-source":
		if len(s) > maxPINSourceLen {
			return fmt.Errorf("pin-source is longer than %d bytes", maxPINSourceLen)
		}
		if s != "" {
			if _, _, err := splitPINSource(s); err != nil {
				return err
			}
		}
		u.PINSource = s
	case "max-sessions":
		n, err := parseDecimal(s, 16)
		if err != nil || n < 1 || n > maxMaxSessions {
			return fmt.Errorf("max-sessions %q is not a number from 1 to %d", clip(s), maxMaxSessions)
		}
		u.MaxSessions = int(n)
	case "pin-value":
		return fmt.Errorf("pin-value is refused: a PIN never goes in a URI; use pin-source")
	default:
		if slices.Contains(pathAttrs, name) {
			return fmt.Errorf("attribute %q belongs in the path (before '?')", clip(name))
		}
		return fmt.Errorf("unknown query attribute %q", clip(name))
	}
	return nil
}

func isQueryAttr(name string) bool { return slices.Contains(queryAttrs, name) }

// parseDecimal parses 1*DIGIT into a number of bitSize bits.
func parseDecimal(s string, bitSize int) (uint64, error) {
	if s == "" || len(s) > maxDecimalDigits {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(s, 10, bitSize)
}

func parseByte(s string) (uint8, error) {
	n, err := parseDecimal(s, 8)
	return uint8(n), err
}

// Character classes of RFC 7512, 2.3:
//
//	pk11-res-avail       = ":" / "[" / "]" / "@" / "!" / "$" /
//	                       "'" / "(" / ")" / "*" / "+" / "," / "="
//	pk11-path-res-avail  = pk11-res-avail / "&"
//	pk11-query-res-avail = pk11-res-avail / "/" / "?" / "|"
//	pk11-pchar           = unreserved / pk11-path-res-avail / pct-encoded
//	pk11-qchar           = unreserved / pk11-query-res-avail / pct-encoded
//
// with unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986, 2.3).
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isResAvail(c byte) bool { return strings.IndexByte(":[]@!$'()*+,=", c) >= 0 }

func isPathChar(c byte) bool { return isUnreserved(c) || isResAvail(c) || c == '&' }

func isQueryChar(c byte) bool {
	return isUnreserved(c) || isResAvail(c) || c == '/' || c == '?' || c == '|'
}

// pctDecode checks that every byte of s is allowed by ok or starts a
// pct-encoded triplet, and decodes the triplets (RFC 3986, 2.1).
func pctDecode(s string, ok func(byte) bool) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return nil, fmt.Errorf("bad percent-encoding at byte %d", i)
			}
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		case ok(c):
			out = append(out, c)
		default:
			return nil, fmt.Errorf("character %q must be percent-encoded", c)
		}
	}
	return out, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// pctEncode writes b, percent-encoding (upper-case hex, RFC 3986, 2.1) each
// byte that ok does not allow literally, and every byte when all is set.
func pctEncode(sb *strings.Builder, b []byte, ok func(byte) bool, all bool) {
	const hexdigits = "0123456789ABCDEF"
	for _, c := range b {
		if !all && ok(c) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hexdigits[c>>4])
		sb.WriteByte(hexdigits[c&15])
	}
}

// String returns u in a canonical form: attributes in a fixed order,
// percent-encoding only where RFC 7512 requires it, and the id attribute
// fully percent-encoded, as it is binary.
// ParseURI(u.String()) gives back u.
func (u *URI) String() string {
	var sb strings.Builder
	sb.WriteString("pkcs11:")
	n := 0
	add := func(name string, val []byte, all bool) {
		if len(val) == 0 {
			return
		}
		if n > 0 {
			sb.WriteByte(';')
		}
		n++
		sb.WriteString(name)
		sb.WriteByte('=')
		pctEncode(&sb, val, isPathChar, all)
	}
	for _, name := range pathAttrs {
		switch name {
		case "token":
			add(name, []byte(u.Token), false)
		case "manufacturer":
			add(name, []byte(u.Manufacturer), false)
		case "serial":
			add(name, []byte(u.Serial), false)
		case "model":
			add(name, []byte(u.Model), false)
		case "library-manufacturer":
			add(name, []byte(u.LibraryManufacturer), false)
		case "library-description":
			add(name, []byte(u.LibraryDescription), false)
		case "library-version":
			if u.LibraryVersion != nil {
				add(name, []byte(u.LibraryVersion.String()), false)
			}
		case "slot-description":
			add(name, []byte(u.SlotDescription), false)
		case "slot-manufacturer":
			add(name, []byte(u.SlotManufacturer), false)
		case "slot-id":
			if u.SlotID != nil {
				add(name, strconv.AppendUint(nil, uint64(*u.SlotID), 10), false)
			}
		case "object":
			add(name, []byte(u.Object), false)
		case "type":
			add(name, []byte(u.Type), false)
		case "id":
			add(name, u.ID, true)
		}
	}
	q := 0
	qadd := func(name, val string) {
		if val == "" {
			return
		}
		if q == 0 {
			sb.WriteByte('?')
		} else {
			sb.WriteByte('&')
		}
		q++
		sb.WriteString(name)
		sb.WriteByte('=')
		pctEncode(&sb, []byte(val), isQueryChar, false)
	}
	qadd("module-name", u.ModuleName)
	qadd("module-path", u.ModulePath)
	qadd("pin-source", u.PINSource)
	if u.MaxSessions > 0 {
		qadd("max-sessions", strconv.Itoa(u.MaxSessions))
	}
	return sb.String()
}

// Clone returns a deep copy of u.
func (u *URI) Clone() *URI {
	c := *u
	c.ID = bytes.Clone(u.ID)
	if u.LibraryVersion != nil {
		v := *u.LibraryVersion
		c.LibraryVersion = &v
	}
	if u.SlotID != nil {
		id := *u.SlotID
		c.SlotID = &id
	}
	return &c
}

// namesKey reports whether the URI names an object: by label, id or both.
func (u *URI) namesKey() bool { return u.Object != "" || len(u.ID) > 0 }
