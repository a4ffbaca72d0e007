package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

var (
	// ErrNotSupported: the operation of [pluton.Subsystem] has no
	// counterpart on a TPM 2.0 (fuses, the DICE lifecycle). It wraps
	// errors.ErrUnsupported.
	ErrNotSupported = fmt.Errorf("tpm: not supported by a TPM 2.0: %w", errors.ErrUnsupported)
	// ErrAdvanceTooFar: AdvanceCounter was asked to move an NV counter by
	// more than [MaxAdvance]; a TPM counter moves one step per command.
	// Errors carrying it also wrap pluton.ErrInvalidArgument.
	ErrAdvanceTooFar = errors.New("tpm: counter advance too far")
	// ErrQuote: a quote did not verify. Every *QuoteError wraps it.
	ErrQuote = errors.New("tpm: quote does not verify")
	// ErrPCRSelection: the TPM did not return every PCR asked for (a bank it
	// does not implement, or an index beyond its PCRs). TPM2_PCR_Read reports
	// these by leaving them out of pcrSelectionOut, not with an error code
	// (TPM 2.0 Part 3 §22.4).
	ErrPCRSelection = errors.New("tpm: PCR selection not available")
	// ErrState: the state file is malformed.
	ErrState = errors.New("tpm: malformed state file")
	// ErrCertify: a certification did not verify. Every *CertifyError
	// wraps it.
	ErrCertify = errors.New("tpm: certification does not verify")
	// ErrSealedBlob: a sealed blob given to [TPM.Unseal] is malformed (not
	// made by [TPM.Seal], truncated, another version). Nothing reached the
	// TPM.
	ErrSealedBlob = errors.New("tpm: malformed sealed blob")
	// ErrPolicy: [TPM.Unseal] was refused because the PCRs do not hold the
	// values the secret was sealed to (the TPM's TPM_RC_POLICY_FAIL). The
	// error also is a *CommandError of TPM2_Unseal that keeps the code.
	ErrPolicy = errors.New("tpm: PCRs do not satisfy the sealing policy")
)

// CommandError is a TPM command that failed. It keeps the TPM's response
// code: errors.As(err, &rc) with rc a tpm2.TPMRC (or tpm2.TPMFmt1Error for
// format-one codes naming a handle, parameter or session) works through it.
type CommandError struct {
	Command tpm2.TPMCC // the command that failed
	Err     error      // the error from go-tpm: a tpm2.TPMRC, or a transport error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("tpm: %s: %v", commandName(e.Command), e.Err)
}

// Unwrap returns the underlying error.
func (e *CommandError) Unwrap() error { return e.Err }

// RC returns the TPM response code, and false when the command failed
// before the TPM answered (transport error, marshalling).
func (e *CommandError) RC() (tpm2.TPMRC, bool) {
	var rc tpm2.TPMRC
	if errors.As(e.Err, &rc) {
		return rc, true
	}
	return 0, false
}

func cmdErr(cc tpm2.TPMCC, err error) error {
	if err == nil {
		return nil
	}
	return &CommandError{Command: cc, Err: err}
}

// Reasons a quote fails to verify; see [QuoteError].
var (
	ErrQuoteMalformed = errors.New("malformed attestation structure")
	ErrQuoteNonce     = errors.New("nonce (extraData) does not match")
	ErrQuotePCRs      = errors.New("PCR selection or digest does not match")
	ErrQuoteSignature = errors.New("signature does not verify")
	ErrQuoteMissing   = errors.New("the token carries no TPM quote")
)

// QuoteError says why a quote was rejected. It wraps [ErrQuote] and one of
// ErrQuoteMalformed, ErrQuoteNonce, ErrQuotePCRs, ErrQuoteSignature or
// (from [VerifyEvidenceQuote]) ErrQuoteMissing.
type QuoteError struct {
	Reason error
	Detail string
}

func (e *QuoteError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("tpm: quote: %v", e.Reason)
	}
	return fmt.Sprintf("tpm: quote: %v: %s", e.Reason, e.Detail)
}

// Unwrap returns ErrQuote and the reason.
func (e *QuoteError) Unwrap() []error { return []error{ErrQuote, e.Reason} }

// Reasons a certification fails to verify; see [CertifyError].
var (
	ErrCertifyMalformed  = errors.New("malformed attestation structure or public area")
	ErrCertifyNonce      = errors.New("nonce (extraData) does not match")
	ErrCertifyName       = errors.New("the certified name is not the IDevID's")
	ErrCertifyAttributes = errors.New("the IDevID is not a TPM-resident unrestricted signing key")
	ErrCertifySignature  = errors.New("signature does not verify")
)

// CertifyError says why [VerifyCertify] rejected a certification. It
// wraps [ErrCertify] and one of ErrCertifyMalformed, ErrCertifyNonce,
// ErrCertifyName, ErrCertifyAttributes or ErrCertifySignature.
type CertifyError struct {
	Reason error
	Detail string
}

func (e *CertifyError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("tpm: certify: %v", e.Reason)
	}
	return fmt.Sprintf("tpm: certify: %v: %s", e.Reason, e.Detail)
}

// Unwrap returns ErrCertify and the reason.
func (e *CertifyError) Unwrap() []error { return []error{ErrCertify, e.Reason} }

// commandName names the commands this package sends (TPM 2.0 Part 2 §6.5.2).
func commandName(cc tpm2.TPMCC) string {
	switch cc {
	case tpm2.TPMCCCreatePrimary:
		return "TPM2_CreatePrimary"
	case tpm2.TPMCCCreate:
		return "TPM2_Create"
	case tpm2.TPMCCLoad:
		return "TPM2_Load"
	case tpm2.TPMCCFlushContext:
		return "TPM2_FlushContext"
	case tpm2.TPMCCSign:
		return "TPM2_Sign"
	case tpm2.TPMCCQuote:
		return "TPM2_Quote"
	case tpm2.TPMCCGetRandom:
		return "TPM2_GetRandom"
	case tpm2.TPMCCPCRExtend:
		return "TPM2_PCR_Extend"
	case tpm2.TPMCCPCRRead:
		return "TPM2_PCR_Read"
	case tpm2.TPMCCNVDefineSpace:
		return "TPM2_NV_DefineSpace"
	case tpm2.TPMCCNVIncrement:
		return "TPM2_NV_Increment"
	case tpm2.TPMCCNVRead:
		return "TPM2_NV_Read"
	case tpm2.TPMCCCertify:
		return "TPM2_Certify"
	case tpm2.TPMCCUnseal:
		return "TPM2_Unseal"
	case tpm2.TPMCCPolicyPCR:
		return "TPM2_PolicyPCR"
	case tpm2.TPMCCStartAuthSession:
		return "TPM2_StartAuthSession"
	}
	return fmt.Sprintf("command %#x", uint32(cc))
}
