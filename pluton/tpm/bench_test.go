package tpm

import (
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/internal/benchratio"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
)

func benchTPM(b *testing.B) *TPM {
	sw := tpmtest.Start(b)
	tp, err := Open(b.Context(), &Options{Address: sw.Addr})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tp.Close() })
	return tp
}

// BenchmarkTPMSign compares a Sign through rootline's crypto.Signer with a
// bare go-tpm TPM2_Sign on the same loaded key and connection.
func BenchmarkTPMSign(b *testing.B) {
	tp := benchTPM(b)
	ctx := b.Context()
	info, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	if err != nil {
		b.Fatal(err)
	}
	s, err := tp.Signer(ctx, pluton.OS, info.Handle)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("bench"))
	if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil { // loads the key
		b.Fatal(err)
	}
	kh := tp.loadedH
	raw := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: kh.Handle, Name: kh.Name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: d[:]},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}
	benchratio.Compare(b,
		func() error { _, err := s.Sign(nil, d[:], crypto.SHA256); return err },
		func() error { _, err := raw.Execute(tp.tpm.(retryTPM).tpm); return err })
}

// BenchmarkTPMQuote compares Quote (TPM2_Quote, then TPM2_PCR_Read of the
// quoted PCRs) with the same two commands sent bare through go-tpm.
func BenchmarkTPMQuote(b *testing.B) {
	tp := benchTPM(b)
	ctx := b.Context()
	info, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageAttest})
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, 32)
	pcrs := []int{0, 4, 7}
	if _, err := tp.Quote(ctx, pluton.OS, info.Handle, nonce, crypto.SHA256, pcrs); err != nil { // loads the key
		b.Fatal(err)
	}
	kh := tp.loadedH
	sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{selection(tpm2.TPMAlgSHA256, pcrs)}}
	quote := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: kh.Handle, Name: kh.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		PCRSelect: sel,
	}
	benchratio.Compare(b,
		func() error {
			_, err := tp.Quote(ctx, pluton.OS, info.Handle, nonce, crypto.SHA256, pcrs)
			return err
		},
		func() error {
			if _, err := quote.Execute(tp.tpm.(retryTPM).tpm); err != nil {
				return err
			}
			_, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(tp.tpm.(retryTPM).tpm)
			return err
		})
}
