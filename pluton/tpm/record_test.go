//go:build record

// The recorders of the swtpm known answers in testdata/, built only with
// the record tag, so that no ordinary test run skips anything:
//
//	go test -tags record -run 'TestRecord' ./pluton/tpm
package tpm_test

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"os"
	"testing"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
)

// TestRecordCertifyVector rewrites testdata/certify-swtpm.json from a
// fresh swtpm.
func TestRecordCertifyVector(t *testing.T) {
	tp, _, _ := open(t)
	nonce := []byte("rootline certify vector nonce 01")
	ik, err := tp.IdentityKeys(t.Context(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(ik.IAK)
	v := certifyVector{Comment: "TPM2_Certify from swtpm: the IDevID (TPMT_PUBLIC) certified by the IAK (ECDSA P-256, SHA-256), both primary keys of the endorsement hierarchy",
		IAK: spki, IDevID: ik.IDevIDPublic, Nonce: nonce, Attest: ik.Attest, Signature: ik.Signature}
	b, _ := json.MarshalIndent(v, "", "\t")
	if err := os.WriteFile(certifyVectorFile, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRecordQuoteVector rewrites testdata/quote-swtpm.json from a fresh
// swtpm.
func TestRecordQuoteVector(t *testing.T) {
	tp, _, _ := open(t)
	_ = tpmtest.Start
	ctx := t.Context()
	ak, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageAttest})
	if err != nil {
		t.Fatal(err)
	}
	d := make([]byte, 32)
	d[0] = 1
	if err := tp.ExtendPCR(ctx, 4, map[crypto.Hash][]byte{crypto.SHA256: d}); err != nil {
		t.Fatal(err)
	}
	nonce := []byte("rootline quote vector nonce 0001")
	q, err := tp.Quote(ctx, pluton.OS, ak.Handle, nonce, crypto.SHA256, []int{0, 4})
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(ak.Public)
	v := quoteVector{Comment: "TPM2_Quote from swtpm: ECDSA P-256 restricted AK, SHA-256 bank, PCR 4 extended once with 0x01 00..00",
		AK: spki, Nonce: nonce, Attest: q.Attest, Signature: q.Signature,
		PCRs: map[string][]byte{"0": q.PCRs[0], "4": q.PCRs[4]}}
	b, _ := json.MarshalIndent(v, "", "\t")
	if err := os.WriteFile(vectorFile, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
