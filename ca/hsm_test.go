package ca_test

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"slices"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
)

// Package ca never imports package hsm (its keys are crypto.Signers); its
// tests do, to run the hierarchy with keys in a real SoftHSM2 token.

// softHSMHierarchy makes a root (P-384) and, per product, an intermediate
// (P-256), keys generated in a fresh SoftHSM2 token and every CA
// certificate signed there. The module is closed at the end of the test.
func softHSMHierarchy(t testing.TB, products ...string) (*catest.Hierarchy, *hsm.Module) {
	t.Helper()
	uri, _ := hsmtest.NewSoftHSM(t)
	ctx := t.Context()
	m, err := hsm.Open(ctx, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	key := func(label string, alg hsm.Algorithm) crypto.Signer {
		_, u, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: label, Algorithm: alg})
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.Signer(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h := &catest.Hierarchy{RootKey: key("root", hsm.P384)}
	h.Root, err = ca.NewRoot(ctx, h.RootKey, pkix.Name{Organization: []string{"Rootline Test"}, CommonName: "Rootline Test Root CA"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inter := func(label string) ca.Authority {
		s := key(label, hsm.P256)
		c, err := ca.NewIntermediate(ctx, h.Root, h.RootKey, s.Public(), pkix.Name{Organization: []string{"Rootline Test"}, CommonName: label + " Issuing CA"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ca.Authority{Certificate: c, Signer: s}
	}
	for i, p := range products {
		h.Products = append(h.Products, ca.Product{Name: p, HWType: append(slices.Clone(catest.HWType), i+1), Authority: inter(p)})
	}
	s := inter("stations")
	h.Stations = &s
	return h, m
}

// TestLocalSoftHSM: the ceremony and every profile with the CA keys in
// SoftHSM2; openssl verify and zlint on all of it; and a token that goes
// away mid-run fails issuance with ErrSigning, issuing and logging nothing.
func TestLocalSoftHSM(t *testing.T) {
	h, m := softHSMHierarchy(t, "sku-a", "sku-b")
	for _, c := range []*x509.Certificate{h.Root, h.Products[0].Certificate} {
		if w := catest.Lint(t, c.Raw); len(w) != 0 {
			t.Errorf("%s: zlint warnings %v", c.Subject.CommonName, w)
		}
	}
	if h.Root.SignatureAlgorithm != x509.ECDSAWithSHA384 || h.Products[0].Certificate.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Error("the P-384 root does not sign with ECDSA-SHA384")
	}
	rec := &catest.Recorder{}
	l := newLocal(t, h, nil, rec.Logger())
	for name, req := range catest.Requests(t) {
		t.Run(name, func(t *testing.T) {
			iss, err := l.Issue(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			catest.CheckIssued(t, iss, req, h.Root, h.HWTypes())
			if w := catest.Lint(t, iss.Certificate.Raw); len(w) != 0 {
				t.Errorf("zlint warnings %v", w)
			}
			if out, err := catest.OpenSSLVerify(t, h.Root, iss.Chain, iss.Certificate, nil); err != nil {
				t.Errorf("openssl verify: %v: %s", err, out)
			}
		})
	}
	der, err := l.CRLFor(t.Context(), "sku-a")
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil || crl.CheckSignatureFrom(h.Products[0].Certificate) != nil {
		t.Fatalf("CRL signed in the HSM does not verify: %v", err)
	}

	issued := rec.Count("ca: issued")
	m.Close()
	req := catest.Requests(t)["idevid"]
	iss, err := l.Issue(t.Context(), req)
	if iss != nil || !errors.Is(err, ca.ErrSigning) || !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("issuing with a closed token: %v, %v; want ErrSigning wrapping hsm.ErrClosed", iss, err)
	}
	if rec.Count("ca: issued") != issued {
		t.Error("a failed issuance was logged as issued")
	}
}
