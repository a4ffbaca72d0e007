package api_test

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/provision/api"
)

// A station whose certificate is revoked loses access at its next call,
// on the connection it already has; the others keep theirs. A CRL past its
// nextUpdate refuses everyone of its CA (fail closed).
func TestRevokedStation(t *testing.T) {
	ctx := t.Context()
	var skew atomic.Int64 // the CRL reader's clock runs ahead by this
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	crlPath := filepath.Join(t.TempDir(), "stations.crl")
	writeCRL := func(e *env) {
		t.Helper()
		der, err := e.local.CRLFor(ctx, ca.StationsIssuer)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crlPath, der, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnvWith(t, envOptions{revocation: func(t *testing.T, e *env) api.Revocation {
		writeCRL(e)
		r, err := api.NewCRLFile(now, map[string]*x509.Certificate{crlPath: e.h.Stations.Certificate})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}})
	a, b := e.client(t, e.stA), e.client(t, e.stB)
	if _, err := a.Nonce(ctx); err != nil {
		t.Fatalf("st-a before revocation: %v", err)
	}
	leaf, _ := x509.ParseCertificate(e.stA.Certificate[0])
	if err := e.local.Revoke(ctx, leaf.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	writeCRL(e)
	skew.Add(int64(2 * time.Second)) // past the reader's once-a-second look at the file
	_, err := a.Nonce(ctx)
	wantReason(t, err, http.StatusUnauthorized, api.ReasonUnauthenticated)
	if _, err := b.Nonce(ctx); err != nil {
		t.Fatalf("st-b, not revoked: %v", err)
	}
	// The CRL expires: nobody of the stations CA gets in.
	skew.Add(int64(ca.DefaultCRLValidity + time.Hour))
	_, err = b.Nonce(ctx)
	wantReason(t, err, http.StatusUnauthorized, api.ReasonUnauthenticated)
}

// A CRL that its CA did not sign, or that is not a CRL, is refused when the
// server starts.
func TestCRLFileRefused(t *testing.T) {
	ctx := t.Context()
	h := catest.NewHierarchy(t, "sku-a")
	other := catest.NewHierarchy(t, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: other.Root, Products: other.Products, Stations: other.Stations})
	if err != nil {
		t.Fatal(err)
	}
	der, err := l.CRLFor(ctx, ca.StationsIssuer)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"foreign": der, "garbage": []byte("not a CRL"), "truncated": der[:len(der)/2], "pem of a certificate": pemOf(h.Root.Raw)} {
		path := filepath.Join(dir, "crl")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := api.NewCRLFile(nil, map[string]*x509.Certificate{path: h.Stations.Certificate}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := api.NewCRLFile(nil, map[string]*x509.Certificate{filepath.Join(dir, "missing"): h.Stations.Certificate}); err == nil {
		t.Error("a missing CRL file was accepted")
	}
}

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
