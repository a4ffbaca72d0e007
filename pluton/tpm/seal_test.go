package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/tpm"
)

func TestSeal(t *testing.T) {
	tp, sw, path := open(t)
	ctx := t.Context()
	d := sha256.Sum256([]byte("os 1.2.0"))
	ext := map[crypto.Hash][]byte{crypto.SHA256: d[:]}
	if err := tp.ExtendPCR(ctx, 4, ext); err != nil {
		t.Fatal(err)
	}
	secret := []byte("disk encryption key 0123456789ab")
	blob, err := tp.Seal(ctx, secret, &tpm.SealRequest{Bank: crypto.SHA256, PCRs: []int{7, 4, 4}})
	if err != nil {
		t.Fatal(err)
	}
	// Unsealed while PCRs 4 and 7 are unchanged, with a key loaded before
	// (swtpm holds three objects), twice, and after a restart.
	sk, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := tp.Unseal(ctx, blob)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Unseal = %q, %v", got, err)
		}
		if _, err := tp.Key(ctx, pluton.OS, sk.Handle); err != nil {
			t.Fatal(err)
		}
	}
	// Another PCR moving does not matter.
	if err := tp.ExtendPCR(ctx, 5, ext); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	tp, err = tpm.Open(ctx, &tpm.Options{Address: sw.Addr, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if got, err := tp.Unseal(ctx, blob); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal after restart = %q, %v", got, err)
	}

	// Sealed to future values: PCR 4 after one more extend.
	vals, err := tp.ReadPCRs(ctx, crypto.SHA256, []int{4})
	if err != nil {
		t.Fatal(err)
	}
	next := sha256.Sum256(append(bytes.Clone(vals[4]), d[:]...))
	future, err := tp.Seal(ctx, []byte("next"), &tpm.SealRequest{Bank: crypto.SHA256, PCRs: []int{4}, Values: map[int][]byte{4: next[:]}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Unseal(ctx, future); !errors.Is(err, tpm.ErrPolicy) {
		t.Fatalf("unseal before the extend: %v", err)
	}

	// PCR 4 extended: the TPM refuses, with TPM_RC_POLICY_FAIL.
	if err := tp.ExtendPCR(ctx, 4, ext); err != nil {
		t.Fatal(err)
	}
	_, err = tp.Unseal(ctx, blob)
	var ce *tpm.CommandError
	if !errors.Is(err, tpm.ErrPolicy) || !errors.As(err, &ce) || ce.Command != tpm2.TPMCCUnseal {
		t.Fatalf("unseal after extend: %v", err)
	}
	if rc, ok := ce.RC(); !ok || !errors.Is(err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("unseal after extend: rc %#x, %v", uint32(rc), err)
	}
	t.Logf("unseal after extend: %v", err)
	// … and the future blob now opens.
	if got, err := tp.Unseal(ctx, future); err != nil || string(got) != "next" {
		t.Fatalf("Unseal(future) = %q, %v", got, err)
	}

	// A SHA-384 bank.
	b384, err := tp.Seal(ctx, secret[:1], &tpm.SealRequest{Bank: crypto.SHA384, PCRs: []int{0, 16}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.Unseal(ctx, b384); err != nil || !bytes.Equal(got, secret[:1]) {
		t.Fatalf("Unseal(SHA-384) = %q, %v", got, err)
	}

	// Bad requests and blobs, refused before the TPM sees them.
	for _, tc := range []struct {
		name   string
		secret []byte
		req    *tpm.SealRequest
	}{
		{"empty secret", nil, &tpm.SealRequest{Bank: crypto.SHA256, PCRs: []int{0}}},
		{"long secret", make([]byte, tpm.MaxSealSize+1), &tpm.SealRequest{Bank: crypto.SHA256, PCRs: []int{0}}},
		{"nil request", secret, nil},
		{"no PCR", secret, &tpm.SealRequest{Bank: crypto.SHA256}},
		{"PCR 32", secret, &tpm.SealRequest{Bank: crypto.SHA256, PCRs: []int{32}}},
		{"bank", secret, &tpm.SealRequest{Bank: crypto.MD5, PCRs: []int{0}}},
		{"missing value", secret, &tpm.SealRequest{Bank: crypto.SHA256, PCRs: []int{0, 1}, Values: map[int][]byte{0: make([]byte, 32)}}},
		{"short value", secret, &tpm.SealRequest{Bank: crypto.SHA256, PCRs: []int{0}, Values: map[int][]byte{0: make([]byte, 20)}}},
	} {
		if _, err := tp.Seal(ctx, tc.secret, tc.req); !errors.Is(err, pluton.ErrInvalidArgument) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	for _, bad := range [][]byte{nil, blob[:10], blob[:len(blob)-1], append(bytes.Clone(blob), 0),
		append([]byte("rootline tpm sealed\x02"), blob[20:]...)} {
		if _, err := tp.Unseal(ctx, bad); !errors.Is(err, tpm.ErrSealedBlob) {
			t.Errorf("bad blob %x: %v", bad, err)
		}
	}
	// A blob whose PCR selection was changed: the policy differs.
	i := len("rootline tpm sealed") + 1 + 2 + 4 + 2 + 1 // the first byte of the bitmap
	changed := bytes.Clone(blob)
	changed[i] ^= 1 // PCR 0 added
	if _, err := tp.Unseal(ctx, changed); !errors.Is(err, tpm.ErrPolicy) {
		t.Fatalf("changed selection: %v", err)
	}
}

// TestPCRPolicyDigest checks the policy digest Seal computes against
// go-tpm's policy calculator (an independent implementation of TPM 2.0
// Part 3 §23.7).
func TestPCRPolicyDigest(t *testing.T) {
	idx := []int{0, 4, 7}
	vals := map[int][]byte{0: make([]byte, 32), 4: bytes.Repeat([]byte{4}, 32), 7: bytes.Repeat([]byte{7}, 32)}
	sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0x91, 0, 0}}}}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, i := range idx {
		h.Write(vals[i])
	}
	if err := (tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}, Pcrs: sel}).Update(calc); err != nil {
		t.Fatal(err)
	}
	if got := tpm.PCRPolicyForTest(sel, idx, vals); !bytes.Equal(got, calc.Hash().Digest) {
		t.Fatalf("policy %x, go-tpm %x", got, calc.Hash().Digest)
	}
}

func FuzzUnsealBlob(f *testing.F) {
	f.Add([]byte("rootline tpm sealed\x01"))
	f.Add([]byte("rootline tpm sealed\x01\x00\x0a\x00\x00\x00\x01\x00\x0b\x03\x10\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := tpm.ParseSealedForTest(b); err != nil && !errors.Is(err, tpm.ErrSealedBlob) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
