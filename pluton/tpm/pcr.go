package tpm

import (
	"context"
	"crypto"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
)

// maxPCR bounds a PCR index before the TPM sees it: a TPMS_PCR_SELECTION
// has at most 255 bytes of bitmap, but PC Client TPMs implement 24 PCRs
// (TCG PC Client Platform TPM Profile §4.6); indexes 24–31 still reach the
// TPM, which answers with its own error.
const maxPCR = 31

// tpmAlg maps a Go hash to its TPM_ALG_ID (TPM 2.0 Part 2 §6.3).
func tpmAlg(h crypto.Hash) (tpm2.TPMIAlgHash, error) {
	switch h {
	case crypto.SHA1:
		return tpm2.TPMAlgSHA1, nil
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, nil
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, nil
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, nil
	}
	return 0, fmt.Errorf("tpm: %w: PCR bank %v", pluton.ErrInvalidArgument, h)
}

func checkIndex(i int) error {
	if i < 0 || i > maxPCR {
		return fmt.Errorf("tpm: %w: PCR index %d outside [0, %d]", pluton.ErrInvalidArgument, i, maxPCR)
	}
	return nil
}

// selection is a TPMS_PCR_SELECTION of bank with the given indexes, its
// bitmap at least 3 bytes (24 PCRs), as PC Client TPMs require.
func selection(alg tpm2.TPMIAlgHash, indexes []int) tpm2.TPMSPCRSelection {
	n := 3
	for _, i := range indexes {
		n = max(n, i/8+1)
	}
	bits := make([]byte, n)
	for _, i := range indexes {
		bits[i/8] |= 1 << (i % 8)
	}
	return tpm2.TPMSPCRSelection{Hash: alg, PCRSelect: bits}
}

// ExtendPCR extends PCR index with one digest per bank (TPM2_PCR_Extend,
// TPM 2.0 Part 3 §22.2): PCR_new = H_bank(PCR_old || digest) in each bank
// given. Banks the TPM has and that are not given are left alone — give
// every allocated bank, as [github.com/rootline/rootline/pluton/measure.Registers.ExtendDigests] does, so that
// the event log replays in all of them.
func (t *TPM) ExtendPCR(ctx context.Context, index int, digests map[crypto.Hash][]byte) error {
	if err := checkIndex(index); err != nil {
		return err
	}
	if len(digests) == 0 {
		return fmt.Errorf("tpm: %w: no digest to extend", pluton.ErrInvalidArgument)
	}
	var vals tpm2.TPMLDigestValues
	banks := make([]crypto.Hash, 0, len(digests))
	for h := range digests {
		banks = append(banks, h)
	}
	slices.Sort(banks)
	for _, h := range banks {
		alg, err := tpmAlg(h)
		if err != nil {
			return err
		}
		if len(digests[h]) != h.Size() {
			return fmt.Errorf("tpm: %w: %v digest is %d bytes, want %d", pluton.ErrInvalidArgument, h, len(digests[h]), h.Size())
		}
		vals.Digests = append(vals.Digests, tpm2.TPMTHA{HashAlg: alg, Digest: append([]byte(nil), digests[h]...)})
	}
	if err := t.lock(ctx); err != nil {
		return err
	}
	defer t.mu.Unlock()
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Auth: tpm2.PasswordAuth(nil)},
		Digests:   vals,
	}.Execute(t.tpm)
	return cmdErr(tpm2.TPMCCPCRExtend, err)
}

// ReadPCRs reads PCRs of one bank with TPM2_PCR_Read (TPM 2.0 Part 3
// §22.4), which returns at most eight digests per command. Any index the
// TPM leaves out fails the whole read with [ErrPCRSelection].
func (t *TPM) ReadPCRs(ctx context.Context, bank crypto.Hash, indexes []int) (map[int][]byte, error) {
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
	return t.readPCRs(bank, alg, want)
}

func (t *TPM) readPCRs(bank crypto.Hash, alg tpm2.TPMIAlgHash, want []int) (map[int][]byte, error) {
	out := make(map[int][]byte, len(want))
	for len(want) > 0 {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{
			PCRSelections: []tpm2.TPMSPCRSelection{selection(alg, want)},
		}}.Execute(t.tpm)
		if err != nil {
			return nil, cmdErr(tpm2.TPMCCPCRRead, err)
		}
		// The digests come in the order of the bits set in
		// pcrSelectionOut, lowest index first (Part 3 §22.4.1).
		var got []int
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash != alg {
				return nil, fmt.Errorf("tpm: TPM2_PCR_Read returned bank %v, asked for %v", s.Hash, alg)
			}
			for i := range len(s.PCRSelect) * 8 {
				if s.PCRSelect[i/8]&(1<<(i%8)) != 0 {
					got = append(got, i)
				}
			}
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("%w: bank %v, PCRs %v", ErrPCRSelection, bank, want)
		}
		for j, i := range got {
			if !slices.Contains(want, i) || len(rsp.PCRValues.Digests[j].Buffer) != bank.Size() {
				return nil, fmt.Errorf("tpm: TPM2_PCR_Read returned PCR %d not asked for, or of the wrong size", i)
			}
			out[i] = rsp.PCRValues.Digests[j].Buffer
		}
		want = slices.DeleteFunc(want, func(i int) bool { _, ok := out[i]; return ok })
	}
	return out, nil
}
