package attest

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
)

// Result is the outcome of Attest.
type Result struct {
	Status      Status
	Reasons     []Reason
	TrustVector TrustVector
	Release     string
	// UEID is the device's, once authenticated; nil otherwise.
	UEID []byte
	// EAR is the signed attestation result, a JWT (see SignEAR).
	EAR []byte
	// Certificate is the operational certificate issued for the
	// request's CSR, when the status is affirming; nil otherwise.
	Certificate *ca.Issued
	// Verdict is the ID of the verdict in the Store, 0 if none was
	// stored (evidence not attributable to a registered device).
	Verdict int64
}

// Attest runs the whole attestation of one request: Verify, Appraise,
// the CSR check, the Store, the operational certificate and the EAR.
//
// A refusal is not an error: the Result says contraindicated, with the
// reason, and carries a signed EAR. The verdict is stored when the refused
// evidence was authenticated as a registered device's (a refusal for its
// revocation, nonce or rollback); the device's accepted state changes only
// with an affirming or warning verdict, in the same transaction. The error
// is for operational failures only (registry, store, signer, CA, ctx).
//
// The operational certificate (ca.ProfileOperational, 24 hours) certifies
// the top layer's Alias key, the key that signed the evidence: the CSR
// must be for that key (and is signed by it, the CA checks: proof of
// possession). A CSR for any other key — even the DeviceID key — is
// refused and the verdict is contraindicated. The certificate is issued
// after the verdict is stored.
func (v *Verifier) Attest(ctx context.Context, req *Request) (*Result, error) {
	ver, err := v.Verify(ctx, req)
	var refusal *Error
	if errors.As(err, &refusal) {
		return v.refused(ctx, req, refusal)
	} else if err != nil {
		return nil, err
	}
	a := v.Appraise(ver)
	var checked *ca.CheckedCSR
	if a.Status == StatusAffirming && req.CSR != nil {
		var e *Error
		if checked, e = v.checkCSR(req.CSR, ver.AliasKey()); e != nil {
			a.Status = StatusContraindicated
			a.Reasons = append(a.Reasons, e.Reason)
			a.TrustVector.InstanceIdentity = tcUntrustworthy
		}
	}
	vd := &Verdict{
		UEID: ver.UEID(), Time: ver.at, Status: a.Status, Reasons: a.Reasons,
		Product: ver.Product(), Release: a.Release,
	}
	if a.Status != StatusContraindicated {
		vd.Accepted = ver.State()
	}
	err = v.store.Record(ctx, vd)
	if errors.Is(err, ErrRollback) {
		// A concurrent attestation of this device was accepted first with
		// a newer state.
		a = &Appraisal{Status: StatusContraindicated, TrustVector: refusedVector(CodeRollback),
			Reasons: []Reason{{CodeRollback, err.Error()}}}
		vd.Status, vd.Reasons, vd.Accepted, vd.Release = a.Status, a.Reasons, nil, ""
		err = v.store.Record(ctx, vd)
	}
	if err != nil {
		return nil, fmt.Errorf("attest: recording the verdict: %w", err)
	}
	res := &Result{Status: a.Status, Reasons: a.Reasons, TrustVector: a.TrustVector, Release: a.Release, UEID: vd.UEID, Verdict: vd.ID}
	if a.Status == StatusAffirming && req.CSR != nil {
		res.Certificate, err = v.issuer.Issue(ctx, &ca.IssueRequest{
			CSR: req.CSR, CheckedCSR: checked, Profile: ca.ProfileOperational, Product: ver.Product(), UEID: vd.UEID,
			Validity: ca.OperationalValidity,
		})
		if err != nil {
			return nil, fmt.Errorf("attest: issuing the operational certificate: %w", err)
		}
	}
	if res.EAR, err = v.SignEAR(a, ver.tok.Claims.Nonce, vd.UEID); err != nil {
		return nil, err
	}
	v.log.LogAttrs(ctx, slog.LevelInfo, "attestation", slog.String("ueid", fmt.Sprintf("%x", vd.UEID)),
		slog.String("status", string(a.Status)), slog.Int("reasons", len(a.Reasons)), slog.String("release", a.Release))
	return res, nil
}

func (v *Verifier) refused(ctx context.Context, req *Request, e *Error) (*Result, error) {
	a := &Appraisal{Status: StatusContraindicated, Reasons: []Reason{e.Reason}, TrustVector: refusedVector(e.Reason.Code)}
	res := &Result{Status: a.Status, Reasons: a.Reasons, TrustVector: a.TrustVector, UEID: e.ueid}
	if e.ueid != nil {
		vd := &Verdict{UEID: e.ueid, Time: v.now(), Status: a.Status, Reasons: a.Reasons}
		if err := v.store.Record(ctx, vd); err != nil {
			return nil, fmt.Errorf("attest: recording the verdict: %w", err)
		}
		res.Verdict = vd.ID
	}
	// The nonce of refused evidence is untrusted; it is echoed so the
	// device can match the answer to its request.
	var nonce []byte
	if len(req.Evidence) <= evidence.MaxTokenSize {
		if t, err := evidence.Parse(req.Evidence); err == nil {
			nonce = t.Claims.Nonce
		}
	}
	var err error
	if res.EAR, err = v.SignEAR(a, nonce, e.ueid); err != nil {
		return nil, err
	}
	v.log.LogAttrs(ctx, slog.LevelWarn, "attestation refused", slog.String("ueid", fmt.Sprintf("%x", e.ueid)),
		slog.String("code", string(e.Reason.Code)), slog.String("detail", e.Reason.Detail))
	return res, nil
}

// checkCSR checks an untrusted CSR: it parses (ca.CheckCSR: size, key,
// signature) and is for the Alias key that signed the evidence. The
// checked request goes to the CA, which then does not verify its signature
// a second time.
func (v *Verifier) checkCSR(der []byte, alias crypto.PublicKey) (*ca.CheckedCSR, *Error) {
	if v.issuer == nil {
		return nil, refuse(CodeCSR, nil, "this verifier issues no operational certificates")
	}
	csr, err := ca.CheckCSR(der)
	if err != nil {
		return nil, refuse(CodeCSR, err, "%v", err)
	}
	want, err := pluton.MarshalPublicKey(alias)
	if err != nil || !bytes.Equal(csr.PublicKeyInfo(), want) {
		return nil, refuse(CodeCSR, nil, "the CSR is not for the Alias key that signed the evidence")
	}
	return csr, nil
}
