package dice

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/rootline/rootline/pluton"
)

// ErrNoUEID: a certificate has no tcg-dice-Ueid extension.
var ErrNoUEID = errors.New("dice: certificate has no tcg-dice-Ueid extension")

// DICE certificates.
//
// The profile is the X.509 one of the Open Profile for DICE ("Certificate
// Details"), as open-dice builds it (src/boringssl_cert_op.c,
// src/mbedtls_ops.c; the certificates of its known answers are in
// testdata/known_test_values.json), with the TCG extensions in place of
// open-dice's own:
//
//   - serial number: the subject key's DICE ID ([PublicKeyID]), 20 bytes
//     with the top bit clear, so a positive INTEGER of at most 20 octets
//     (RFC 5280, §4.1.2.2);
//   - subject: "SERIALNUMBER=<ID>", one X520SerialNumber (2.5.4.5)
//     attribute, the ID in lower case hex, a PrintableString as in
//     open-dice's certificates; issuer: the issuer certificate's subject,
//     byte for byte (RFC 5280, §4.1.2.4), so the DeviceID's SERIALNUMBER
//     before provisioning, or whatever name the factory CA gave the DeviceID
//     key in its IDevID certificate after;
//   - validity: the Open Profile's values, for a device with no reliable
//     clock and a certificate that must not change from boot to boot:
//     notBefore 180322235959Z (UTCTime; 2018-03-22 23:59:59 UTC, the
//     publication date of the TCG DICE specification), notAfter
//     99991231235959Z, "no well-defined expiration date" (RFC 5280,
//     §4.1.2.5);
//   - subjectKeyIdentifier: the subject's ID; authorityKeyIdentifier: the
//     issuer certificate's subjectKeyIdentifier (its ID for a DICE issuer),
//     or for the self-signed DeviceID certificate its own ID;
//   - keyUsage (critical): keyCertSign for a layer that certifies the next
//     one, digitalSignature for the last; basicConstraints (critical):
//     cA, with pathLenConstraint when MaxPathLen ≥ 0;
//   - tcg-dice-TcbInfo (2.23.133.5.4.1), NOT critical, when the template has
//     a TcbInfo; tcg-dice-Ueid (2.23.133.5.4.4), not critical, when it has a
//     UEID.
//
// # Why DiceTcbInfo is not critical
//
// The TCG DICE Attestation Architecture recommends marking DiceTcbInfo
// critical (a SHOULD, as OpenTitan's ot_certs read it when it marked its
// own critical, lowRISC/opentitan#22541, and as the CCC interoperable RA-TLS
// notes quote it). But RFC 5280, §4.2, makes a verifier that does not know
// a critical extension reject the certificate, and the general-purpose
// ones do: OpenSSL's verify fails with "unhandled critical extension"
// (X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION) unless -ignore_critical, Go's
// x509.Certificate.Verify fails on UnhandledCriticalExtensions, mbedTLS
// too. rootline's chains must verify with both, so the extension is
// non-critical, as Caliptra's DPE emits it by default
// (chipsalliance/caliptra-sw#2021) and Project Cerberus always does. A
// DICE-aware verifier reads it either way ([TcbInfoFromCertificate] ignores
// the flag). What "critical" would have bought (a verifier that cannot read
// the measurements does not trust the key) is then the relying party's job:
// one that appraises measurements must require the extension itself
// (TcbInfoFromCertificate returns ErrNoTcbInfo), not count on path
// validation to refuse a certificate without it.

// notBefore is the notBefore of every DICE certificate (UTCTime
// 180322235959Z), as the Open Profile for DICE suggests and open-dice sets.
var notBefore = time.Date(2018, time.March, 22, 23, 59, 59, 0, time.UTC)

// notAfter is RFC 5280, §4.1.2.5's 99991231235959Z.
var notAfter = time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC)

// OIDUEID is tcg-dice-Ueid, 2.23.133.5.4.4, the extension that carries a
// device's UEID: TcgUeid ::= SEQUENCE { ueid OCTET STRING }. Treat it as a
// constant, like [OIDTcbInfo].
var OIDUEID = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 4}

func oidUEID() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{2, 23, 133, 5, 4, 4} }

// MaxUEIDSize bounds a UEID in a certificate. RFC 9711 (EAT), §4.2.1,
// allows 7 to 33 bytes; the bound here is looser, only against abuse.
const MaxUEIDSize = 64

// CertificateTemplate says what a layer's certificate certifies.
type CertificateTemplate struct {
	// Subject is the certified public key: the DeviceID key, or the next
	// layer's Alias key (the Public of a [KeyPair] result). Ed25519, ECDSA
	// P-256 or P-384. For [DeviceIDCertificate] it may be nil, meaning the
	// signer's own key, and must otherwise be that key.
	Subject crypto.PublicKey
	// Tcb describes the layer the key belongs to; nil for no DiceTcbInfo
	// extension (usual for the DeviceID certificate).
	Tcb *TcbInfo
	// IsCA is true if the key will certify the next layer's Alias key: the
	// certificate then says cA and keyCertSign, and otherwise
	// digitalSignature only.
	IsCA bool
	// MaxPathLen is the basicConstraints pathLenConstraint when IsCA: how
	// many more CA layers may follow this one (RFC 5280, §4.2.1.9). A
	// negative value leaves it out (no limit). The zero value allows only
	// leaf certificates below. Must be zero (or negative) when !IsCA.
	MaxPathLen int
	// UEID, when non-nil, goes into a tcg-dice-Ueid extension. Meant for
	// the DeviceID certificate; 1 to MaxUEIDSize bytes.
	UEID []byte
}

// DeviceIDCertificate makes the self-signed certificate of the DeviceID
// key (the local trust anchor before the chip is provisioned; afterwards
// the factory's IDevID certificate of the same key takes its place as the
// issuer of the first Alias certificate). deviceID signs it; t.Subject must
// be nil or deviceID's public key. Usually t.IsCA is true.
//
// The result is DER, deterministic apart from the signature (and wholly
// deterministic for Ed25519). Errors: a bad template wraps
// [pluton.ErrInvalidArgument]; an ML-DSA-65 key, or any key other than
// Ed25519 and ECDSA P-256/P-384, wraps [pluton.ErrUnsupportedAlgorithm]:
// crypto/x509 can neither encode an ML-DSA public key nor sign with one.
func DeviceIDCertificate(deviceID crypto.Signer, t *CertificateTemplate) ([]byte, error) {
	if deviceID == nil || t == nil {
		return nil, fmt.Errorf("dice: DeviceID certificate: nil signer or template: %w", pluton.ErrInvalidArgument)
	}
	pub := deviceID.Public()
	if err := x509Supported("DeviceID", pub); err != nil {
		return nil, err
	}
	if t.Subject != nil {
		eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !eq.Equal(t.Subject) {
			return nil, fmt.Errorf("dice: DeviceID certificate: template subject is not the signer's key: %w", pluton.ErrInvalidArgument)
		}
	}
	tmpl, err := t.x509Template(pub)
	if err != nil {
		return nil, err
	}
	// Self-signed: issuer = subject, and authorityKeyIdentifier = the
	// subject's own ID (x509.CreateCertificate keeps the template's AKI
	// when issuer and subject names are equal).
	tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, deviceID)
	if err != nil {
		return nil, fmt.Errorf("dice: DeviceID certificate: %w", err)
	}
	return der, nil
}

// AliasCertificate makes the certificate of the next layer's key
// (t.Subject), signed by the current layer's key issuer, whose own
// certificate is issuerCert: the DeviceID certificate (or IDevID
// certificate) for the first Alias key, the previous Alias certificate
// after. issuerCert must be a CA certificate (basicConstraints cA, and
// keyCertSign if it has a keyUsage) of issuer's public key.
//
// The result is DER, deterministic apart from the signature. Errors: a bad
// template or issuer certificate wraps [pluton.ErrInvalidArgument]; an
// ML-DSA-65 key (subject or issuer), or any key other than Ed25519 and
// ECDSA P-256/P-384, wraps [pluton.ErrUnsupportedAlgorithm].
func AliasCertificate(issuer crypto.Signer, issuerCert *x509.Certificate, t *CertificateTemplate) ([]byte, error) {
	if issuer == nil || issuerCert == nil || t == nil {
		return nil, fmt.Errorf("dice: alias certificate: nil issuer, issuer certificate or template: %w", pluton.ErrInvalidArgument)
	}
	if t.Subject == nil {
		return nil, fmt.Errorf("dice: alias certificate: template has no subject key: %w", pluton.ErrInvalidArgument)
	}
	if err := x509Supported("issuer", issuer.Public()); err != nil {
		return nil, err
	}
	if err := x509Supported("alias", t.Subject); err != nil {
		return nil, err
	}
	if !issuerCert.BasicConstraintsValid || !issuerCert.IsCA {
		return nil, fmt.Errorf("dice: alias certificate: issuer certificate is not a CA certificate: %w", pluton.ErrInvalidArgument)
	}
	if issuerCert.KeyUsage != 0 && issuerCert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("dice: alias certificate: issuer certificate lacks keyCertSign: %w", pluton.ErrInvalidArgument)
	}
	tmpl, err := t.x509Template(t.Subject)
	if err != nil {
		return nil, err
	}
	// x509.CreateCertificate takes the issuer name from issuerCert's
	// RawSubject and the authorityKeyIdentifier from its SubjectKeyId, and
	// refuses an issuer key that is not issuerCert's.
	if len(issuerCert.SubjectKeyId) == 0 {
		id, err := PublicKeyID(issuer.Public())
		if err != nil {
			return nil, fmt.Errorf("dice: alias certificate: issuer key: %w", err)
		}
		tmpl.AuthorityKeyId = id[:]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuerCert, t.Subject, issuer)
	if err != nil {
		return nil, fmt.Errorf("dice: alias certificate: %w", err)
	}
	return der, nil
}

// x509Supported refuses keys crypto/x509 cannot put in a certificate or
// sign with, and keys a DICE ID is not defined for.
func x509Supported(role string, pub crypto.PublicKey) error {
	if _, ok := pub.(*mldsa65.PublicKey); ok {
		return fmt.Errorf("dice: %s key is ML-DSA-65, which crypto/x509 can neither encode nor sign with (Go supports RSA, ECDSA and Ed25519 certificates only): %w", role, pluton.ErrUnsupportedAlgorithm)
	}
	if _, err := PublicKeyBytes(pub); err != nil {
		// Ed25519 and ECDSA P-256/P-384 pass; anything else is
		// ErrUnsupportedAlgorithm (or ErrInvalidKey if malformed).
		return fmt.Errorf("dice: %s key: %w", role, err)
	}
	return nil
}

// x509Template builds the crypto/x509 template of the profile above for the
// subject key pub.
func (t *CertificateTemplate) x509Template(pub crypto.PublicKey) (*x509.Certificate, error) {
	id, err := PublicKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("dice: certificate subject: %w", err)
	}
	if !t.IsCA && t.MaxPathLen > 0 {
		return nil, fmt.Errorf("dice: MaxPathLen %d on a certificate that is not a CA: %w", t.MaxPathLen, pluton.ErrInvalidArgument)
	}
	if t.UEID != nil && (len(t.UEID) == 0 || len(t.UEID) > MaxUEIDSize) {
		return nil, fmt.Errorf("dice: UEID of %d bytes, want 1 to %d: %w", len(t.UEID), MaxUEIDSize, pluton.ErrInvalidArgument)
	}

	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(id[:]),
		// open-dice: SERIALNUMBER=<hex ID>. Go encodes a printable string
		// as a PrintableString, as open-dice does.
		Subject:               pkix.Name{SerialNumber: hex.EncodeToString(id[:])},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		SubjectKeyId:          id[:],
		BasicConstraintsValid: true,
		IsCA:                  t.IsCA,
	}
	if t.IsCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
		switch {
		case t.MaxPathLen < 0:
			tmpl.MaxPathLen = -1
		case t.MaxPathLen == 0:
			tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
		default:
			tmpl.MaxPathLen = t.MaxPathLen
		}
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.MaxPathLen = -1
	}
	if t.Tcb != nil {
		v, err := t.Tcb.Marshal()
		if err != nil {
			return nil, err
		}
		// Not critical: see "Why DiceTcbInfo is not critical" above.
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidTcbInfo(), Critical: false, Value: v})
	}
	if t.UEID != nil {
		// TcgUeid ::= SEQUENCE { ueid OCTET STRING }
		v := appendTLV(nil, tagSequence, appendTLV(nil, tagOctetString, t.UEID))
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidUEID(), Critical: false, Value: v})
	}
	return tmpl, nil
}

// UEIDFromCertificate returns the UEID of c's tcg-dice-Ueid extension. c is
// untrusted until its chain is verified. An absent extension returns an
// error wrapping [ErrNoUEID]; several, a malformed (non-DER) one, or a UEID
// outside 1 to [MaxUEIDSize] bytes one wrapping [pluton.ErrInvalidArgument].
func UEIDFromCertificate(c *x509.Certificate) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("dice: nil certificate: %w", pluton.ErrInvalidArgument)
	}
	var found []byte
	n := 0
	for _, e := range c.Extensions {
		if e.Id.Equal(oidUEID()) {
			found = e.Value
			n++
		}
	}
	switch n {
	case 0:
		return nil, ErrNoUEID
	case 1:
	default:
		return nil, fmt.Errorf("dice: %d tcg-dice-Ueid extensions: %w", n, pluton.ErrInvalidArgument)
	}
	return parseUEID(found)
}

// parseUEID parses the untrusted DER of TcgUeid.
func parseUEID(der []byte) ([]byte, error) {
	tag, seq, rest, reason := readTLV(der)
	if reason == "" && (tag != tagSequence || len(rest) != 0) {
		reason = "not a single SEQUENCE"
	}
	var ueid []byte
	if reason == "" {
		tag, ueid, rest, reason = readTLV(seq)
		if reason == "" && (tag != tagOctetString || len(rest) != 0) {
			reason = "not SEQUENCE { OCTET STRING }"
		}
	}
	if reason == "" && (len(ueid) == 0 || len(ueid) > MaxUEIDSize) {
		reason = fmt.Sprintf("UEID of %d bytes, want 1 to %d", len(ueid), MaxUEIDSize)
	}
	if reason != "" {
		return nil, fmt.Errorf("dice: invalid tcg-dice-Ueid: %s: %w", reason, pluton.ErrInvalidArgument)
	}
	return append([]byte(nil), ueid...), nil
}
