package provision

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

// TestCheckIssued: the certificate a CA returns is checked before it is
// recorded. Its signature is verified here unless the CA says it verified
// it with the product's CA key itself (ca.Issued.SignatureChecked) and
// names that CA: a backend that does not say so, or says so of another
// CA, has its certificate verified, and a wrong one refused.
func TestCheckIssued(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	local, err := ca.NewLocal(&ca.LocalOptions{Root: e.h.Root, Products: e.h.Products})
	if err != nil {
		t.Fatal(err)
	}
	key := catest.Key(t)
	der := catest.CSR(t, key, pkix.Name{})
	csr, err := ca.CheckCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(product string) *ca.Issued {
		iss, err := local.Issue(ctx, &ca.IssueRequest{CSR: der, CheckedCSR: csr, Profile: ca.ProfileIDevID, Product: product, UEID: catest.UEID(t)})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	a, b := issue("sku-a"), issue("sku-b") // b: signed by sku-b's CA
	policy := e.svc.products["sku-a"]
	other := catest.CSR(t, catest.Key(t), pkix.Name{})
	otherCSR, _ := ca.CheckCSR(other)

	for _, tc := range []struct {
		name string
		iss  *ca.Issued
		spki []byte
		ok   bool
	}{
		{"ca.Local, checked", a, csr.PublicKeyInfo(), true},
		{"not said checked", &ca.Issued{Certificate: a.Certificate, Chain: a.Chain}, csr.PublicKeyInfo(), true},
		{"another CA's certificate, not said checked", &ca.Issued{Certificate: b.Certificate, Chain: b.Chain}, csr.PublicKeyInfo(), false},
		{"another CA's certificate, said checked by that CA", b, csr.PublicKeyInfo(), false},
		{"another CA's certificate, said checked by the product's CA", &ca.Issued{Certificate: b.Certificate, Chain: a.Chain, SignatureChecked: true}, csr.PublicKeyInfo(), false},
		{"a certificate of another key", a, otherCSR.PublicKeyInfo(), false},
		{"no certificate", &ca.Issued{Chain: a.Chain, SignatureChecked: true}, csr.PublicKeyInfo(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := checkIssued(policy, tc.iss, tc.spki, "the CSR's key")
			if tc.ok {
				if err != nil || c != tc.iss.Certificate {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrIssuer) {
				t.Fatalf("got %v, want ErrIssuer", err)
			}
		})
	}
}

// checkedCSRIssuer records whether the requests it got carried the CSR
// the service checked.
type checkedCSRIssuer struct {
	ca.Issuer
	checked, unchecked int
}

func (c *checkedCSRIssuer) Issue(ctx context.Context, req *ca.IssueRequest) (*ca.Issued, error) {
	if got, err := ca.CheckCSR(req.CSR); err == nil && req.CheckedCSR != nil &&
		string(req.CheckedCSR.PublicKeyInfo()) == string(got.PublicKeyInfo()) {
		c.checked++
	} else {
		c.unchecked++
	}
	return c.Issuer.Issue(ctx, req)
}

// TestProvisionPassesCheckedCSR: Provision hands the CA the CSR it checked
// (so ca.Check does not verify its signature again) and the certificate
// still verifies under the product's CA.
func TestProvisionPassesCheckedCSR(t *testing.T) {
	e := newEnv(t)
	rec := &checkedCSRIssuer{Issuer: e.issuer}
	e.svc.issuer = rec
	d := e.chip(t, e.fw)
	res, err := e.svc.Provision(context.Background(), e.station, e.request(t, d, e.station))
	if err != nil {
		t.Fatal(err)
	}
	if rec.checked != 1 || rec.unchecked != 0 {
		t.Fatalf("%d requests with the checked CSR, %d without", rec.checked, rec.unchecked)
	}
	c, err := x509.ParseCertificate(res.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSignatureFrom(e.svc.products["sku-a"].Chain[0]); err != nil {
		t.Fatal(err)
	}
}
