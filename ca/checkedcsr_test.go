package ca_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

// TestCheckedCSR: Check takes a CheckedCSR only for the very bytes it was
// made from, and checks the request in full otherwise, so a CheckedCSR
// can never vouch for another request.
func TestCheckedCSR(t *testing.T) {
	products := ca.Products{"sku-a": catest.HWType}
	ueid := catest.UEID(t)
	good := catest.CSR(t, catest.Key(t), pkix.Name{}, pkix.Extension{Id: ca.OIDDiceTcbInfo, Value: catest.TcbInfo(t)})
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1 // the signature's last byte
	if _, err := ca.ParseCSR(bad); !errors.Is(err, ca.ErrBadCSRSignature) {
		t.Fatalf("ParseCSR of a bad signature: %v", err)
	}
	checked, err := ca.CheckCSR(good)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := ca.ParseCSR(good)
	if !bytes.Equal(checked.PublicKeyInfo(), parsed.RawSubjectPublicKeyInfo) {
		t.Fatal("PublicKeyInfo is not the CSR's key")
	}

	// CheckCSR refuses what ParseCSR refuses, with the same error.
	if _, err := ca.CheckCSR(bad); !errors.Is(err, ca.ErrBadCSRSignature) {
		t.Fatalf("CheckCSR of a bad signature: %v", err)
	}
	if _, err := ca.CheckCSR(make([]byte, ca.MaxCSRSize+1)); !errors.Is(err, ca.ErrTooLarge) {
		t.Fatalf("CheckCSR of a huge CSR: %v", err)
	}

	// It keeps a copy: changing the caller's bytes changes nothing.
	own := bytes.Clone(good)
	c2, err := ca.CheckCSR(own)
	if err != nil {
		t.Fatal(err)
	}
	clear(own)
	if !bytes.Equal(c2.PublicKeyInfo(), parsed.RawSubjectPublicKeyInfo) {
		t.Fatal("CheckCSR kept the caller's bytes")
	}
	if _, err := ca.Check(&ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, CSR: good, CheckedCSR: c2}, products); err != nil {
		t.Fatalf("the checked bytes: %v", err)
	}

	for _, tc := range []struct {
		name    string
		csr     []byte
		checked *ca.CheckedCSR
		want    error
	}{
		{"checked", good, checked, nil},
		{"another request's CheckedCSR", bad, checked, ca.ErrBadCSRSignature},
		{"zero CheckedCSR", bad, &ca.CheckedCSR{}, ca.ErrBadCSRSignature},
		{"zero CheckedCSR, good CSR", good, &ca.CheckedCSR{}, nil},
		{"no CSR", nil, checked, ca.ErrMalformedCSR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ca.Check(&ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, CSR: tc.csr, CheckedCSR: tc.checked}, products)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Check: %v, want %v", err, tc.want)
			}
			if err == nil && !bytes.Equal(c.CSR.RawSubjectPublicKeyInfo, parsed.RawSubjectPublicKeyInfo) {
				t.Fatal("checked another key")
			}
		})
	}
	// The other checks of Check still apply to a checked CSR.
	if _, err := ca.Check(&ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-b", UEID: ueid, CSR: good, CheckedCSR: checked}, products); !errors.Is(err, ca.ErrUnknownProduct) {
		t.Fatalf("unknown product: %v", err)
	}
}

// TestLocalSignatureChecked: Local says it verified what it issued, and
// that is true: the certificate verifies under Chain[0]; the same
// certificate comes out with or without a CheckedCSR.
func TestLocalSignatureChecked(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	l := newLocal(t, h, nil, nil)
	der := catest.CSR(t, catest.Key(t), pkix.Name{})
	checked, err := ca.CheckCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*ca.CheckedCSR{nil, checked} {
		iss, err := l.Issue(context.Background(), &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: catest.UEID(t), CSR: der, CheckedCSR: c})
		if err != nil {
			t.Fatal(err)
		}
		if !iss.SignatureChecked {
			t.Fatal("Local did not say it checked the signature")
		}
		if err := iss.Certificate.CheckSignatureFrom(iss.Chain[0]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(iss.Certificate.RawSubjectPublicKeyInfo, checked.PublicKeyInfo()) {
			t.Fatal("issued for another key")
		}
	}
}
