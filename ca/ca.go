// Package ca is rootline's device certificate authority: an offline root,
// one online intermediate per product, certificate profiles (IEEE 802.1AR
// IDevID, the verifier's 24-hour operational certificate, the factory
// station certificate), issuance from PKCS#10 requests with proof of
// possession, revocation and CRLs.
//
// One interface, Issuer, has several backends: [Local] (any crypto.Signer,
// normally a PKCS#11 key from package hsm), ca/stepca (a step-ca server)
// and ca/vaultpki (Vault's PKI engine). Keys reach this package only as
// crypto.Signer values: it never knows where they live.
//
// # The hierarchy
//
// [NewRoot] makes the self-signed root (cA, pathLenConstraint 1) in an
// offline ceremony; [NewIntermediate] has it sign each product's issuing
// CA (pathLenConstraint 0). Both sign with the keys' own signers, so an
// HSM key signs inside the HSM. CA certificates, like IDevIDs, default to
// notAfter 99991231235959Z.
//
// # Issuance
//
// Every backend first calls [Check]: the request's fields for its profile,
// then [ParseCSR] (size, key type and size, the CSR's signature as proof
// of possession, and nothing asked for that no profile grants). A refused
// request is a [*RequestError] matching [ErrBadRequest] and one of
// [ErrBadCSRSignature], [ErrKeyType], [ErrForbiddenExtension],
// [ErrTooLarge]…; nothing is signed and nothing is logged as issued. The
// certificate is then [Checked.Template] with a serial number from
// [NewSerial]: the profiles are written down there, once, for every
// backend.
//
// A caller that checks the CSR itself before asking (the provisioning
// service compares its key with the chip's evidence) does so with
// [CheckCSR] and passes the result in [IssueRequest.CheckedCSR]: Check
// then takes it instead of verifying the same signature again. Local says
// in [Issued.SignatureChecked] that it verified the certificate's
// signature, so that such a caller need not verify it again either.
//
// The names the profiles carry are otherName subject alternative names,
// which crypto/x509 does not handle: [MarshalHardwareModuleName] and
// [HardwareModuleName] (RFC 4108), [MarshalStation] and [Station].
//
// # Revocation
//
// [Local] records revocations in a [RevocationStore] ([FileStore]: one
// JSON file rewritten atomically; or the provisioning registry's own) and
// signs CRLs with monotonic CRL numbers ([Local.CRLFor]).
//
// Package ca/catest holds the tests every backend passes
// (catest.Conformance).
package ca

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"time"
)

// Profile names a certificate profile.
type Profile string

const (
	// ProfileIDevID is the IEEE 802.1AR initial device identity: subject
	// serialNumber = UEID (hex), a HardwareModuleName otherName SAN
	// (RFC 4108 §5) with the product's hwType OID and the UEID as
	// hwSerialNum, notAfter 99991231235959Z (802.1AR §8.5, RFC 5280
	// §4.1.2.5), key usage digitalSignature, and the chip's DiceTcbInfo
	// when its CSR carries one.
	ProfileIDevID Profile = "idevid"
	// ProfileOperational is the short-lived (24 h) clientAuth certificate
	// the attestation verifier gives an affirmed device.
	ProfileOperational Profile = "operational"
	// ProfileStation is a factory station's clientAuth certificate, bound
	// to the station's name and the products it may provision.
	ProfileStation Profile = "station"
	// ProfileIDevIDInjected is the IDevID of a chip whose device key was
	// made in the factory HSM and wrapped for the chip (DESIGN.md,
	// "Injected identity"): the same certificate as [ProfileIDevID]
	// (without a DiceTcbInfo), issued for [IssueRequest.PublicKey]
	// instead of a CSR.
	//
	// Such a key has no proof of possession to give: the HSM makes it
	// without CKA_SIGN (it must never sign there) and the chip holds it
	// only once it has unwrapped the blob, after issuance. What stands in
	// for the proof is the provisioning service's own checks before it
	// asks: the key is the one the HSM made and wrapped for the chip whose
	// DeviceID signed the transport-key statement over the service's
	// nonce. So only a caller that made those checks may use this
	// profile; a CA reachable by stations must not offer it.
	ProfileIDevIDInjected Profile = "idevid-injected"
)

// IssueRequest asks for one certificate.
type IssueRequest struct {
	// CSR is an untrusted DER PKCS#10 request. Its size, key and
	// signature (the proof of possession) and the extensions it asks for
	// are checked before anything is signed (see [ParseCSR]). Its subject
	// is ignored: each profile sets its own.
	CSR []byte
	// CheckedCSR, if set, is CSR as [CheckCSR] accepted it earlier in
	// this process. [Check] then takes it instead of parsing CSR and
	// verifying its signature a second time: a *CheckedCSR is made only
	// by CheckCSR, which makes every check of [ParseCSR], so using it is
	// the same as checking again. It is used only if it holds the same
	// bytes as CSR; otherwise CSR is checked as if it were not set.
	// Backends that send CSR elsewhere still send CSR.
	CheckedCSR *CheckedCSR
	// PublicKey is the DER SubjectPublicKeyInfo to certify, with
	// [ProfileIDevIDInjected] only, which takes no CSR. It is checked
	// for its type, curve and size as a CSR's key is.
	PublicKey []byte
	Profile   Profile
	// Product whose intermediate issues (IDevID, operational).
	Product string
	// UEID of the device (IDevID, operational): [MinUEIDSize] to
	// [MaxUEIDSize] bytes.
	UEID []byte
	// HWType is the product's hardware type OID for the
	// HardwareModuleName (IDevID, operational). Optional: backends know
	// each product's; if set, it must be that one.
	HWType asn1.ObjectIdentifier
	// Station is the station's name and Products the products it may
	// provision (station profile).
	Station  string
	Products []string
	// Validity overrides the profile's default lifetime where the profile
	// allows it (operational, station); zero means the default.
	Validity time.Duration
}

// Issued is a certificate and the chain above it (intermediate first, the
// root last).
type Issued struct {
	Certificate *x509.Certificate
	Chain       []*x509.Certificate
	// SignatureChecked is true when the backend itself verified, in this
	// process, that Certificate is signed by the key of Chain[0] before
	// returning it ([Local]: crypto/x509.CreateCertificate refuses a
	// signer whose public key is not the issuing certificate's, and
	// verifies the signature it gets back). A caller that would check the
	// signature again may skip it when Chain[0] is the CA it expects. A
	// backend that relays a remote CA's answer leaves it false.
	SignatureChecked bool
}

// Issuer is implemented by every CA backend.
type Issuer interface {
	// Issue checks req (proof of possession, key type and size, nothing
	// the profile forbids: every backend calls [Check] first) and issues.
	// A refused request is a [*RequestError], which matches
	// [ErrBadRequest] and a more specific sentinel, and issues nothing. A
	// backend that cannot sign fails with [ErrSigning] or
	// [ErrUnavailable], and issues nothing either.
	Issue(ctx context.Context, req *IssueRequest) (*Issued, error)
	// Revoke revokes a certificate by serial number with an RFC 5280
	// §5.3.1 reason code (see [CheckReason]). Revoking a serial number
	// twice fails with [ErrAlreadyRevoked].
	Revoke(ctx context.Context, serial *big.Int, reason int) error
	// CRL returns a current DER CRL of the backend's issuing CA. A
	// backend with several issuing CAs fails with [ErrUnknownIssuer] and
	// offers a method to name one ([Local.CRLFor]).
	CRL(ctx context.Context) ([]byte, error)
}
