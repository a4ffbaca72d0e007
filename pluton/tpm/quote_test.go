package tpm_test

import (
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"maps"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/tpm"
)

func TestQuote(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	d := sha256.Sum256([]byte("kernel"))
	d384 := sha512.Sum384([]byte("kernel"))
	if err := tp.ExtendPCR(ctx, 4, map[crypto.Hash][]byte{crypto.SHA256: d[:], crypto.SHA384: d384[:]}); err != nil {
		t.Fatal(err)
	}
	for _, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.ECDSAP384} {
		t.Run(alg.String(), func(t *testing.T) {
			ak, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.SecurityMonitor, Algorithm: alg, Usage: pluton.UsageAttest})
			if err != nil {
				t.Fatal(err)
			}
			nonce := []byte("0123456789abcdef0123456789abcdef")
			for _, bank := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
				q, err := tp.Quote(ctx, pluton.SecurityMonitor, ak.Handle, nonce, bank, []int{0, 4, 7})
				if err != nil {
					t.Fatal(err)
				}
				if err := tpm.VerifyQuote(ak.Public, q, nonce, bank, q.PCRs); err != nil {
					t.Fatal(err)
				}
				// Another nonce.
				if err := tpm.VerifyQuote(ak.Public, q, []byte("another nonce"), bank, q.PCRs); !errors.Is(err, tpm.ErrQuoteNonce) || !errors.Is(err, tpm.ErrQuote) {
					t.Fatalf("other nonce: %v", err)
				}
				// Another PCR value, another selection, another bank.
				bad := maps.Clone(q.PCRs)
				bad[4] = make([]byte, bank.Size())
				if err := tpm.VerifyQuote(ak.Public, q, nonce, bank, bad); !errors.Is(err, tpm.ErrQuotePCRs) {
					t.Fatalf("other PCR value: %v", err)
				}
				delete(bad, 4)
				if err := tpm.VerifyQuote(ak.Public, q, nonce, bank, bad); !errors.Is(err, tpm.ErrQuotePCRs) {
					t.Fatalf("other selection: %v", err)
				}
				// A flipped bit in the signed message.
				q2 := *q
				q2.Attest = append([]byte(nil), q.Attest...)
				q2.Attest[len(q2.Attest)-1] ^= 1
				if err := tpm.VerifyQuote(ak.Public, &q2, nonce, bank, q.PCRs); !errors.Is(err, tpm.ErrQuoteSignature) {
					t.Fatalf("tampered attest: %v", err)
				}
			}
			// Only the owner compartment, only attestation keys.
			if _, err := tp.Quote(ctx, pluton.OS, ak.Handle, nonce, crypto.SHA256, []int{0}); !errors.Is(err, pluton.ErrCompartment) {
				t.Fatalf("other compartment: %v", err)
			}
		})
	}
	sk, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Quote(ctx, pluton.OS, sk.Handle, nil, crypto.SHA256, []int{0}); !errors.Is(err, pluton.ErrUsage) {
		t.Fatalf("quote with a signing key: %v", err)
	}
	// A selection the TPM refuses: the error keeps its response code.
	ak, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageAttest})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tp.Quote(ctx, pluton.OS, ak.Handle, nil, crypto.SHA256, []int{0, 24})
	var ce *tpm.CommandError
	if !errors.As(err, &ce) || ce.Command != tpm2.TPMCCQuote {
		t.Fatalf("quote PCR 24: %v", err)
	}
	if rc, ok := ce.RC(); !ok || !errors.Is(err, tpm2.TPMRCValue) {
		t.Fatalf("quote PCR 24: rc %v, %v", rc, err)
	}
	if _, err := tp.Quote(ctx, pluton.OS, sk.Handle, make([]byte, tpm.MaxNonce+1), crypto.SHA256, []int{0}); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("long nonce: %v", err)
	}
}
