package stepca_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/ca/stepca"
	"github.com/rootline/rootline/ca/stepca/stepcatest"
)

// TestConformance runs the tests every backend passes against a real
// step-ca v0.30.2 under rootline's root.
func TestConformance(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	s := stepcatest.Start(t, h.Root, h.RootKey, &stepcatest.Options{Organization: "Rootline Test"})
	rec := &catest.Recorder{}
	c := s.Client(t, h.HWTypes(), &stepca.Config{Organization: "Rootline Test", Logger: rec.Logger()})
	catest.Conformance(t, &catest.Backend{Issuer: c, Root: h.Root, Products: h.HWTypes(), Log: rec})
}

// TestSameAsLocal: step-ca's certificate and the local backend's for the
// same request differ only where they must (issuer, serial, validity
// times, signature).
func TestSameAsLocal(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	s := stepcatest.Start(t, h.Root, h.RootKey, nil)
	c := s.Client(t, h.HWTypes(), &stepca.Config{Organization: "Rootline Test"})
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products, Stations: h.Stations, Organization: "Rootline Test",
		CRLDistributionPoints: map[string]string{"sku-a": s.CRLURL, "sku-b": s.CRLURL, ca.StationsIssuer: s.CRLURL}})
	if err != nil {
		t.Fatal(err)
	}
	for name, req := range catest.Requests(t) {
		a, err := l.Issue(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Issue(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		x, y := a.Certificate, b.Certificate
		if x.Subject.String() != y.Subject.String() {
			t.Errorf("%s: subject %q vs %q", name, x.Subject, y.Subject)
		}
		if x.KeyUsage != y.KeyUsage || fmt.Sprint(x.ExtKeyUsage) != fmt.Sprint(y.ExtKeyUsage) || x.IsCA != y.IsCA {
			t.Errorf("%s: usages differ", name)
		}
		if x.NotAfter.Sub(x.NotBefore) != y.NotAfter.Sub(y.NotBefore) && !x.NotAfter.Equal(y.NotAfter) {
			t.Errorf("%s: validity %v vs %v", name, x.NotAfter.Sub(x.NotBefore), y.NotAfter.Sub(y.NotBefore))
		}
		if len(x.Extensions) != len(y.Extensions) {
			t.Fatalf("%s: %d vs %d extensions", name, len(x.Extensions), len(y.Extensions))
		}
		for i := range x.Extensions {
			ex, ey := x.Extensions[i], y.Extensions[i]
			if !ex.Id.Equal(ey.Id) || ex.Critical != ey.Critical {
				t.Errorf("%s: extension %d: %v/%v vs %v/%v", name, i, ex.Id, ex.Critical, ey.Id, ey.Critical)
			}
			if ex.Id.String() != "2.5.29.35" && string(ex.Value) != string(ey.Value) { // the authority key ids differ
				t.Errorf("%s: extension %v differs: %x vs %x", name, ex.Id, ex.Value, ey.Value)
			}
		}
	}
}

// TestUnavailable: a stopped step-ca, or one whose certificate does not
// chain to the pinned root, fails issuance with ErrUnavailable.
func TestUnavailable(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	s := stepcatest.Start(t, h.Root, h.RootKey, nil)
	req := catest.Requests(t)["idevid"]

	other := catest.NewHierarchy(t, "sku-a")
	impostor, err := stepca.New(&stepca.Config{URL: s.URL, Root: other.Root, Products: h.HWTypes(), Key: s.Key, KeyID: s.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := impostor.Issue(t.Context(), req); !errors.Is(err, ca.ErrUnavailable) {
		t.Errorf("step-ca under another root: %v, want ErrUnavailable", err)
	}

	rec := &catest.Recorder{}
	c := s.Client(t, h.HWTypes(), &stepca.Config{Logger: rec.Logger(), Timeout: 5 * time.Second})
	if err := c.Health(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	iss, err := c.Issue(t.Context(), req)
	if iss != nil || !errors.Is(err, ca.ErrUnavailable) {
		t.Errorf("stopped step-ca: %v, %v; want ErrUnavailable", iss, err)
	}
	if err := c.Revoke(t.Context(), big.NewInt(12345), 1); !errors.Is(err, ca.ErrUnavailable) {
		t.Error("revoked with a stopped step-ca")
	}
	if rec.Count("ca: issued") != 0 {
		t.Error("a failed issuance was logged as issued")
	}
}

// TestWrongProvisionerKey: a token signed by another key is refused by
// step-ca itself.
func TestWrongProvisionerKey(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	s := stepcatest.Start(t, h.Root, h.RootKey, nil)
	k := catest.Key(t)
	c, err := stepca.New(&stepca.Config{URL: s.URL, Root: h.Root, Products: h.HWTypes(), Key: k, KeyID: s.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Issue(t.Context(), catest.Requests(t)["idevid"])
	var ae *stepca.APIError
	if !errors.Is(err, ca.ErrRefused) || !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("token of another key: %v, want ErrRefused (401)", err)
	}
}

func TestConfigValidate(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	k := catest.Key(t)
	good := stepca.Config{URL: "https://127.0.0.1:9000", Root: h.Root, Products: h.HWTypes(), Key: k, KeyID: "kid"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*stepca.Config){
		"http":        func(c *stepca.Config) { c.URL = "http://127.0.0.1:9000" },
		"path":        func(c *stepca.Config) { c.URL = "https://127.0.0.1:9000/x" },
		"no root":     func(c *stepca.Config) { c.Root = nil },
		"leaf root":   func(c *stepca.Config) { c.Root = h.Products[0].Certificate; c.Root.IsCA = false },
		"no products": func(c *stepca.Config) { c.Products = nil },
		"no key":      func(c *stepca.Config) { c.Key = nil },
		"no kid":      func(c *stepca.Config) { c.KeyID = "" },
		"timeout":     func(c *stepca.Config) { c.Timeout = -1 },
	} {
		c := good
		r := *h.Products[0].Certificate
		if name == "leaf root" {
			c.Root = &r
		}
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
}

// BenchmarkIssue/stepca: IDevIDs through step-ca's HTTPS sign endpoint,
// from 2 clients (goroutines sharing one stepca.Client, so one
// connection pool).
func BenchmarkIssue(b *testing.B) {
	b.Run("stepca", func(b *testing.B) {
		h := catest.NewHierarchy(b, "sku-a")
		s := stepcatest.Start(b, h.Root, h.RootKey, nil)
		c := s.Client(b, h.HWTypes(), nil)
		const nCSR = 64
		tcb := catest.TcbInfo(b)
		reqs := make([]*ca.IssueRequest, nCSR)
		for i := range reqs {
			reqs[i] = &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: catest.UEID(b),
				CSR: catest.CSR(b, catest.Key(b), pkix.Name{}, pkix.Extension{Id: ca.OIDDiceTcbInfo, Value: tcb})}
		}
		b.Run("clients=2", func(b *testing.B) {
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 2 {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := c.Issue(b.Context(), reqs[i%nCSR]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
		})
	})
}

// TestTemplatesIgnoreCSRExtensions: even a CSR that the client would have
// refused (CA:TRUE, keyCertSign and cRLSign, an unknown critical
// extension), sent to step-ca directly, gets only what the profile's
// template grants: the template is a second line of defence behind
// ca.Check.
func TestTemplatesIgnoreCSRExtensions(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	s := stepcatest.Start(t, h.Root, h.RootKey, nil)
	c := s.Client(t, h.HWTypes(), nil)
	key := catest.Key(t)
	bc, _ := asn1.Marshal(struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional"`
	}{true, 5})
	ku, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x86}, BitLength: 7}) // digitalSignature, keyCertSign, cRLSign
	evil := catest.CSR(t, key, pkix.Name{},
		pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
		pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: ku},
		pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}})
	if _, err := ca.ParseCSR(evil); err == nil {
		t.Fatal("ca.ParseCSR accepted the evil CSR")
	}
	good := &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: catest.UEID(t), CSR: catest.CSR(t, key, pkix.Name{})}
	cert, err := c.SignRawForTest(t.Context(), good, evil)
	if err != nil {
		t.Fatal(err)
	}
	if cert.IsCA || cert.BasicConstraintsValid || cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("step-ca granted what the CSR asked: CA %v, key usage %b", cert.IsCA, cert.KeyUsage)
	}
	for _, e := range cert.Extensions {
		if e.Id.String() == "1.2.3.4" {
			t.Error("step-ca copied the CSR's unknown extension")
		}
	}
}
