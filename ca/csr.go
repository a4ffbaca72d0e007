package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/rootline/rootline/pluton/dice"
)

// Bounds on untrusted input.
const (
	// MaxCSRSize bounds the DER CSR. A P-384 CSR with a DiceTcbInfo of a
	// few FWIDs is under 1 KiB.
	MaxCSRSize = 16 << 10
	// MaxCSRExtensions bounds the extensions a CSR may request.
	MaxCSRExtensions = 32
	// MinRSABits and MaxRSABits bound an RSA key's modulus.
	MinRSABits, MaxRSABits = 2048, 4096
)

// Object identifiers this file reads.
var (
	oidPublicKeyECDSA   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}     // RFC 5480, §2.1.1
	oidPublicKeyEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}             // RFC 8410, §3
	oidPublicKeyRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1} // RFC 3279, §2.3.1
	oidCurveP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}  // RFC 5480, §2.1.1.1
	oidCurveP384        = asn1.ObjectIdentifier{1, 3, 132, 0, 34}

	oidExtSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// OIDDiceTcbInfo is tcg-dice-TcbInfo, 2.23.133.5.4.1 (TCG DICE Attestation
// Architecture v1.1, §6.1.1), copied from a chip's CSR into its IDevID.
// Treat it as a constant.
var OIDDiceTcbInfo = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 1}

// The package reads its own copies of the exported OIDs, so that a caller
// who changes one changes nothing here.
func oidDiceTcbInfo() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{2, 23, 133, 5, 4, 1} }
func oidDiceUEID() asn1.ObjectIdentifier    { return asn1.ObjectIdentifier{2, 23, 133, 5, 4, 4} }

// OIDDiceUEID is tcg-dice-Ueid, 2.23.133.5.4.4. A CSR that carries it must
// carry the UEID of the request. Treat it as a constant.
var OIDDiceUEID = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 4}

// ParseCSR reads an untrusted DER PKCS#10 request and checks it as every
// profile requires, in this order:
//
//  1. its size (at most [MaxCSRSize] bytes: [ErrTooLarge]);
//  2. its structure (RFC 2986, §4: [ErrMalformedCSR]);
//  3. its key: ECDSA on P-256 or P-384 (named curves only, RFC 5480,
//     §2.1.1), Ed25519 (RFC 8410), or RSA of [MinRSABits] to [MaxRSABits]
//     bits ([ErrKeyType]). The key is judged from the
//     SubjectPublicKeyInfo's own OIDs before crypto/x509 reads it, so an
//     unknown curve is a key-type error, not a parse error;
//  4. its signature, with the key it carries: the proof of possession
//     (RFC 2986, §3), by a hash no weaker than SHA-256
//     ([ErrBadCSRSignature]);
//  5. the extensions it requests (PKCS#9 extensionRequest, RFC 2985,
//     §5.4.2): see [ErrForbiddenExtension].
//
// Errors are [*RequestError] values.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) > MaxCSRSize {
		return nil, refuse(ErrTooLarge, "CSR of %d bytes, at most %d", len(der), MaxCSRSize)
	}
	if len(der) == 0 {
		return nil, refuse(ErrMalformedCSR, "empty CSR")
	}
	alg, params, err := csrKeyAlgorithm(der)
	if err != nil {
		return nil, err
	}
	if err := checkKeyAlgorithm(alg, params); err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, refuse(ErrMalformedCSR, "%v", err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	switch csr.SignatureAlgorithm {
	case x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512, x509.PureEd25519,
		x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
	default:
		return nil, refuse(ErrBadCSRSignature, "signature algorithm %v is not accepted", csr.SignatureAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refuse(ErrBadCSRSignature, "%v", err)
	}
	if err := checkCSRExtensions(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

// CheckedCSR is a certificate request that [CheckCSR] accepted. Its
// fields are unexported and only this package makes one, so holding a
// *CheckedCSR means that [ParseCSR]'s checks, the proof of possession
// among them, passed in this process for exactly the bytes it holds.
// [IssueRequest.CheckedCSR] passes it to a backend, whose [Check] then
// does not verify the signature again. The zero value holds no request.
type CheckedCSR struct {
	der []byte                   // a private copy of the request
	csr *x509.CertificateRequest // parsed from der
}

// CheckCSR is [ParseCSR] (with the same errors) for a request that will be
// passed on to [Issuer.Issue] in [IssueRequest.CheckedCSR]. It parses a
// private copy of der, so that later changes to der change nothing.
func CheckCSR(der []byte) (*CheckedCSR, error) {
	if len(der) > MaxCSRSize {
		return nil, refuse(ErrTooLarge, "CSR of %d bytes, at most %d", len(der), MaxCSRSize)
	}
	own := bytes.Clone(der)
	csr, err := ParseCSR(own)
	if err != nil {
		return nil, err
	}
	return &CheckedCSR{der: own, csr: csr}, nil
}

// PublicKeyInfo returns a copy of the DER SubjectPublicKeyInfo of the
// request: the key it proved possession of.
func (c *CheckedCSR) PublicKeyInfo() []byte {
	if c == nil || c.csr == nil {
		return nil
	}
	return bytes.Clone(c.csr.RawSubjectPublicKeyInfo)
}

// checked returns the parsed request if c holds exactly der, or nil.
func (c *CheckedCSR) checked(der []byte) *x509.CertificateRequest {
	if c == nil || c.csr == nil || !bytes.Equal(c.der, der) {
		return nil
	}
	return c.csr
}

// csrKeyAlgorithm walks an untrusted CSR down to its SubjectPublicKeyInfo
// (RFC 2986, §4.1; RFC 5280, §4.1.2.7) and returns the algorithm OID and
// its parameters (the curve OID for id-ecPublicKey).
//
//	CertificationRequest ::= SEQUENCE {
//	    certificationRequestInfo CertificationRequestInfo,
//	    signatureAlgorithm AlgorithmIdentifier, signature BIT STRING }
//	CertificationRequestInfo ::= SEQUENCE {
//	    version INTEGER { v1(0) }, subject Name,
//	    subjectPKInfo SubjectPublicKeyInfo, attributes [0] Attributes }
//	SubjectPublicKeyInfo ::= SEQUENCE {
//	    algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
//	AlgorithmIdentifier ::= SEQUENCE {
//	    algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }
func csrKeyAlgorithm(der []byte) (alg asn1.ObjectIdentifier, params cryptobyte.String, err error) {
	bad := func(what string) error { return refuse(ErrMalformedCSR, "%s", what) }
	in := cryptobyte.String(der)
	var req, info, spki, algID cryptobyte.String
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, nil, bad("not a DER SEQUENCE")
	}
	if !req.ReadASN1(&info, cbasn1.SEQUENCE) {
		return nil, nil, bad("no certificationRequestInfo")
	}
	var version int64
	if !info.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || version != 0 {
		return nil, nil, bad("version is not v1(0)")
	}
	if !info.SkipASN1(cbasn1.SEQUENCE) { // subject Name
		return nil, nil, bad("no subject")
	}
	if !info.ReadASN1(&spki, cbasn1.SEQUENCE) || !spki.ReadASN1(&algID, cbasn1.SEQUENCE) ||
		!algID.ReadASN1ObjectIdentifier(&alg) {
		return nil, nil, bad("no subjectPKInfo")
	}
	return alg, algID, nil
}

// checkKeyAlgorithm judges a key by its untrusted algorithm OID and
// parameters.
func checkKeyAlgorithm(alg asn1.ObjectIdentifier, params cryptobyte.String) error {
	switch {
	case alg.Equal(oidPublicKeyECDSA):
		// ECParameters ::= CHOICE { namedCurve OBJECT IDENTIFIER, ... }
		// (RFC 5480, §2.1.1): implicitCurve and specifiedCurve MUST NOT
		// be used.
		var curve asn1.ObjectIdentifier
		if !params.ReadASN1ObjectIdentifier(&curve) || !params.Empty() {
			return refuse(ErrKeyType, "ECDSA key without a named curve")
		}
		if !curve.Equal(oidCurveP256) && !curve.Equal(oidCurveP384) {
			return refuse(ErrKeyType, "ECDSA curve %v (want P-256 or P-384)", curve)
		}
		return nil
	case alg.Equal(oidPublicKeyEd25519), alg.Equal(oidPublicKeyRSA):
		return nil // the size of an RSA key is checked once parsed
	}
	return refuse(ErrKeyType, "public key algorithm %v (want ECDSA P-256/P-384, Ed25519 or RSA)", alg)
}

// checkPublicKey judges a parsed key: type, curve and size.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return refuse(ErrKeyType, "ECDSA curve %s (want P-256 or P-384)", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits || n > MaxRSABits {
			return refuse(ErrKeyType, "RSA-%d (want %d to %d bits)", n, MinRSABits, MaxRSABits)
		}
		return nil
	}
	return refuse(ErrKeyType, "public key of type %T", pub)
}

// checkCSRExtensions refuses what no profile grants: a CA certificate, any
// subject alternative name (profiles set their own names; a requested
// otherName could claim another device's HardwareModuleName), name
// constraints, an unknown critical extension, a duplicated extension, a
// malformed DiceTcbInfo or tcg-dice-Ueid. Extensions a profile merely
// sets itself (key usage, extended key usage, key identifiers) are
// ignored, not copied.
func checkCSRExtensions(csr *x509.CertificateRequest) error {
	if n := len(csr.Extensions); n > MaxCSRExtensions {
		return refuse(ErrTooLarge, "%d requested extensions, at most %d", n, MaxCSRExtensions)
	}
	for i, e := range csr.Extensions {
		for _, f := range csr.Extensions[:i] {
			if e.Id.Equal(f.Id) {
				// RFC 5280, §4.2: "A certificate MUST NOT include more than
				// one instance of a particular extension."
				return refuse(ErrForbiddenExtension, "extension %v requested twice", e.Id)
			}
		}
		switch {
		case e.Id.Equal(oidExtBasicConstraints):
			// BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE,
			//     pathLenConstraint INTEGER (0..MAX) OPTIONAL } (§4.2.1.9)
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			if rest, err := asn1.Unmarshal(e.Value, &bc); err != nil || len(rest) != 0 {
				return refuse(ErrForbiddenExtension, "malformed basicConstraints")
			}
			if bc.IsCA {
				return refuse(ErrForbiddenExtension, "basicConstraints cA TRUE: a CA certificate is never issued from a CSR")
			}
		case e.Id.Equal(oidExtKeyUsage):
			// KeyUsage ::= BIT STRING { …, keyCertSign (5), cRLSign (6), … }
			// (§4.2.1.3)
			var bits asn1.BitString
			if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) != 0 {
				return refuse(ErrForbiddenExtension, "malformed keyUsage")
			}
			if bits.At(5) == 1 || bits.At(6) == 1 {
				return refuse(ErrForbiddenExtension, "keyUsage keyCertSign or cRLSign: a CA certificate is never issued from a CSR")
			}
		case e.Id.Equal(oidExtSubjectAltName):
			what := "subject alternative names"
			if hasOtherName(e.Value) {
				what = "an otherName subject alternative name"
			}
			return refuse(ErrForbiddenExtension, "the CSR asks for %s; each profile sets its own", what)
		case e.Id.Equal(oidExtNameConstraints):
			return refuse(ErrForbiddenExtension, "nameConstraints: a CA certificate is never issued from a CSR")
		case e.Id.Equal(oidDiceTcbInfo()):
			if _, err := dice.ParseTcbInfo(e.Value); err != nil {
				return refuse(ErrForbiddenExtension, "DiceTcbInfo: %v", err)
			}
		case e.Id.Equal(oidDiceUEID()):
			if _, err := parseTcgUEID(e.Value); err != nil {
				return refuse(ErrForbiddenExtension, "tcg-dice-Ueid: %v", err)
			}
		case e.Id.Equal(oidExtSubjectKeyID), e.Id.Equal(oidExtExtKeyUsage):
			// Set by the profile; the request's are ignored.
		default:
			if e.Critical {
				return refuse(ErrForbiddenExtension, "unknown critical extension %v", e.Id)
			}
		}
	}
	return nil
}

// hasOtherName reports whether an untrusted GeneralNames value holds an
// otherName ([0], RFC 5280, §4.2.1.6). It is only used to word an error.
func hasOtherName(san []byte) bool {
	in := cryptobyte.String(san)
	var names cryptobyte.String
	if !in.ReadASN1(&names, cbasn1.SEQUENCE) {
		return false
	}
	for !names.Empty() {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&gn, &tag) {
			return false
		}
		if tag == cbasn1.Tag(0).ContextSpecific().Constructed() {
			return true
		}
	}
	return false
}

// parseTcgUEID reads an untrusted TcgUeid ::= SEQUENCE { ueid OCTET STRING }
// (TCG DICE Attestation Architecture v1.1, §6.1.2).
func parseTcgUEID(v []byte) ([]byte, error) {
	in := cryptobyte.String(v)
	var seq, ueid cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1(&ueid, cbasn1.OCTET_STRING) || !seq.Empty() {
		return nil, fmt.Errorf("not a TcgUeid SEQUENCE { OCTET STRING }")
	}
	if len(ueid) == 0 || len(ueid) > dice.MaxUEIDSize {
		return nil, fmt.Errorf("UEID of %d bytes", len(ueid))
	}
	return bytes.Clone(ueid), nil
}

// csrExtension returns the value of the CSR's extension id, or nil.
func csrExtension(csr *x509.CertificateRequest, id asn1.ObjectIdentifier) []byte {
	for _, e := range csr.Extensions {
		if e.Id.Equal(id) {
			return e.Value
		}
	}
	return nil
}

// MaxPublicKeySize bounds a bare DER SubjectPublicKeyInfo
// ([IssueRequest.PublicKey]); an RSA-4096 key takes 550 bytes.
const MaxPublicKeySize = 2048

// ParsePublicKey parses an untrusted DER SubjectPublicKeyInfo (RFC 5280,
// §4.1.2.7) with the checks [ParseCSR] makes of a CSR's key: its size (at
// most [MaxPublicKeySize] bytes: [ErrTooLarge]), its algorithm and curve
// judged from the OIDs before parsing, then the parsed key's type and size
// ([ErrKeyType]); malformed input is [ErrMalformedCSR]. It is the key of
// an [ProfileIDevIDInjected] request, which has no CSR.
func ParsePublicKey(der []byte) (crypto.PublicKey, error) {
	if len(der) > MaxPublicKeySize {
		return nil, refuse(ErrTooLarge, "public key of %d bytes, at most %d", len(der), MaxPublicKeySize)
	}
	in := cryptobyte.String(der)
	var spki, algID cryptobyte.String
	var alg asn1.ObjectIdentifier
	if !in.ReadASN1(&spki, cbasn1.SEQUENCE) || !in.Empty() ||
		!spki.ReadASN1(&algID, cbasn1.SEQUENCE) || !algID.ReadASN1ObjectIdentifier(&alg) {
		return nil, refuse(ErrMalformedCSR, "not a DER SubjectPublicKeyInfo")
	}
	if err := checkKeyAlgorithm(alg, algID); err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, refuse(ErrMalformedCSR, "public key: %v", err)
	}
	if err := checkPublicKey(k); err != nil {
		return nil, err
	}
	return k, nil
}

// publicKeyAlgorithm names the x509 algorithm of a key checkPublicKey
// accepted.
func publicKeyAlgorithm(k crypto.PublicKey) x509.PublicKeyAlgorithm {
	switch k.(type) {
	case *ecdsa.PublicKey:
		return x509.ECDSA
	case ed25519.PublicKey:
		return x509.Ed25519
	case *rsa.PublicKey:
		return x509.RSA
	}
	return x509.UnknownPublicKeyAlgorithm
}
