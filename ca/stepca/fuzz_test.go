package stepca

import (
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

// FuzzCheckIssued: step-ca's answer is untrusted; whatever it holds,
// checkIssued does not panic, and accepts only the certificate of the
// CSR's key that chains to the pinned root.
func FuzzCheckIssued(f *testing.F) {
	h := catest.NewHierarchy(f, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		f.Fatal(err)
	}
	req := &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: catest.UEID(f), CSR: catest.CSR(f, catest.Key(f), pkix.Name{})}
	iss, err := l.Issue(f.Context(), req)
	if err != nil {
		f.Fatal(err)
	}
	checked, err := ca.Check(req, h.HWTypes())
	if err != nil {
		f.Fatal(err)
	}
	c, err := New(&Config{URL: "https://127.0.0.1:1", Root: h.Root, Products: h.HWTypes(), Key: catest.Key(f), KeyID: "k"})
	if err != nil {
		f.Fatal(err)
	}
	p := func(b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})) }
	leaf, inter := p(iss.Certificate.Raw), p(iss.Chain[0].Raw)
	f.Add(leaf, inter)
	f.Add(leaf, "")
	f.Add(inter, leaf)
	f.Add("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", inter)
	f.Fuzz(func(t *testing.T, crt, chain string) {
		got, err := c.checkIssued(checked, iss.Certificate.SerialNumber, crt, []string{chain})
		if err != nil {
			if !errors.Is(err, ca.ErrSigning) {
				t.Fatalf("error %v is not ErrSigning", err)
			}
			return
		}
		if string(got.Certificate.RawSubjectPublicKeyInfo) != string(checked.CSR.RawSubjectPublicKeyInfo) {
			t.Fatal("accepted a certificate of another key")
		}
	})
}
