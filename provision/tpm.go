package provision

// Factory acceptance of chips whose root of trust is a TPM 2.0
// (pluton/tpm; a device of package device made with InitTPM).
//
// # What is different on a TPM
//
// A TPM has no DICE: no DeviceID derived from a fused secret, no Alias
// chain. It has two identity keys, primary keys of its endorsement
// hierarchy (TCG "TPM 2.0 Keys for Device Identity and Attestation"): the
// IAK, a restricted signing key that signs only structures the TPM made
// (quotes, certifications), and the IDevID, an unrestricted signing key.
// The chip's CSR and its evidence (the EAT) are signed by the IDevID; the
// evidence carries a quote of the boot PCRs by the IAK; and the IAK
// certifies the IDevID with TPM2_Certify. All three are over the service's
// nonce.
//
// # Where the IAK is trusted from
//
// Nowhere yet: the factory trusts the IAK on first use. A TPM
// manufacturer's EK certificate chain, with a credential activation
// (TPM2_MakeCredential/TPM2_ActivateCredential) proving the IAK in the EK's
// TPM, or the manufacturer's IAK certificate, would root it; neither is
// checked here (swtpm_setup --create-ek-cert makes EK certificates with a
// local CA, so it can be added and tested). What binds a chip to its IAK
// is its UEID: on a TPM the UEID is derived from the IAK's public key
// (pluton/tpm.UEID), and ProvisionTPM refuses a UEID that is not the
// IAK's. The registry records the chip under that UEID with the IDevID key
// the IAK certified; the same TPM always presents the same IAK and IDevID
// (both are re-created from its endorsement seed), so a UEID seen again
// with another IDevID key is a clone (registry.ErrClone), as for the
// emulated chip.

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/provision/registry"
)

// ErrTPMIdentity: the TPM's identity keys do not check out: the IAK's
// public area is not a TPM-resident restricted signing key, the UEID is
// not the IAK's, or the IAK's certification of the IDevID does not verify
// (it wraps the *tpm.CertifyError: errors.Is(err, tpm.ErrCertifyNonce)).
var ErrTPMIdentity = errors.New("provision: the TPM's identity keys do not verify")

// MaxTPMPublicSize bounds each TPMT_PUBLIC of a TPMRequest, and
// MaxTPMAttestSize the certification and its signature.
const (
	MaxTPMPublicSize = 1024
	MaxTPMAttestSize = evidence.MaxTPMQuoteSize
)

// TPMRequest is a station's untrusted request for a chip on a TPM 2.0
// (device.TPMFactoryRequest). Request.CSR is signed by the TPM's IDevID
// key, and Request.Evidence is signed by the same key and carries a quote
// of the boot PCRs by the IAK.
type TPMRequest struct {
	Request
	// IAKPublic and IDevIDPublic are the TPMT_PUBLIC areas of the TPM's
	// attestation key and device identity key.
	IAKPublic, IDevIDPublic []byte
	// CertifyAttest is the TPMS_ATTEST of the TPM2_Certify of the IDevID
	// by the IAK, with the evidence's nonce as qualifyingData, and
	// CertifySignature the IAK's TPMT_SIGNATURE over it.
	CertifyAttest, CertifySignature []byte
}

// ProvisionTPM checks the request of a chip on a TPM and returns its IDevID
// chain. It does what Provision does (the nonce, spent first; the station
// and product; the evidence; the reference values; then the registry, the
// CA and the issuance log, idempotently), with the TPM's checks in place
// of the DICE chain's:
//
//  1. the nonce, read from the evidence, is fresh and this station's
//     (ErrNonce), and the station may provision the product
//     (ErrStationNotAllowed);
//  2. the evidence verifies (signature by its x5chain's leaf, the chain,
//     the nonce, the event log against the registers claim), and its
//     UEID, product and lifecycle are the request's and a factory chip's
//     (ErrEvidence);
//  3. the IAK's public area is a TPM-resident restricted signing key, the
//     UEID is the IAK's (tpm.UEID), and the IAK certified the IDevID over
//     the same nonce (tpm.VerifyCertify) (ErrTPMIdentity);
//  4. the CSR verifies and its key is the certified IDevID key, and so is
//     the key that signed the evidence (ErrKeyMismatch);
//  5. the evidence's quote is the IAK's, over the nonce, of the registers
//     the event log replays to (tpm.VerifyEvidenceQuote) (ErrEvidence);
//  6. each layer's measurement is a reference value of the product
//     (ErrReferenceValues), and is bound to the quote: its digest, in the
//     quoted bank, was extended into a quoted PCR as the event log says.
//     The layer claims are signed by the IDevID, which any software on
//     the chip may use; only what the quote covers is the TPM's word;
//  7. the registry records the chip under its UEID with the IDevID key (a
//     known UEID with another key is a clone: registry.ErrClone) and the
//     IAK's public area as received (registry.Record.TPMIAK), which the
//     export hands to verifiers to check the chip's quotes with.
//
// Repeated for the same chip it returns the same certificate.
func (s *Service) ProvisionTPM(ctx context.Context, station Station, req *TPMRequest) (*Result, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: no request", ErrBadRequest)
	}
	res, err := s.provisionTPM(ctx, station, req)
	if err != nil {
		return nil, s.refuse(station.Name, &req.Request, err)
	}
	return res, nil
}

func (s *Service) provisionTPM(ctx context.Context, station Station, req *TPMRequest) (*Result, error) {
	if err := checkTPMRequestSizes(station, req); err != nil {
		return nil, err
	}
	// 1. and 2.: the nonce (spent first), the station and product, the
	// evidence. A TPM makes its IDevID key itself: an OnChip product.
	tok, policy, err := s.checkChip(station, req.Product, req.UEID, req.Evidence, OnChip)
	if err != nil {
		return nil, err
	}
	// 3. to 6.
	csr, err := checkTPM(policy, tok, req)
	if err != nil {
		return nil, err
	}
	// 7. Record, issue, log. Requests for one UEID are serialised there.
	return s.recordIssueLog(ctx, station, policy, &req.Request, csr, req.IAKPublic)
}

// checkTPMRequestSizes bounds every field of an untrusted request.
func checkTPMRequestSizes(station Station, req *TPMRequest) error {
	switch {
	case station.Name == "" || len(station.Name) > registry.MaxNameLen:
		return fmt.Errorf("%w: station name of %d bytes", ErrBadRequest, len(station.Name))
	case len(req.UEID) == 0 || len(req.UEID) > registry.MaxUEIDLen:
		return fmt.Errorf("%w: UEID of %d bytes", ErrBadRequest, len(req.UEID))
	case len(req.CSR) == 0 || len(req.CSR) > ca.MaxCSRSize:
		return fmt.Errorf("%w: CSR of %d bytes", ErrBadRequest, len(req.CSR))
	case len(req.Evidence) == 0 || len(req.Evidence) > evidence.MaxTokenSize:
		return fmt.Errorf("%w: evidence of %d bytes", ErrBadRequest, len(req.Evidence))
	case req.Product == "" || len(req.Product) > registry.MaxNameLen ||
		req.Lot == "" || len(req.Lot) > registry.MaxNameLen:
		return fmt.Errorf("%w: product or lot missing or too long", ErrBadRequest)
	case len(req.IAKPublic) == 0 || len(req.IAKPublic) > MaxTPMPublicSize ||
		len(req.IDevIDPublic) == 0 || len(req.IDevIDPublic) > MaxTPMPublicSize:
		return fmt.Errorf("%w: TPM public areas of %d and %d bytes", ErrBadRequest, len(req.IAKPublic), len(req.IDevIDPublic))
	case len(req.CertifyAttest) == 0 || len(req.CertifyAttest) > MaxTPMAttestSize ||
		len(req.CertifySignature) == 0 || len(req.CertifySignature) > MaxTPMAttestSize:
		return fmt.Errorf("%w: certification of %d bytes, signature of %d", ErrBadRequest, len(req.CertifyAttest), len(req.CertifySignature))
	}
	return nil
}

// checkTPM makes steps 3 to 6 of ProvisionTPM on a request whose sizes
// were checked and whose evidence tok verified over its nonce, which was
// spent. It returns the CSR to issue from.
func checkTPM(policy *ProductPolicy, tok *evidence.Token, req *TPMRequest) (*ca.CheckedCSR, error) {
	cl, nonce := tok.Claims, tok.Claims.Nonce
	if cl.TPMQuote == nil || tok.Log == nil || len(tok.Chain) == 0 {
		return nil, fmt.Errorf("%w: no TPM quote or no event log", ErrEvidence)
	}

	// 3. The TPM's identity keys.
	iak, err := tpm.ParseIAKPublic(req.IAKPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTPMIdentity, err)
	}
	if u, err := tpm.UEID(iak); err != nil || !bytes.Equal(u, req.UEID) {
		return nil, fmt.Errorf("%w: the UEID %x is not the IAK's", ErrTPMIdentity, req.UEID)
	}
	idevid, err := tpm.VerifyCertify(iak, req.IDevIDPublic, req.CertifyAttest, req.CertifySignature, nonce)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTPMIdentity, err)
	}
	idevidSPKI, err := x509.MarshalPKIXPublicKey(idevid)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTPMIdentity, err)
	}

	// 4. The CSR and the evidence are the certified IDevID's.
	csr, err := ca.CheckCSR(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if !bytes.Equal(csr.PublicKeyInfo(), idevidSPKI) {
		return nil, fmt.Errorf("%w: the CSR's key is not the IDevID the IAK certified", ErrKeyMismatch)
	}
	if !bytes.Equal(tok.Chain[0].RawSubjectPublicKeyInfo, idevidSPKI) {
		return nil, fmt.Errorf("%w: the evidence is not signed by the IDevID the IAK certified", ErrKeyMismatch)
	}

	// 5. The quote.
	if err := tpm.VerifyEvidenceQuote(tok, iak); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEvidence, err)
	}

	// 6. The test firmware, as claimed and as quoted.
	if err := checkReferences(policy.ReferenceValues, cl.Layers); err != nil {
		return nil, err
	}
	if err := checkQuotedLayers(tok); err != nil {
		return nil, err
	}

	return csr, nil
}

// checkQuotedLayers checks that each layer's digest was extended into a
// quoted PCR: the event log, which evidence.Verify replayed against the
// registers claim, which VerifyEvidenceQuote checked against the quote,
// has an event in a quoted PCR whose digest in the quoted bank is the
// layer's (its payload's digest, pluton/boot; device measures the payload
// with that digest). A layer whose digest is of another hash than the
// quoted bank's cannot be bound, and is refused.
func checkQuotedLayers(tok *evidence.Token) error {
	q := tok.Claims.TPMQuote
	for _, m := range tok.Claims.Layers {
		if m.DigestAlg != q.Bank {
			return fmt.Errorf("%w: layer %q has a %v digest, the quote is of the %v bank", ErrReferenceValues, m.Layer, m.DigestAlg, q.Bank)
		}
		if !slices.ContainsFunc(tok.Log.Events(), func(e measure.Event) bool {
			return slices.Contains(q.PCRs, e.Register) && bytes.Equal(e.Digests[q.Bank], m.Digest)
		}) {
			return fmt.Errorf("%w: layer %q digest %x is in no quoted PCR", ErrReferenceValues, m.Layer, m.Digest)
		}
	}
	return nil
}
