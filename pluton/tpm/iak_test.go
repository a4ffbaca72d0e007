package tpm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton/tpm"
)

func TestParseIAKPublic(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	ik, err := tp.IdentityKeys(ctx, []byte("iak public nonce"))
	if err != nil {
		t.Fatal(err)
	}
	iak, err := tpm.ParseIAKPublic(ik.IAKPublic)
	if err != nil {
		t.Fatal(err)
	}
	if !iak.Equal(ik.IAK) {
		t.Fatal("ParseIAKPublic returns another key")
	}
	// The UEID a verifier computes from the IAK is the TPM's.
	id, err := tp.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := tpm.UEID(iak)
	if err != nil || !bytes.Equal(u, id.UEID) {
		t.Fatalf("UEID %x, TPM says %x (%v)", u, id.UEID, err)
	}
	// The IDevID is not restricted: not an IAK.
	if _, err := tpm.ParseIAKPublic(ik.IDevIDPublic); !errors.Is(err, tpm.ErrCertifyAttributes) {
		t.Fatalf("IDevID as IAK: %v", err)
	}
	// A trailing byte, a truncation.
	for _, b := range [][]byte{append(bytes.Clone(ik.IAKPublic), 0), ik.IAKPublic[:len(ik.IAKPublic)-1], nil} {
		if _, err := tpm.ParseIAKPublic(b); !errors.Is(err, tpm.ErrCertifyMalformed) {
			t.Fatalf("malformed: %v", err)
		}
	}
	// An IAK that may leave its TPM.
	area, err := tpm2.Unmarshal[tpm2.TPMTPublic](ik.IAKPublic)
	if err != nil {
		t.Fatal(err)
	}
	area.ObjectAttributes.FixedTPM = false
	if _, err := tpm.ParseIAKPublic(tpm2.Marshal(area)); !errors.Is(err, tpm.ErrCertifyAttributes) {
		t.Fatalf("not fixedTPM: %v", err)
	}
	if _, err := tpm.UEID(nil); err == nil {
		t.Fatal("UEID of no key")
	}
}

func FuzzParseIAKPublic(f *testing.F) {
	v, _ := loadCertifyVector(f)
	// The vector's IDevID area, and the same key made restricted (an IAK's
	// attributes).
	f.Add(v.IDevID)
	area, err := tpm2.Unmarshal[tpm2.TPMTPublic](v.IDevID)
	if err != nil {
		f.Fatal(err)
	}
	area.ObjectAttributes.Restricted = true
	iak := tpm2.Marshal(area)
	if _, err := tpm.ParseIAKPublic(iak); err != nil {
		f.Fatalf("seed: %v", err)
	}
	f.Add(iak)
	f.Add(iak[:len(iak)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		key, err := tpm.ParseIAKPublic(b)
		if err != nil {
			if !errors.Is(err, tpm.ErrCertify) || key != nil {
				t.Fatalf("untyped error or key with error: %v", err)
			}
			return
		}
		// An accepted area is canonical: it marshals back to b.
		a, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
		if err != nil || !bytes.Equal(tpm2.Marshal(a), b) || !a.ObjectAttributes.Restricted {
			t.Fatal("accepted a non-canonical or unrestricted area")
		}
	})
}
