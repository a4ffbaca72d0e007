package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/subtle"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
)

// MaxNonce bounds a quote's nonce (qualifyingData, a TPM2B_DATA: at most
// the size of a TPMT_HA, TPM 2.0 Part 2 §10.4.3; 64 bytes fits every TPM
// with a SHA-512 bank, and 32 is the usual size).
const MaxNonce = 64

// maxAttest bounds an untrusted TPMS_ATTEST; a quote of one bank is about
// 150 bytes (TPM2B_ATTEST holds at most sizeof(TPMS_ATTEST)).
const maxAttest = 1024

// Quote is a TPM2_Quote (TPM 2.0 Part 3 §18.4): what the TPM signed and
// its signature, both in TPM wire format, and the PCR values read right
// after, which the quote's pcrDigest covers unless a PCR was extended in
// between (VerifyQuote then fails with ErrQuotePCRs; quote again).
type Quote struct {
	Attest    []byte         // TPMS_ATTEST, the signed message
	Signature []byte         // TPMT_SIGNATURE
	Bank      crypto.Hash    // the PCR bank quoted
	PCRs      map[int][]byte // the quoted PCR values
}

// Quote has attestation key h of compartment cm sign the PCRs indexes of
// bank, with nonce as qualifyingData. h must be a UsageAttest key (a
// restricted signing key), or [pluton.DeviceIDHandle] for the identity key
// (IAK, compartment SecurityMonitor; see [TPM.Identity]).
func (t *TPM) Quote(ctx context.Context, cm pluton.Compartment, h pluton.KeyHandle, nonce []byte, bank crypto.Hash, indexes []int) (*Quote, error) {
	if len(nonce) > MaxNonce {
		return nil, fmt.Errorf("tpm: %w: nonce of %d bytes (at most %d)", pluton.ErrInvalidArgument, len(nonce), MaxNonce)
	}
	if len(indexes) == 0 {
		return nil, fmt.Errorf("tpm: %w: no PCR to quote", pluton.ErrInvalidArgument)
	}
	alg, err := tpmAlg(bank)
	if err != nil {
		return nil, err
	}
	for _, i := range indexes {
		if err := checkIndex(i); err != nil {
			return nil, err
		}
	}
	want := slices.Clone(indexes)
	slices.Sort(want)
	want = slices.Compact(want)
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	var kh tpm2.NamedHandle
	var kalg pluton.Algorithm
	if h == pluton.DeviceIDHandle {
		// The IAK is a primary key: created for the quote, flushed after.
		if err := iakOwner(cm); err != nil {
			return nil, err
		}
		var pub *ecdsa.PublicKey
		if kh, pub, err = t.createIAK(); err != nil {
			return nil, err
		}
		defer t.flush(kh.Handle)
		t.iakPub, kalg = pub, pluton.ECDSAP256
	} else {
		k, err := t.entry(cm, h)
		if err != nil {
			return nil, err
		}
		// The state file was validated when read: both names parse.
		if usage, _ := pluton.ParseUsage(k.Usage); usage != pluton.UsageAttest {
			return nil, fmt.Errorf("tpm: %v has usage %v, quotes need %v: %w", h, usage, pluton.UsageAttest, pluton.ErrUsage)
		}
		if kh, err = t.load(k); err != nil {
			return nil, err
		}
		kalg, _ = pluton.ParseAlgorithm(k.Algorithm)
	}
	rsp, err := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: kh.Handle, Name: kh.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpmHash(kalg)}),
		},
		PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{selection(alg, want)}},
	}.Execute(t.tpm)
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCQuote, err)
	}
	vals, err := t.readPCRs(bank, alg, want)
	if err != nil {
		return nil, err
	}
	return &Quote{Attest: rsp.Quoted.Bytes(), Signature: tpm2.Marshal(rsp.Signature), Bank: bank, PCRs: vals}, nil
}

// VerifyQuote checks an untrusted quote: that pub (the attestation key's
// public key, from a trusted source) signed q.Attest; that it is a
// TPM-generated quote (magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE,
// Part 2 §10.12.8); that its extraData is nonce; and that it covers
// exactly the PCRs of want in bank with pcrDigest = H(want[i0] || want[i1]
// || …) in increasing index order, H being the signing scheme's hash
// (Part 3 §18.4.1). q.PCRs is ignored: want comes from the verifier (a
// replayed event log, reference values) or is q.PCRs once the caller
// decides to take them. Every failure is a *QuoteError.
func VerifyQuote(pub crypto.PublicKey, q *Quote, nonce []byte, bank crypto.Hash, want map[int][]byte) error {
	fail := func(reason error, f string, a ...any) error {
		return &QuoteError{Reason: reason, Detail: fmt.Sprintf(f, a...)}
	}
	if q == nil {
		return fail(ErrQuoteMalformed, "nil quote")
	}
	key, alg, err := attestKey(pub, "quote")
	if err != nil {
		return err
	}
	if len(q.Attest) > maxAttest || len(q.Signature) > maxAttest {
		return fail(ErrQuoteMalformed, "attestation or signature longer than %d bytes", maxAttest)
	}

	// 1. The signature: a TPMT_SIGNATURE with the ECDSA scheme and the
	// key's hash, over H(TPMS_ATTEST).
	if e := attestSignature(key, alg, q.Attest, q.Signature); e != nil {
		if e.malformed {
			return fail(ErrQuoteMalformed, "%s", e.detail)
		}
		return fail(ErrQuoteSignature, "%s", e.detail)
	}

	// 2. The attestation structure, now authentic.
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Attest)
	if err != nil || !bytes.Equal(tpm2.Marshal(att), q.Attest) {
		return fail(ErrQuoteMalformed, "TPMS_ATTEST does not parse")
	}
	if att.Magic != tpm2.TPMGeneratedValue || att.Type != tpm2.TPMSTAttestQuote {
		return fail(ErrQuoteMalformed, "not a TPM-generated quote (magic %#x, type %v)", uint32(att.Magic), att.Type)
	}
	if subtle.ConstantTimeCompare(att.ExtraData.Buffer, nonce) != 1 {
		return fail(ErrQuoteNonce, "")
	}
	info, err := att.Attested.Quote()
	if err != nil {
		return fail(ErrQuoteMalformed, "quote info: %v", err)
	}

	// 3. The PCRs: the selection is exactly want's indexes in bank.
	balg, err := tpmAlg(bank)
	if err != nil {
		return err
	}
	idx := make([]int, 0, len(want))
	for i, v := range want {
		if checkIndex(i) != nil || len(v) != bank.Size() {
			return fmt.Errorf("tpm: quote: %w: PCR %d or its value of %d bytes", pluton.ErrInvalidArgument, i, len(v))
		}
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var got []int
	for _, s := range info.PCRSelect.PCRSelections {
		if s.Hash != balg {
			return fail(ErrQuotePCRs, "quoted bank %v, want %v", s.Hash, balg)
		}
		for i := range len(s.PCRSelect) * 8 {
			if s.PCRSelect[i/8]&(1<<(i%8)) != 0 {
				got = append(got, i)
			}
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, idx) {
		return fail(ErrQuotePCRs, "quoted PCRs %v, want %v", got, idx)
	}
	h := alg.Hash().New()
	for _, i := range idx {
		h.Write(want[i])
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), info.PCRDigest.Buffer) != 1 {
		return fail(ErrQuotePCRs, "pcrDigest differs")
	}
	return nil
}
