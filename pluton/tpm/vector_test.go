package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/rootline/rootline/pluton/tpm"
)

// quoteVector is a quote recorded from swtpm (testdata/quote-swtpm.json),
// so that VerifyQuote is checked against real TPM output without a TPM.
type quoteVector struct {
	Comment   string            `json:"comment"`
	AK        []byte            `json:"ak_spki"`
	Nonce     []byte            `json:"nonce"`
	Attest    []byte            `json:"attest"`
	Signature []byte            `json:"signature"`
	PCRs      map[string][]byte `json:"pcrs_sha256"`
}

const vectorFile = "testdata/quote-swtpm.json"

func loadVector(t testing.TB) (crypto.PublicKey, *tpm.Quote, []byte, map[int][]byte) {
	b, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var v quoteVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(v.AK)
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{0: v.PCRs["0"], 4: v.PCRs["4"]}
	return pub, &tpm.Quote{Attest: v.Attest, Signature: v.Signature, Bank: crypto.SHA256, PCRs: pcrs}, v.Nonce, pcrs
}

func TestQuoteVector(t *testing.T) {
	pub, q, nonce, pcrs := loadVector(t)
	if err := tpm.VerifyQuote(pub, q, nonce, crypto.SHA256, pcrs); err != nil {
		t.Fatal(err)
	}
	if err := tpm.VerifyQuote(pub, q, nonce[1:], crypto.SHA256, pcrs); !errors.Is(err, tpm.ErrQuoteNonce) {
		t.Fatalf("other nonce: %v", err)
	}
	if err := tpm.VerifyQuote(pub, q, nonce, crypto.SHA384, map[int][]byte{0: make([]byte, 48), 4: make([]byte, 48)}); !errors.Is(err, tpm.ErrQuotePCRs) {
		t.Fatalf("other bank: %v", err)
	}
	// PCR 4 after one extend of 0x01 || 0^31 from reset (all zeros):
	// SHA-256(0^32 || 0x01 || 0^31) (TPM 2.0 Part 1 §17.2, PCR Extend).
	in := make([]byte, 64)
	in[32] = 1
	if want := sha256.Sum256(in); !bytes.Equal(pcrs[4], want[:]) || !bytes.Equal(pcrs[0], make([]byte, 32)) {
		t.Fatalf("recorded PCRs: %x, %x", pcrs[0], pcrs[4])
	}
}

func FuzzVerifyQuote(f *testing.F) {
	pub, q, nonce, pcrs := loadVector(f)
	f.Add(q.Attest, q.Signature)
	f.Add(q.Attest[:len(q.Attest)/2], q.Signature)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, attest, sig []byte) {
		err := tpm.VerifyQuote(pub, &tpm.Quote{Attest: attest, Signature: sig}, nonce, crypto.SHA256, pcrs)
		if err != nil && !errors.Is(err, tpm.ErrQuote) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
