package ca_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"slices"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

func spki(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestIssueInjected: an injected IDevID is the IDevID a CSR for the same
// chip gets, certifying the public key given instead of a CSR's, and
// without the DiceTcbInfo only a CSR could carry.
func TestIssueInjected(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	l := newLocal(t, h, nil, nil)
	ueid := catest.UEID(t)
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		t.Run(curve.Params().Name, func(t *testing.T) {
			k, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			pub := spki(t, &k.PublicKey)
			inj, err := l.Issue(t.Context(), &ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, PublicKey: pub, Product: "sku-a", UEID: ueid})
			if err != nil {
				t.Fatal(err)
			}
			c := inj.Certificate
			if !bytes.Equal(c.RawSubjectPublicKeyInfo, pub) {
				t.Fatal("the certificate does not certify the given key")
			}
			// The same checks as an IDevID from a CSR of that key.
			csrReq := &ca.IssueRequest{Profile: ca.ProfileIDevID, CSR: catest.CSR(t, k, pkix.Name{}), Product: "sku-a", UEID: ueid}
			catest.CheckIssued(t, inj, csrReq, h.Root, h.HWTypes())
			viaCSR, err := l.Issue(t.Context(), csrReq)
			if err != nil {
				t.Fatal(err)
			}
			o := viaCSR.Certificate
			if c.Subject.String() != o.Subject.String() || !c.NotAfter.Equal(ca.NotAfterForever()) ||
				c.KeyUsage != o.KeyUsage || !slices.Equal(extIDs(c), extIDs(o)) || !bytes.Equal(c.SubjectKeyId, o.SubjectKeyId) {
				t.Fatalf("injected IDevID differs from the CSR's:\n%v %v %v\n%v %v %v", c.Subject, c.NotAfter, extIDs(c), o.Subject, o.NotAfter, extIDs(o))
			}
			if w := catest.Lint(t, c.Raw); len(w) != 0 {
				t.Fatalf("lint warnings %v", w)
			}
		})
	}
}

func extIDs(c *x509.Certificate) []string {
	var out []string
	for _, e := range c.Extensions {
		out = append(out, e.Id.String())
	}
	slices.Sort(out)
	return out
}

// TestIssueInjectedRefused: the bare public key only with the injected
// profile, and only a key a CSR could carry.
func TestIssueInjectedRefused(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	l := newLocal(t, h, nil, nil)
	ueid := catest.UEID(t)
	k := catest.Key(t)
	good := spki(t, &k.PublicKey)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalPKIXPublicKey(&p224.PublicKey)
	trailing := append(bytes.Clone(good), 0)
	notKey, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true})
	for name, tc := range map[string]struct {
		req  *ca.IssueRequest
		want error
	}{
		"no key":       {&ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, Product: "sku-a", UEID: ueid}, ca.ErrMalformedCSR},
		"with a CSR":   {&ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, PublicKey: good, CSR: catest.CSR(t, k, pkix.Name{}), Product: "sku-a", UEID: ueid}, ca.ErrInvalidField},
		"P-224":        {&ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, PublicKey: p224DER, Product: "sku-a", UEID: ueid}, ca.ErrKeyType},
		"trailing":     {&ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, PublicKey: trailing, Product: "sku-a", UEID: ueid}, ca.ErrMalformedCSR},
		"not a key":    {&ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, PublicKey: notKey, Product: "sku-a", UEID: ueid}, ca.ErrMalformedCSR},
		"too large":    {&ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, PublicKey: make([]byte, ca.MaxPublicKeySize+1), Product: "sku-a", UEID: ueid}, ca.ErrTooLarge},
		"validity":     {&ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, PublicKey: good, Product: "sku-a", UEID: ueid, Validity: ca.MinValidity}, ca.ErrInvalidField},
		"unknown":      {&ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, PublicKey: good, Product: "sku-x", UEID: ueid}, ca.ErrUnknownProduct},
		"IDevID+key":   {&ca.IssueRequest{Profile: ca.ProfileIDevID, PublicKey: good, CSR: catest.CSR(t, k, pkix.Name{}), Product: "sku-a", UEID: ueid}, ca.ErrInvalidField},
		"operational+": {&ca.IssueRequest{Profile: ca.ProfileOperational, PublicKey: good, CSR: catest.CSR(t, k, pkix.Name{}), Product: "sku-a", UEID: ueid}, ca.ErrInvalidField},
	} {
		t.Run(name, func(t *testing.T) {
			iss, err := l.Issue(t.Context(), tc.req)
			if !errors.Is(err, tc.want) || !errors.Is(err, ca.ErrBadRequest) {
				t.Fatalf("Issue: %v (%v), want %v", err, iss, tc.want)
			}
		})
	}
}

func FuzzParsePublicKey(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	f.Add(der)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ca.ParsePublicKey(b)
		if err != nil {
			if !errors.Is(err, ca.ErrBadRequest) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ca.ParsePublicKey(again); err != nil {
			t.Fatalf("re-encoded key refused: %v", err)
		}
	})
}
