package ca_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

func issueIDevID(t testing.TB, l *ca.Local, product string) *ca.Issued {
	t.Helper()
	iss, err := l.Issue(t.Context(), &ca.IssueRequest{
		Profile: ca.ProfileIDevID, Product: product, UEID: catest.UEID(t),
		CSR: catest.CSR(t, catest.Key(t), pkix.Name{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func TestRevokeAndCRL(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	store, err := ca.OpenFileStore(filepath.Join(t.TempDir(), "revocations.json"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &catest.Recorder{}
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products, Revocations: store, Logger: rec.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	revoked, kept, unspecified := issueIDevID(t, l, "sku-a"), issueIDevID(t, l, "sku-a"), issueIDevID(t, l, "sku-a")
	if err := l.Revoke(ctx, revoked.Certificate.SerialNumber, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if err := l.Revoke(ctx, unspecified.Certificate.SerialNumber, ca.ReasonUnspecified); err != nil {
		t.Fatal(err)
	}
	inter := h.Products[0].Certificate
	for i := 1; i <= 2; i++ {
		der, err := l.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(inter); err != nil {
			t.Fatalf("CRL signature: %v", err)
		}
		if crl.Number.Int64() != int64(i) {
			t.Errorf("CRL number %v, want %d", crl.Number, i)
		}
		if !bytes.Equal(crl.RawIssuer, inter.RawSubject) || !bytes.Equal(crl.AuthorityKeyId, inter.SubjectKeyId) {
			t.Error("CRL issuer or authority key id is not the intermediate's")
		}
		if d := crl.NextUpdate.Sub(crl.ThisUpdate); d != ca.DefaultCRLValidity {
			t.Errorf("nextUpdate - thisUpdate = %v", d)
		}
		if len(crl.RevokedCertificateEntries) != 2 {
			t.Fatalf("%d entries, want 2", len(crl.RevokedCertificateEntries))
		}
		e := crl.RevokedCertificateEntries[0]
		if e.SerialNumber.Cmp(revoked.Certificate.SerialNumber) != 0 || e.ReasonCode != ca.ReasonKeyCompromise {
			t.Errorf("entry %x reason %d", e.SerialNumber, e.ReasonCode)
		}
		if e := crl.RevokedCertificateEntries[1]; len(e.Extensions) != 0 {
			t.Errorf("an unspecified reason is written: %v (DER leaves out a DEFAULT value)", e.Extensions)
		}
		if w := catest.LintCRL(t, der); len(w) != 0 {
			t.Errorf("zlint CRL warnings %v", w)
		}
		if i == 1 {
			out, err := catest.OpenSSLVerify(t, h.Root, revoked.Chain, revoked.Certificate, der)
			if err == nil || !strings.Contains(out, "certificate revoked") {
				t.Errorf("openssl verify -crl_check of the revoked certificate: %v: %s", err, out)
			}
			if out, err := catest.OpenSSLVerify(t, h.Root, kept.Chain, kept.Certificate, der); err != nil {
				t.Errorf("openssl verify -crl_check of a good certificate: %v: %s", err, out)
			}
		}
	}
	if n := rec.Count("ca: revoked"); n != 2 {
		t.Errorf("%d revocations logged", n)
	}

	before, err := os.ReadFile(store.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Revoke(ctx, revoked.Certificate.SerialNumber, ca.ReasonSuperseded); !errors.Is(err, ca.ErrAlreadyRevoked) {
		t.Errorf("revoking twice: %v", err)
	}
	for _, r := range []int{-1, 2, 6, 7, 8, 10, 11} {
		if err := l.Revoke(ctx, kept.Certificate.SerialNumber, r); !errors.Is(err, ca.ErrBadReason) {
			t.Errorf("reason %d: %v", r, err)
		}
	}
	for _, s := range []*big.Int{nil, big.NewInt(0), big.NewInt(-5), new(big.Int).Lsh(big.NewInt(1), 160)} {
		if err := l.Revoke(ctx, s, 1); !errors.Is(err, ca.ErrBadSerial) {
			t.Errorf("serial %v: %v", s, err)
		}
	}
	after, err := os.ReadFile(store.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("a refused revocation changed the store")
	}
	if n := rec.Count("ca: revoked"); n != 2 {
		t.Errorf("%d revocations logged after refusals", n)
	}
}

func TestCRLFor(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	l := newLocal(t, h, nil, nil)
	ctx := t.Context()
	if _, err := l.CRL(ctx); !errors.Is(err, ca.ErrUnknownIssuer) {
		t.Errorf("CRL of a CA with several issuers: %v", err)
	}
	if _, err := l.CRLFor(ctx, "sku-z"); !errors.Is(err, ca.ErrUnknownIssuer) {
		t.Errorf("CRL of an unknown issuer: %v", err)
	}
	for _, name := range l.Issuers() {
		der, err := l.CRLFor(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if crl.Number.Int64() != 1 {
			t.Errorf("%s: CRL number %v: each issuer numbers its own", name, crl.Number)
		}
	}
	if got := strings.Join(l.Issuers(), ","); got != "sku-a,sku-b,stations" {
		t.Errorf("issuers %s", got)
	}
}

func TestFileStore(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "revocations.json")
	s, err := ca.OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := int64(1); i <= 3; i++ {
		if err := s.Revoke(ctx, ca.Revocation{Serial: big.NewInt(i * 1000), Reason: ca.ReasonSuperseded, Time: when}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.NextCRLNumber(ctx, "sku-a"); err != nil || n.Int64() != 1 {
		t.Fatalf("first CRL number %v, %v", n, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("store file mode %v, %v", fi.Mode(), err)
	}

	// Another store on the same file (another process) sees it all.
	s2, err := ca.OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Revoked(ctx)
	if err != nil || len(got) != 3 || got[2].Serial.Int64() != 3000 || !got[0].Time.Equal(when) || got[1].Reason != ca.ReasonSuperseded {
		t.Fatalf("reopened: %v, %v", got, err)
	}
	// CRL numbers stay unique and increasing across processes sharing the
	// file.
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for _, st := range []*ca.FileStore{s, s2} {
		wg.Go(func() {
			for range 20 {
				n, err := st.NextCRLNumber(ctx, "sku-a")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[n.Int64()] {
					t.Errorf("CRL number %v given twice", n)
				}
				seen[n.Int64()] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n, _ := s.NextCRLNumber(ctx, "sku-a"); n.Int64() != 42 {
		t.Errorf("CRL number %v after 41, want 42", n)
	}

	// A corrupt or hostile file is refused, and left alone.
	for name, content := range map[string]string{
		"not JSON":       "{",
		"version":        `{"version":2}`,
		"bad serial":     `{"version":1,"revoked":[{"serial":"zz","reason":1,"time":"2026-01-01T00:00:00Z"}]}`,
		"zero serial":    `{"version":1,"revoked":[{"serial":"0","reason":1,"time":"2026-01-01T00:00:00Z"}]}`,
		"padded serial":  `{"version":1,"revoked":[{"serial":"0a","reason":1,"time":"2026-01-01T00:00:00Z"}]}`,
		"duplicate":      `{"version":1,"revoked":[{"serial":"a","reason":1,"time":"2026-01-01T00:00:00Z"},{"serial":"a","reason":1,"time":"2026-01-01T00:00:00Z"}]}`,
		"bad reason":     `{"version":1,"revoked":[{"serial":"a","reason":8,"time":"2026-01-01T00:00:00Z"}]}`,
		"no time":        `{"version":1,"revoked":[{"serial":"a","reason":1}]}`,
		"bad issuer":     `{"version":1,"crlNumbers":{"":1}}`,
		"negative count": `{"version":1,"crlNumbers":{"a":-1}}`,
	} {
		p := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.OpenFileStore(p); !errors.Is(err, ca.ErrRevocationStore) {
			t.Errorf("%s: %v, want ErrRevocationStore", name, err)
		}
		if b, _ := os.ReadFile(p); string(b) != content {
			t.Errorf("%s: the corrupt file was changed", name)
		}
	}
}

func TestMemoryStore(t *testing.T) {
	ctx := t.Context()
	var s ca.MemoryStore
	r := ca.Revocation{Serial: big.NewInt(7), Reason: 1, Time: time.Now()}
	if err := s.Revoke(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, r); !errors.Is(err, ca.ErrAlreadyRevoked) {
		t.Errorf("twice: %v", err)
	}
	if err := s.Revoke(ctx, ca.Revocation{Serial: big.NewInt(8), Reason: 1}); !errors.Is(err, ca.ErrRevocationStore) {
		t.Errorf("no time: %v", err)
	}
	for want := int64(1); want <= 3; want++ {
		if n, err := s.NextCRLNumber(ctx, "x"); err != nil || n.Int64() != want {
			t.Errorf("CRL number %v, %v, want %d", n, err, want)
		}
	}
}

func TestSerialHex(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1", 1, true}, {"0x0A", 10, true}, {"ff", 255, true}, {"00ff", 255, true},
		{"", 0, false}, {"0", 0, false}, {"-1", 0, false}, {"xyz", 0, false},
		{strings.Repeat("f", 41), 0, false}, {"8" + strings.Repeat("0", 39), 0, false},
	} {
		n, err := ca.ParseHex(tc.in)
		if tc.ok != (err == nil) || (tc.ok && n.Int64() != tc.want) {
			t.Errorf("ParseHex(%q) = %v, %v", tc.in, n, err)
		}
		if !tc.ok && !errors.Is(err, ca.ErrBadSerial) {
			t.Errorf("ParseHex(%q): %v, want ErrBadSerial", tc.in, err)
		}
	}
	if s := ca.Hex(big.NewInt(0xabc)); s != "abc" {
		t.Errorf("Hex = %s", s)
	}
}
