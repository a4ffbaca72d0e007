package evidence

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/cose"
	"github.com/rootline/rootline/pluton/measure"
)

// Profile is the eat_profile claim (RFC 9711, §4.3.2) of every token: a
// tag URI (RFC 4151) naming the rootline evidence profile v1.
const Profile = "tag:rootline.dev,2026:evidence:v1"

// ContentFormat is the CoAP Content-Format of application/eat+cwt (263,
// IANA "CoAP Content-Formats", registered by RFC 9782), which the
// protected header carries as its content type (RFC 9052, §3.1, label 3).
const ContentFormat = 263

// Limits. [Parse] refuses a token beyond them and [Sign] refuses to make
// one, so every token Sign makes can be parsed.
const (
	// MaxTokenSize bounds a whole token: 64 KiB, plus MaxEventLogSize for
	// the event log claim. Without its event log a token is at most 64 KiB.
	MaxTokenSize = maxTokenSizeWithoutLog + MaxEventLogSize
	// MaxEventLogSize bounds the event log claim.
	MaxEventLogSize = 64 << 10
	// MaxCertificates bounds the x5chain.
	MaxCertificates = 8
	// MaxCertificateSize bounds one DER certificate of the x5chain.
	MaxCertificateSize = 8 << 10
	// MaxLayers bounds the submodules (boot layers).
	MaxLayers = 16
	// MaxCounters bounds the counters claim.
	MaxCounters = 64
	// MaxNameLen bounds a layer name; MaxCounterNameLen a counter name.
	MaxNameLen        = 64
	MaxCounterNameLen = 128
	// MaxVersionLen bounds a layer's version (as pluton/boot does).
	MaxVersionLen = 64
	// MaxProductLen bounds the product identifier.
	MaxProductLen = 64
	// MinNonceSize and MaxNonceSize are the sizes of an eat_nonce in CBOR
	// (RFC 9711, §4.1).
	MinNonceSize = 8
	MaxNonceSize = 64
	// MinUEIDSize and MaxUEIDSize are the sizes of a ueid (RFC 9711,
	// §4.2.1).
	MinUEIDSize = 7
	MaxUEIDSize = 33
	// MaxTPMQuoteSize bounds each of the attestation structure and the
	// signature of the TPM quote claim (a TPM2B_ATTEST holds at most
	// sizeof(TPMS_ATTEST); a quote of one bank is about 150 bytes).
	MaxTPMQuoteSize = 1024

	maxTokenSizeWithoutLog = 64 << 10
)

// Errors. Every error of [Parse] and [Verify] is a *[VerifyError] wrapping
// exactly one of them; callers test with errors.Is.
var (
	// ErrMalformed: the token is not a well-formed token of the rootline
	// evidence profile v1 (COSE structure, headers, claim types and values,
	// certificate encoding).
	ErrMalformed = errors.New("evidence: malformed token")
	// ErrTooLarge: the token, or one of its parts, exceeds a limit.
	ErrTooLarge = errors.New("evidence: token exceeds a limit")
	// ErrSignature: the signature does not verify with the leaf
	// certificate's public key (or that key is not of the token's
	// algorithm).
	ErrSignature = errors.New("evidence: signature does not verify")
	// ErrChain: the x5chain is not a certificate chain (a missing link, a
	// certificate that is not a CA, a bad certificate signature, …), or it
	// does not lead to one of VerifyOptions.Roots.
	ErrChain = errors.New("evidence: certificate chain refused")
	// ErrNonce: the token's nonce is not VerifyOptions.Nonce.
	ErrNonce = errors.New("evidence: nonce does not match")
	// ErrEventLog: replaying the token's event log does not give the
	// register values the token claims.
	ErrEventLog = errors.New("evidence: event log does not reproduce the registers")
)

// VerifyError says why a token was refused. Err is one of [ErrMalformed],
// [ErrTooLarge], [ErrSignature], [ErrChain], [ErrNonce] or [ErrEventLog];
// Cause, if not nil, is the underlying error (from CBOR, COSE, X.509 or
// pluton/measure). Reason never holds secret material.
type VerifyError struct {
	Reason string
	Err    error
	Cause  error
}

func (e *VerifyError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%v: %s: %v", e.Err, e.Reason, e.Cause)
	}
	return fmt.Sprintf("%v: %s", e.Err, e.Reason)
}

// Unwrap returns Err and, if set, Cause.
func (e *VerifyError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

func refuse(sentinel error, cause error, format string, args ...any) *VerifyError {
	return &VerifyError{Reason: fmt.Sprintf(format, args...), Err: sentinel, Cause: cause}
}

func malformed(format string, args ...any) *VerifyError {
	return refuse(ErrMalformed, nil, format, args...)
}

func tooLarge(format string, args ...any) *VerifyError {
	return refuse(ErrTooLarge, nil, format, args...)
}

// Measurement describes one boot layer as the layer below it measured it
// before running it: the image's version, security version number, digest
// and signer.
type Measurement struct {
	// Layer names the layer: "bootloader", "os", "app" (pluton/boot's
	// layers) or another name of 1 to MaxNameLen characters from
	// [a-z0-9:._-], starting with a letter or digit. Unique in a token.
	Layer string
	// Version is the image's version, Semantic Versioning 2.0.0, at most
	// MaxVersionLen bytes, as in its pluton/boot manifest.
	Version string
	// SVN is the image's security version number.
	SVN uint64
	// Digest is the image's digest under DigestAlg: crypto.SHA256,
	// crypto.SHA384 or crypto.SHA512.
	Digest    []byte
	DigestAlg crypto.Hash
	// SignerID identifies the key that signed the image: 32, 48 or 64
	// bytes, for example pluton/boot's KeyID (the SHA-256 of its
	// SubjectPublicKeyInfo).
	SignerID []byte
}

// Claims are the claims of a token. A Claims from [Parse] is untrusted
// until [Verify] accepts the token it came from.
type Claims struct {
	// Nonce is the verifier's challenge: MinNonceSize to MaxNonceSize bytes.
	Nonce []byte
	// UEID is the device's Universal Entity ID (RFC 9711, §4.2.1): 7 to 33
	// bytes, treated as opaque.
	UEID []byte
	// Product is the product identifier, optional: at most MaxProductLen
	// characters from [A-Za-z0-9._-], starting with a letter or digit.
	Product string
	// Lifecycle is the chip's lifecycle state.
	Lifecycle pluton.Lifecycle
	// Counters are monotonic counters by name, at most MaxCounters. A name
	// has 1 to MaxCounterNameLen characters from [A-Za-z0-9:/._-].
	Counters map[string]uint64
	// Layers are the measured boot layers in boot order, at most
	// MaxLayers.
	Layers []Measurement
	// Registers are measurement register values, by bank (crypto.SHA256
	// or crypto.SHA384) and register index (0 to measure.NumRegisters-1):
	// the map measure.Log.Verify takes.
	Registers map[crypto.Hash]map[int][]byte
	// EventLog is a TCG crypto-agile event log (pluton/measure) of at most
	// MaxEventLogSize bytes, optional; Registers must be set with it.
	// [Verify] replays it against Registers.
	EventLog []byte
	// TPMQuote is a TPM 2.0 quote of some of the Registers, optional;
	// Registers must hold every register it quotes.
	TPMQuote *TPMQuote
}

// TPMQuote is a TPM 2.0 quote (TPM2_Quote, TPM 2.0 Part 3 §18.4) that a
// device whose measurement registers are a TPM's PCRs (pluton/tpm) sends
// with its token: the TPM's attestation key signed the values of PCRs
// of one bank, with the token's eat_nonce as qualifying data. [Verify]
// checks only its form: checking the quote needs the attestation key,
// which the x5chain does not carry; pluton/tpm's VerifyEvidenceQuote does
// it, against the token's nonce and Registers.
type TPMQuote struct {
	// Attest is the TPMS_ATTEST the TPM signed, 1 to MaxTPMQuoteSize
	// bytes, opaque here.
	Attest []byte
	// Signature is the TPMT_SIGNATURE over Attest, 1 to MaxTPMQuoteSize
	// bytes, opaque here.
	Signature []byte
	// Bank is the quoted PCR bank: crypto.SHA256 or crypto.SHA384, a bank
	// of Registers.
	Bank crypto.Hash
	// PCRs are the quoted PCR indexes, strictly increasing, each a
	// register of Registers[Bank].
	PCRs []int
}

// Token is a parsed token.
type Token struct {
	// Claims are the token's claims.
	Claims *Claims
	// Chain is the x5chain, leaf first: the certificate of the key that
	// signed the token, then its issuer's, and so on.
	Chain []*x509.Certificate
	// PublicKey is the leaf certificate's public key: *ecdsa.PublicKey,
	// ed25519.PublicKey or *mldsa65.PublicKey.
	PublicKey crypto.PublicKey
	// Algorithm is the signature algorithm named in the protected header.
	Algorithm pluton.Algorithm
	// Log is Claims.EventLog parsed, or nil.
	Log *measure.Log
	// Raw is the whole token as received.
	Raw []byte

	msg *cose.Sign1Message
}

// VerifyOptions says what [Verify] checks beyond the signature and the
// structure of the chain.
type VerifyOptions struct {
	// Nonce, if not nil, must equal the token's nonce (compared in
	// constant time). Without it, Verify says nothing of freshness.
	Nonce []byte
	// Roots, if not nil, are the trust anchors: the last certificate of
	// the chain must be one of them or be signed by one (crypto/x509 path
	// validation). Without Roots, the chain is only checked for structure
	// and its last certificate (for example a self-signed DeviceID
	// certificate) is up to the caller to trust, for example by pinning it.
	Roots *x509.CertPool
	// CurrentTime, if not zero, is the time at which every certificate of
	// the chain, and the path to Roots, must be valid. If zero, validity
	// periods of the chain are not checked (DICE certificates have fixed
	// ones, 2018 to 9999, and devices have no trusted clock), and the path
	// from the last certificate to Roots is validated at the time that
	// certificate became valid (its NotBefore).
	CurrentTime time.Time
}
