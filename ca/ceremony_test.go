package ca_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

func TestCeremony(t *testing.T) {
	ctx := t.Context()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	root, err := ca.NewRoot(ctx, rootKey, pkix.Name{Organization: []string{"Rootline Test"}, CommonName: "Root"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, interKey, _ := ed25519.GenerateKey(rand.Reader)
	inter, err := ca.NewIntermediate(ctx, root, rootKey, interKey.Public(), pkix.Name{CommonName: "sku-a Issuing CA"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		c       *x509.Certificate
		pathLen int
		sigAlg  x509.SignatureAlgorithm
	}{
		{"root", root, 1, x509.ECDSAWithSHA384},
		{"intermediate", inter, 0, x509.ECDSAWithSHA384},
	} {
		c := tc.c
		if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != tc.pathLen || (tc.pathLen == 0) != c.MaxPathLenZero {
			t.Errorf("%s: CA %v, pathLen %d (zero %v), want CA, %d", tc.name, c.IsCA, c.MaxPathLen, c.MaxPathLenZero, tc.pathLen)
		}
		if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
			t.Errorf("%s: key usage %b", tc.name, c.KeyUsage)
		}
		if !c.NotAfter.Equal(ca.NotAfterForever()) {
			t.Errorf("%s: notAfter %v", tc.name, c.NotAfter)
		}
		if c.SignatureAlgorithm != tc.sigAlg {
			t.Errorf("%s: signature algorithm %v, want %v", tc.name, c.SignatureAlgorithm, tc.sigAlg)
		}
		if len(c.SubjectKeyId) != 20 {
			t.Errorf("%s: subject key id %x", tc.name, c.SubjectKeyId)
		}
		if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 127 {
			t.Errorf("%s: serial %x", tc.name, c.SerialNumber)
		}
		for _, e := range c.Extensions {
			if (e.Id.String() == "2.5.29.19" || e.Id.String() == "2.5.29.15") && !e.Critical {
				t.Errorf("%s: extension %v not critical", tc.name, e.Id)
			}
		}
		if w := catest.Lint(t, c.Raw); len(w) != 0 {
			t.Errorf("%s: zlint warnings %v", tc.name, w)
		}
	}
	if len(root.AuthorityKeyId) != 0 && string(root.AuthorityKeyId) != string(root.SubjectKeyId) {
		t.Error("root authority key id is not its own")
	}
	if string(inter.AuthorityKeyId) != string(root.SubjectKeyId) {
		t.Error("intermediate authority key id is not the root's subject key id")
	}
	if out, err := catest.OpenSSLVerify(t, root, nil, inter, nil); err != nil {
		t.Errorf("openssl verify of the intermediate: %v: %s", err, out)
	}

	// The intermediate may not certify CAs (pathLen 0).
	if _, err := ca.NewIntermediate(ctx, inter, interKey, interKey.Public(), pkix.Name{CommonName: "x"}, nil); !errors.Is(err, ca.ErrInvalidCA) {
		t.Errorf("intermediate under an intermediate: %v", err)
	}
	// The root signer must be the root's key.
	other := catest.Key(t)
	if _, err := ca.NewIntermediate(ctx, root, other, other.Public(), pkix.Name{CommonName: "x"}, nil); !errors.Is(err, ca.ErrInvalidCA) {
		t.Errorf("intermediate signed by another key: %v", err)
	}
	// An intermediate may not outlive its root.
	short, err := ca.NewRoot(ctx, rootKey, pkix.Name{CommonName: "Short Root"}, &ca.CAOptions{NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.NewIntermediate(ctx, short, rootKey, other.Public(), pkix.Name{CommonName: "x"}, nil); !errors.Is(err, ca.ErrInvalidCA) {
		t.Errorf("intermediate outliving its root: %v", err)
	}
	// An empty subject, an RSA key, a nil signer.
	if _, err := ca.NewRoot(ctx, rootKey, pkix.Name{}, nil); !errors.Is(err, ca.ErrInvalidCA) {
		t.Errorf("empty subject: %v", err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.NewRoot(ctx, rsaKey, pkix.Name{CommonName: "RSA"}, nil); !errors.Is(err, ca.ErrInvalidCA) {
		t.Errorf("RSA root: %v", err)
	}
	if _, err := ca.NewRoot(ctx, nil, pkix.Name{CommonName: "nil"}, nil); !errors.Is(err, ca.ErrInvalidCA) {
		t.Errorf("nil signer: %v", err)
	}
}

// TestNewLocalChecks: NewLocal refuses a hierarchy that does not hold
// together.
func TestNewLocalChecks(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	other := catest.NewHierarchy(t, "sku-a")
	p := h.Products[0]
	for name, opts := range map[string]*ca.LocalOptions{
		"no root":        {Products: h.Products},
		"no products":    {Root: h.Root},
		"foreign inter":  {Root: h.Root, Products: other.Products},
		"wrong signer":   {Root: h.Root, Products: []ca.Product{{Name: "sku-a", HWType: p.HWType, Authority: ca.Authority{Certificate: p.Certificate, Signer: catest.Key(t)}}}},
		"root as issuer": {Root: h.Root, Products: []ca.Product{{Name: "sku-a", HWType: p.HWType, Authority: ca.Authority{Certificate: h.Root, Signer: h.RootKey}}}},
		"bad hwType":     {Root: h.Root, Products: []ca.Product{{Name: "sku-a", HWType: nil, Authority: p.Authority}}},
		"bad name":       {Root: h.Root, Products: []ca.Product{{Name: "sku a", HWType: p.HWType, Authority: p.Authority}}},
		"reserved name":  {Root: h.Root, Products: []ca.Product{{Name: ca.StationsIssuer, HWType: p.HWType, Authority: p.Authority}}},
		"duplicate":      {Root: h.Root, Products: []ca.Product{p, p}},
		"unknown CRL DP": {Root: h.Root, Products: h.Products, CRLDistributionPoints: map[string]string{"sku-z": "http://x"}},
		"short CRLs":     {Root: h.Root, Products: h.Products, CRLValidity: time.Minute},
	} {
		if _, err := ca.NewLocal(opts); !errors.Is(err, ca.ErrInvalidCA) {
			t.Errorf("%s: %v, want ErrInvalidCA", name, err)
		}
	}
}

// TestKeylessProduct: a product known without its key: stations may be
// bound to it, but nothing is issued for it.
func TestKeylessProduct(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	products := []ca.Product{h.Products[0], h.Products[1]}
	products[1].Signer = nil
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: products, Stations: h.Stations})
	if err != nil {
		t.Fatal(err)
	}
	reqs := catest.Requests(t)
	if _, err := l.Issue(t.Context(), reqs["idevid-no-tcbinfo"]); !errors.Is(err, ca.ErrUnknownProduct) { // sku-b
		t.Errorf("issuing for a keyless product: %v", err)
	}
	if _, err := l.Issue(t.Context(), reqs["station"]); err != nil { // bound to sku-a and sku-b
		t.Errorf("a station bound to a keyless product: %v", err)
	}
	if _, err := l.CRLFor(t.Context(), "sku-b"); !errors.Is(err, ca.ErrUnknownIssuer) {
		t.Errorf("CRL of a keyless product: %v", err)
	}
	if _, err := l.Issue(t.Context(), reqs["idevid"]); err != nil {
		t.Errorf("sku-a: %v", err)
	}
}
