package tpm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
)

// quoteAttempts bounds how often [TPM.QuoteClaims] quotes again when a PCR
// moved between TPM2_Quote and TPM2_PCR_Read (another process measuring).
const quoteAttempts = 3

// EvidenceRequest says what [TPM.QuoteClaims] quotes.
type EvidenceRequest struct {
	// Compartment and Key name the attestation key: a UsageAttest key of
	// Compartment, or [pluton.DeviceIDHandle] of pluton.SecurityMonitor
	// for the IAK.
	Compartment pluton.Compartment
	Key         pluton.KeyHandle
	// Bank is the quoted PCR bank: crypto.SHA256 or crypto.SHA384 (the
	// banks of the evidence registers claim).
	Bank crypto.Hash
	// PCRs are the measurement PCRs to quote, 0 to 23. If empty, the
	// registers EventLog records events in.
	PCRs []int
	// EventLog, optional, is the TCG crypto-agile event log of the
	// measurements (pluton/measure), carried in the token so that the
	// verifier replays it against the quoted PCRs.
	EventLog []byte
}

// QuoteClaims fills the TPM part of c, evidence claims whose Nonce the
// verifier chose: it quotes req's PCRs with TPM2_Quote, c.Nonce as
// qualifyingData, and sets c.TPMQuote to the quote, c.Registers[req.Bank]
// to the quoted PCRs' values (other banks of c.Registers are left alone)
// and c.EventLog to req.EventLog. It checks the quote before returning
// (VerifyQuote with the key's public key), and quotes again, up to three
// times, if a PCR moved between the quote and the reading of the values.
// c is then signed with [evidence.Sign] by the device's Alias key as any
// other token; the verifier calls [VerifyEvidenceQuote] after
// evidence.Verify.
func (t *TPM) QuoteClaims(ctx context.Context, c *evidence.Claims, req *EvidenceRequest) error {
	if c == nil || req == nil {
		return fmt.Errorf("tpm: %w: nil claims or request", pluton.ErrInvalidArgument)
	}
	if req.Bank != crypto.SHA256 && req.Bank != crypto.SHA384 {
		return fmt.Errorf("tpm: %w: evidence carries the SHA-256 or SHA-384 bank, not %v", pluton.ErrInvalidArgument, req.Bank)
	}
	if len(c.Nonce) < evidence.MinNonceSize || len(c.Nonce) > min(evidence.MaxNonceSize, MaxNonce) {
		return fmt.Errorf("tpm: %w: eat_nonce of %d bytes", pluton.ErrInvalidArgument, len(c.Nonce))
	}
	pcrs := slices.Clone(req.PCRs)
	if len(req.EventLog) > 0 {
		l, err := measure.ParseLog(req.EventLog)
		if err != nil {
			return fmt.Errorf("tpm: %w: event log: %w", pluton.ErrInvalidArgument, err)
		}
		if len(pcrs) == 0 {
			for _, e := range l.Events() {
				pcrs = append(pcrs, e.Register)
			}
		}
	}
	if len(pcrs) == 0 {
		return fmt.Errorf("tpm: %w: no PCR to quote", pluton.ErrInvalidArgument)
	}
	for _, i := range pcrs {
		if i < 0 || i >= measure.NumRegisters {
			return fmt.Errorf("tpm: %w: PCR %d is not a measurement register (0 to %d)", pluton.ErrInvalidArgument, i, measure.NumRegisters-1)
		}
	}
	slices.Sort(pcrs)
	pcrs = slices.Compact(pcrs)
	info, err := t.Key(ctx, req.Compartment, req.Key)
	if err != nil {
		return err
	}
	var q *Quote
	for attempt := 1; ; attempt++ {
		if q, err = t.Quote(ctx, req.Compartment, req.Key, c.Nonce, req.Bank, pcrs); err != nil {
			return err
		}
		err = VerifyQuote(info.Public, q, c.Nonce, req.Bank, q.PCRs)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrQuotePCRs) || attempt == quoteAttempts {
			return fmt.Errorf("tpm: the TPM's own quote does not verify: %w", err)
		}
	}
	if c.Registers == nil {
		c.Registers = map[crypto.Hash]map[int][]byte{}
	}
	c.Registers[req.Bank] = maps.Clone(q.PCRs)
	c.EventLog = slices.Clone(req.EventLog)
	c.TPMQuote = &evidence.TPMQuote{Attest: q.Attest, Signature: q.Signature, Bank: req.Bank, PCRs: pcrs}
	return nil
}

// VerifyEvidenceQuote checks the TPM quote of a token that
// evidence.Verify accepted: that ak (the attestation key's public key,
// from a trusted source: the IAK's certificate or enrolment record)
// signed tok's quote, that its qualifyingData is the token's eat_nonce,
// and that it covers exactly the quoted PCRs of the claim with a pcrDigest
// of the token's register values for them ([VerifyQuote]). Together with
// evidence.Verify's replay of the event log against the same registers,
// this binds the event log to the TPM's PCRs.
//
// Every failure is a *[QuoteError]: [ErrQuoteMissing] for a token without
// a TPM quote, or the reasons of VerifyQuote.
func VerifyEvidenceQuote(tok *evidence.Token, ak crypto.PublicKey) error {
	if tok == nil || tok.Claims == nil || tok.Claims.TPMQuote == nil {
		return &QuoteError{Reason: ErrQuoteMissing}
	}
	cq := tok.Claims.TPMQuote
	regs := tok.Claims.Registers[cq.Bank]
	want := make(map[int][]byte, len(cq.PCRs))
	for _, i := range cq.PCRs {
		v, ok := regs[i]
		if !ok {
			return &QuoteError{Reason: ErrQuotePCRs, Detail: fmt.Sprintf("the token has no value of %v PCR %d", cq.Bank, i)}
		}
		want[i] = v
	}
	return VerifyQuote(ak, &Quote{Attest: cq.Attest, Signature: cq.Signature, Bank: cq.Bank}, tok.Claims.Nonce, cq.Bank, want)
}
