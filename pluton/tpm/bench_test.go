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

// BenchmarkTPMCertify compares IdentityKeys (TPM2_CreatePrimary of the IAK
// and of the IDevID, TPM2_Certify, two TPM2_FlushContext) with the same
// five commands sent bare through go-tpm. Most of the time is the TPM's
// two primary-key derivations and the ECDSA signature.
func BenchmarkTPMCertify(b *testing.B) {
	tp := benchTPM(b)
	ctx := b.Context()
	nonce := make([]byte, 32)
	raw := tp.tpm.(retryTPM).tpm
	ek := tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)}
	benchratio.Compare(b,
		func() error { _, err := tp.IdentityKeys(ctx, nonce); return err },
		func() error {
			iak, err := tpm2.CreatePrimary{PrimaryHandle: ek, InPublic: tpm2.New2B(iakTemplate())}.Execute(raw)
			if err != nil {
				return err
			}
			defer tpm2.FlushContext{FlushHandle: iak.ObjectHandle}.Execute(raw)
			dev, err := tpm2.CreatePrimary{PrimaryHandle: ek, InPublic: tpm2.New2B(idevidTemplate())}.Execute(raw)
			if err != nil {
				return err
			}
			defer tpm2.FlushContext{FlushHandle: dev.ObjectHandle}.Execute(raw)
			_, err = tpm2.Certify{
				ObjectHandle:   tpm2.AuthHandle{Handle: dev.ObjectHandle, Name: dev.Name, Auth: tpm2.PasswordAuth(nil)},
				SignHandle:     tpm2.AuthHandle{Handle: iak.ObjectHandle, Name: iak.Name, Auth: tpm2.PasswordAuth(nil)},
				QualifyingData: tpm2.TPM2BData{Buffer: nonce},
				InScheme: tpm2.TPMTSigScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
				},
			}.Execute(raw)
			return err
		})
}

// BenchmarkTPMUnseal compares Unseal (parse the blob, TPM2_Load, a policy
// session salted to the SRK with response encryption, TPM2_PolicyPCR,
// TPM2_Unseal, two TPM2_FlushContext) with the same commands sent bare
// through go-tpm.
func BenchmarkTPMUnseal(b *testing.B) {
	tp := benchTPM(b)
	ctx := b.Context()
	blob, err := tp.Seal(ctx, []byte("benchmark secret"), &SealRequest{Bank: crypto.SHA256, PCRs: []int{0, 4, 7}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := parseSealed(blob)
	if err != nil {
		b.Fatal(err)
	}
	raw := tp.tpm.(retryTPM).tpm
	benchratio.Compare(b,
		func() error { _, err := tp.Unseal(ctx, blob); return err },
		func() error {
			l, err := tpm2.Load{
				ParentHandle: tpm2.AuthHandle{Handle: tp.srk.Handle, Name: tp.srk.Name, Auth: tpm2.PasswordAuth(nil)},
				InPrivate:    s.private,
				InPublic:     s.public,
			}.Execute(raw)
			if err != nil {
				return err
			}
			defer tpm2.FlushContext{FlushHandle: l.ObjectHandle}.Execute(raw)
			sess, closeSess, err := tpm2.PolicySession(raw, tpm2.TPMAlgSHA256, 16,
				tpm2.AESEncryption(128, tpm2.EncryptOut), tpm2.Salted(tp.srk.Handle, tp.srkPub))
			if err != nil {
				return err
			}
			defer closeSess()
			if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: s.sel}).Execute(raw); err != nil {
				return err
			}
			_, err = tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: l.ObjectHandle, Name: l.Name, Auth: sess}}.Execute(raw)
			return err
		})
}
