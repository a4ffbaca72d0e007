package pluton

// A minimal, strict reader and writer of the few ASN.1 DER structures this
// package handles: ECDSA-Sig-Value (SEC 1 v2, §C.8; RFC 5480, §2.2.3 / RFC
// 3279, §2.2.3) and SubjectPublicKeyInfo (RFC 5280, §4.1.2.7). Everything
// that is valid BER but not DER is refused (ITU-T X.690, §10.1 definite and
// minimal lengths; §8.3.2 minimal INTEGER contents), so that every accepted
// input has exactly one encoding.

const (
	tagInteger   = 0x02
	tagBitString = 0x03
	tagOID       = 0x06
	tagSequence  = 0x30
)

// readElement reads one DER element with the given one-byte tag from the
// front of b. It returns the element's contents and what follows it; reason
// is empty on success and otherwise says what was wrong.
func readElement(b []byte, tag byte) (contents, rest []byte, reason string) {
	if len(b) < 2 {
		return nil, nil, "truncated DER"
	}
	if b[0] != tag {
		return nil, nil, "unexpected DER tag"
	}
	n := int(b[1])
	b = b[2:]
	switch {
	case n < 0x80:
		// X.690, §8.1.3.4: short form.
	case n == 0x80:
		return nil, nil, "indefinite DER length (BER)"
	case n == 0x81:
		if len(b) < 1 {
			return nil, nil, "truncated DER"
		}
		n = int(b[0])
		if n < 0x80 {
			return nil, nil, "non-minimal DER length (BER)"
		}
		b = b[1:]
	case n == 0x82:
		if len(b) < 2 {
			return nil, nil, "truncated DER"
		}
		n = int(b[0])<<8 | int(b[1])
		if n < 0x100 {
			return nil, nil, "non-minimal DER length (BER)"
		}
		b = b[2:]
	default:
		// Nothing this package reads is longer than 65535 bytes.
		return nil, nil, "DER length too large"
	}
	if n > len(b) {
		return nil, nil, "truncated DER"
	}
	return b[:n], b[n:], ""
}

// readUnsignedInteger reads a DER INTEGER that must be non-negative and
// returns its magnitude, big-endian, without the sign octet (zero is
// returned as an empty slice).
func readUnsignedInteger(b []byte) (magnitude, rest []byte, reason string) {
	c, rest, reason := readElement(b, tagInteger)
	if reason != "" {
		return nil, nil, reason
	}
	switch {
	case len(c) == 0:
		return nil, nil, "empty DER INTEGER"
	case c[0]&0x80 != 0:
		return nil, nil, "negative DER INTEGER"
	case len(c) > 1 && c[0] == 0 && c[1]&0x80 == 0:
		// X.690, §8.3.2: the first nine bits must not all be zero.
		return nil, nil, "non-minimal DER INTEGER (BER)"
	}
	if c[0] == 0 {
		c = c[1:]
	}
	return c, rest, ""
}

// appendElement appends the DER encoding of an element with the given tag
// and contents (at most 65535 bytes).
func appendElement(b []byte, tag byte, contents []byte) []byte {
	b = append(b, tag)
	switch n := len(contents); {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x100:
		b = append(b, 0x81, byte(n))
	default:
		b = append(b, 0x82, byte(n>>8), byte(n))
	}
	return append(b, contents...)
}

// appendUnsignedInteger appends a non-negative integer, given big-endian
// with any number of leading zeros, as a minimal DER INTEGER.
func appendUnsignedInteger(b, v []byte) []byte {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	c := make([]byte, 0, len(v)+1)
	if len(v) == 0 || v[0]&0x80 != 0 {
		c = append(c, 0)
	}
	c = append(c, v...)
	return appendElement(b, tagInteger, c)
}
