package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

// Linting. zlint v3.7.3, without the Web PKI's lint sources (catest.Registry),
// raises no error and no warning on any profile, nor on the root and
// intermediate certificates, nor on the CRLs. With them (TestLintWebPKI),
// the IDevID raises the CA/Browser Forum's TLS server certificate lints,
// because it has no extendedKeyUsage (IEEE 802.1AR lets it go without,
// and zlint then takes it for a TLS server certificate):
//
//	e_sub_cert_valid_time_longer_than_39_months, _825_days,
//	e_tls_server_cert_valid_time_longer_than_398_days,
//	e_server_cert_valid_time_longer_than_200_days, and the warnings
//	w_server_cert_valid_time_longer_than_199_days,
//	w_tls_server_cert_valid_time_longer_than_397_days
//	    notAfter is 99991231235959Z, as 802.1AR, §8.5, asks: a device
//	    keeps its birth identity for life.
//	e_ext_san_other_name_present
//	    the HardwareModuleName otherName is 802.1AR's device name (§8.9);
//	    the BRs allow only DNS names and IP addresses.
//	e_subject_common_name_not_exactly_from_san, e_dnsname_not_valid_tld,
//	w_subject_common_name_included
//	    the commonName is the product name, not a DNS name.
//	e_sub_cert_country_name_must_appear, _province_must_appear,
//	_locality_name_must_appear
//	    BR subject rules for organisation-validated web servers.
//	e_sub_cert_certificate_policies_missing, e_sub_cert_cert_policy_empty,
//	e_sub_cert_aia_missing, w_sub_cert_aia_does_not_contain_issuing_ca_url,
//	e_missing_crl_distrib_point, e_sub_cert_eku_missing,
//	w_ext_subject_key_identifier_not_recommended_subscriber
//	    BR structure of web server certificates: policy OIDs, AIA, a CRL
//	    URL, serverAuth, and no SKI (RFC 5280, §4.2.1.2, recommends one).
//
// The operational and station certificates (clientAuth) raise nothing
// even with the Web PKI lints; the root and intermediate raise only BR
// rules for publicly-trusted CAs (e_ca_country_name_missing,
// e_sub_ca_certificate_policies_missing, e_invalid_ca_certificate_policies,
// e_sub_ca_crl_distribution_points_missing, w_sub_ca_aia_missing,
// w_root_ca_basic_constraints_path_len_constraint_field_present: the
// root's pathLenConstraint 1 is what the issue asks for).

func newLocal(t testing.TB, h *catest.Hierarchy, store ca.RevocationStore, log *slog.Logger) *ca.Local {
	t.Helper()
	l, err := ca.NewLocal(&ca.LocalOptions{
		Root:         h.Root,
		Products:     h.Products,
		Stations:     h.Stations,
		Revocations:  store,
		Organization: "Rootline Test",
		Logger:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLocalConformance: the local backend passes the tests of every
// backend.
func TestLocalConformance(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	rec := &catest.Recorder{}
	l, err := ca.NewLocal(&ca.LocalOptions{
		Root: h.Root, Products: h.Products, Stations: h.Stations,
		Organization: "Rootline Test", Logger: rec.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	catest.Conformance(t, &catest.Backend{
		Issuer: l, Root: h.Root, Products: h.HWTypes(), Log: rec,
		CRL: func(ctx context.Context) ([]byte, error) { return l.CRLFor(ctx, "sku-a") },
	})
}

// TestLintWebPKI runs every zlint lint and checks that whatever fires
// comes from a Web PKI source (see expectedWarnings).
func TestLintWebPKI(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	l := newLocal(t, h, nil, nil)
	certs := map[string]*x509.Certificate{"root": h.Root, "intermediate": h.Products[0].Certificate}
	for name, req := range catest.Requests(t) {
		iss, err := l.Issue(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		certs[name] = iss.Certificate
	}
	for name, c := range certs {
		for _, f := range catest.LintAll(t, c.Raw) {
			if !slices.Contains(catest.WebPKISources, f.Source) {
				t.Errorf("%s: %s %s from %s, not a Web PKI source", name, f.Lint, f.Status, f.Source)
			}
			if testing.Verbose() {
				t.Logf("%s: %s (%s, %s)", name, f.Lint, f.Status, f.Source)
			}
		}
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeyTypes: the key types accepted, each in a certificate that lints
// and verifies.
func TestKeyTypes(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	l := newLocal(t, h, nil, nil)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, csr := range map[string][]byte{
		"P-256":    catest.CSR(t, catest.Key(t), pkix.Name{}),
		"P-384":    catest.CSR(t, p384, pkix.Name{}),
		"Ed25519":  catest.CSR(t, ed, pkix.Name{}),
		"RSA-2048": readTestdata(t, "rsa2048.csr.der"),
	} {
		t.Run(name, func(t *testing.T) {
			req := &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: catest.UEID(t), CSR: csr}
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
}

// TestConcurrent issues, revokes and signs CRLs from several goroutines
// (run it with -race): serial numbers stay unique, CRL numbers increase.
func TestConcurrent(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a")
	store, err := ca.OpenFileStore(filepath.Join(t.TempDir(), "revocations.json"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products, Revocations: store})
	if err != nil {
		t.Fatal(err)
	}
	csr := catest.CSR(t, catest.Key(t), pkix.Name{})
	var mu sync.Mutex
	serials := map[string]bool{}
	var crlNumbers []int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 20 {
				iss, err := l.Issue(t.Context(), &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: catest.UEID(t), CSR: csr})
				if err != nil {
					t.Error(err)
					return
				}
				if i%5 == 0 {
					if err := l.Revoke(t.Context(), iss.Certificate.SerialNumber, ca.ReasonSuperseded); err != nil {
						t.Error(err)
					}
					der, err := l.CRL(t.Context())
					if err != nil {
						t.Error(err)
						return
					}
					crl, _ := x509.ParseRevocationList(der)
					mu.Lock()
					crlNumbers = append(crlNumbers, crl.Number.Int64())
					mu.Unlock()
				}
				mu.Lock()
				if serials[iss.Certificate.SerialNumber.String()] {
					t.Errorf("serial %x issued twice", iss.Certificate.SerialNumber)
				}
				serials[iss.Certificate.SerialNumber.String()] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(crlNumbers)
	if len(crlNumbers) != 16 || slices.Compact(crlNumbers)[15] != 16 {
		t.Errorf("CRL numbers %v, want 1..16 once each", crlNumbers)
	}
	revoked, _ := store.Revoked(t.Context())
	if len(revoked) != 16 {
		t.Errorf("%d revocations, want 16", len(revoked))
	}
}
