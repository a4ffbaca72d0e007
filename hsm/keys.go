package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"fmt"
)

// CKA_EC_PARAMS values: the DER encoding of the curve's name, an OBJECT
// IDENTIFIER (PKCS#11 v3.0 mechanisms, EC and Edwards key objects;
// RFC 5480, 2.1.1.1; RFC 8410, 3).
var (
	paramsP256    = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // 1.2.840.10045.3.1.7
	paramsP384    = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}                   // 1.3.132.0.34
	paramsEd25519 = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}                               // 1.3.101.112
	// PKCS#11 v3.0 also allows the curve name as a PrintableString.
	paramsEd25519Name = append([]byte{0x13, 0x0c}, "edwards25519"...)
)

// Key types (CKK_) and the EdDSA mechanisms of PKCS#11 v3.0, which
// github.com/miekg/pkcs11 v1.1.2 does not define.
const (
	ckkEC                   = 0x003
	ckkECEdwards            = 0x040
	ckmECEdwardsKeyPairGen  = 0x1055
	ckmEdDSA                = 0x1057
	ckmECKeyPairGen         = 0x1040
	ckmECDSA                = 0x1041
	ckrOperationActive      = 0x090
	ckrAttributeTypeInvalid = 0x012
)

func (a Algorithm) ecParams() []byte {
	switch a {
	case P256:
		return paramsP256
	case P384:
		return paramsP384
	case Ed25519:
		return paramsEd25519
	}
	return nil
}

func (a Algorithm) keyType() uint {
	if a == Ed25519 {
		return ckkECEdwards
	}
	return ckkEC
}

// mechanisms returns the key-pair generation and signature mechanisms.
func (a Algorithm) mechanisms() (gen, sign uint) {
	if a == Ed25519 {
		return ckmECEdwardsKeyPairGen, ckmEdDSA
	}
	return ckmECKeyPairGen, ckmECDSA
}

// coordSize is the byte length of a field element (and so of r and s).
func (a Algorithm) coordSize() int {
	switch a {
	case P256:
		return 32
	case P384:
		return 48
	}
	return 0
}

func (a Algorithm) curve() elliptic.Curve {
	switch a {
	case P256:
		return elliptic.P256()
	case P384:
		return elliptic.P384()
	}
	return nil
}

// algorithmOf names the algorithm of a key from its untrusted CKA_KEY_TYPE
// and CKA_EC_PARAMS, or AlgorithmUnknown.
func algorithmOf(keyType uint, params []byte) Algorithm {
	switch {
	case keyType == ckkEC && bytes.Equal(params, paramsP256):
		return P256
	case keyType == ckkEC && bytes.Equal(params, paramsP384):
		return P384
	case keyType == ckkECEdwards && (bytes.Equal(params, paramsEd25519) || bytes.Equal(params, paramsEd25519Name)):
		return Ed25519
	}
	return AlgorithmUnknown
}

// parsePublicKey decodes an untrusted CKA_EC_POINT. PKCS#11 (EC public keys)
// makes it the DER encoding of an OCTET STRING holding the ANSI X9.62
// point (for EdDSA, 2.3.6, the RFC 8032 encoding); some tokens give the
// bare point, so both are taken, told apart by their exact lengths.
func parsePublicKey(a Algorithm, point []byte) (crypto.PublicKey, error) {
	var n int // the length of the bare encoding
	switch a {
	case P256, P384:
		n = 1 + 2*a.coordSize() // 0x04 || X || Y (SEC 1 v2, 2.3.3)
	case Ed25519:
		n = ed25519.PublicKeySize
	default:
		return nil, fmt.Errorf("hsm: public key of unsupported algorithm %v", a)
	}
	// All the lengths here are below 128, so the DER header is two bytes:
	// tag 0x04 (OCTET STRING) and the short-form length (X.690, 8.1.3.4).
	switch {
	case len(point) == n+2 && point[0] == 0x04 && int(point[1]) == n:
		point = point[2:]
	case len(point) == n:
	default:
		return nil, fmt.Errorf("hsm: CKA_EC_POINT of %d bytes is not a %v public key", len(point), a)
	}
	if a == Ed25519 {
		return ed25519.PublicKey(bytes.Clone(point)), nil
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(a.curve(), point)
	if err != nil {
		return nil, fmt.Errorf("hsm: CKA_EC_POINT: %w", err)
	}
	return pub, nil
}

// ecdsaRawToDER turns the signature a token returns for CKM_ECDSA, r || s
// with each value as a big-endian octet string of the length of the group
// order (PKCS#11 v3.0 mechanisms, ECDSA), into the ASN.1 DER encoding that
// crypto.Signer callers and X.509 expect (RFC 3279, 2.2.3):
//
//	Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }
func ecdsaRawToDER(raw []byte, size int) ([]byte, error) {
	if size <= 0 || len(raw) != 2*size {
		return nil, fmt.Errorf("hsm: ECDSA signature of %d bytes, want %d", len(raw), 2*size)
	}
	r, s := derInteger(raw[:size]), derInteger(raw[size:])
	if r == nil || s == nil {
		// r and s are in [1, n-1] (FIPS 186-5, 6.4.1); zero is no signature.
		return nil, errors.New("hsm: ECDSA signature has a zero value")
	}
	body := len(r) + len(s)
	out := make([]byte, 0, 4+body)
	out = append(out, 0x30) // SEQUENCE
	out = appendDERLength(out, body)
	out = append(out, r...)
	return append(out, s...), nil
}

// derInteger encodes a non-negative big-endian integer as a DER INTEGER:
// minimal length, with a 0x00 prefix when the top bit is set so it does not
// read as negative (X.690, 8.3.2 and 8.3.3). It returns nil for zero.
func derInteger(v []byte) []byte {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) == 0 {
		return nil
	}
	pad := 0
	if v[0]&0x80 != 0 {
		pad = 1
	}
	out := make([]byte, 0, 3+pad+len(v))
	out = append(out, 0x02) // INTEGER
	out = appendDERLength(out, pad+len(v))
	if pad == 1 {
		out = append(out, 0)
	}
	return append(out, v...)
}

// appendDERLength appends a definite length (X.690, 8.1.3): short form
// below 128, else long form with the fewest bytes.
func appendDERLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n <= 0xff:
		return append(b, 0x81, byte(n))
	}
	return append(b, 0x82, byte(n>>8), byte(n))
}
