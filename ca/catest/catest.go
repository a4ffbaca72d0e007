// Package catest has what the tests of every ca backend share: request and
// hierarchy builders, an independent check of each profile, the zlint
// linter and `openssl verify`.
package catest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton/dice"
)

// HWType is the hwType arc of the test products: under 1.3.6.1.4.1.32473,
// the private enterprise number IANA reserves for documentation (RFC
// 5612). Products get HWType.n.
var HWType = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1}

// Key returns a fresh ECDSA P-256 key.
func Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// CSR returns a DER PKCS#10 request signed by key, with the given subject
// and requested extensions.
func CSR(t testing.TB, key crypto.Signer, subject pkix.Name, exts ...pkix.Extension) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         subject,
		ExtraExtensions: exts,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// UEID returns a random RFC 9711 UEID of type RAND (0x01 then 16 bytes).
func UEID(t testing.TB) []byte {
	t.Helper()
	u := make([]byte, 17)
	u[0] = 0x01
	if _, err := rand.Read(u[1:]); err != nil {
		t.Fatal(err)
	}
	return u
}

// TcbInfo returns the DER of a DiceTcbInfo as a chip's CSR carries it.
func TcbInfo(t testing.TB) []byte {
	t.Helper()
	d := sha256.Sum256([]byte("test firmware"))
	der, err := (&dice.TcbInfo{
		Vendor: "rootline", Model: "sku-a", Version: "1.0.0",
		SVN: 3, HasSVN: true, Layer: 0, HasLayer: true,
		FWIDs: []dice.FWID{{Hash: crypto.SHA256, Digest: d[:]}},
	}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Hierarchy is a root and issuing CAs made with software keys by the
// package's own ceremony.
type Hierarchy struct {
	Root     *x509.Certificate
	RootKey  crypto.Signer
	Products []ca.Product
	Stations *ca.Authority
}

// NewHierarchy makes a root, one intermediate per product (hwType
// HWType, with the product's index as a last arc) and a station CA, all
// with ECDSA P-256 keys in memory.
func NewHierarchy(t testing.TB, products ...string) *Hierarchy {
	t.Helper()
	ctx := t.Context()
	h := &Hierarchy{RootKey: Key(t)}
	var err error
	h.Root, err = ca.NewRoot(ctx, h.RootKey, pkix.Name{Organization: []string{"Rootline Test"}, CommonName: "Rootline Test Root CA"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inter := func(cn string) ca.Authority {
		k := Key(t)
		c, err := ca.NewIntermediate(ctx, h.Root, h.RootKey, k.Public(), pkix.Name{Organization: []string{"Rootline Test"}, CommonName: cn}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ca.Authority{Certificate: c, Signer: k}
	}
	for i, p := range products {
		h.Products = append(h.Products, ca.Product{
			Name:      p,
			HWType:    append(slices.Clone(HWType), i+1),
			Authority: inter(p + " Issuing CA"),
		})
	}
	s := inter("Stations Issuing CA")
	h.Stations = &s
	return h
}

// HWTypes returns the products' hwTypes.
func (h *Hierarchy) HWTypes() ca.Products {
	m := ca.Products{}
	for _, p := range h.Products {
		m[p.Name] = p.HWType
	}
	return m
}

// CheckIssued checks, independently of the backend that issued it, that
// iss is what req's profile calls for (see ca.Checked.Template): chain to
// root, key, subject, names, usages, validity, the CSR's DiceTcbInfo, and
// a serial number of at least 64 random-looking bits. hwTypes gives the
// products' hwTypes.
func CheckIssued(t testing.TB, iss *ca.Issued, req *ca.IssueRequest, root *x509.Certificate, hwTypes ca.Products) {
	t.Helper()
	c := iss.Certificate
	if c == nil || len(iss.Chain) == 0 {
		t.Fatal("no certificate or no chain")
	}
	if last := iss.Chain[len(iss.Chain)-1]; !last.Equal(root) {
		t.Errorf("chain ends with %q, not the root", last.Subject)
	}
	inter := x509.NewCertPool()
	for _, c := range iss.Chain[:len(iss.Chain)-1] {
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo) {
		t.Error("certified key is not the CSR's")
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 64 || c.SerialNumber.BitLen() > 159 {
		t.Errorf("serial number %x: want positive, 64 bits at least, 20 octets at most", c.SerialNumber)
	}
	if c.IsCA {
		t.Error("leaf certificate is a CA")
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature || !critical(c, asn1.ObjectIdentifier{2, 5, 29, 15}) {
		t.Errorf("key usage %b (critical %v), want digitalSignature, critical", c.KeyUsage, critical(c, asn1.ObjectIdentifier{2, 5, 29, 15}))
	}
	if len(c.SubjectKeyId) == 0 || len(c.AuthorityKeyId) == 0 {
		t.Error("missing subject or authority key identifier")
	}
	if critical(c, asn1.ObjectIdentifier{2, 5, 29, 17}) {
		t.Error("subjectAltName is critical, but the subject is not empty")
	}
	now := time.Now()
	if c.NotBefore.After(now) || now.Sub(c.NotBefore) > 10*time.Minute {
		t.Errorf("notBefore %v is not just before now", c.NotBefore)
	}
	switch req.Profile {
	case ca.ProfileIDevID, ca.ProfileOperational:
		if c.Subject.SerialNumber != hex.EncodeToString(req.UEID) || c.Subject.CommonName != req.Product {
			t.Errorf("subject %q: want CN=%s, serialNumber=%x", c.Subject, req.Product, req.UEID)
		}
		hw, sn, err := ca.HardwareModuleName(c)
		if err != nil {
			t.Fatal(err)
		}
		if !hw.Equal(hwTypes[req.Product]) || !bytes.Equal(sn, req.UEID) {
			t.Errorf("HardwareModuleName (%v, %x), want (%v, %x)", hw, sn, hwTypes[req.Product], req.UEID)
		}
	case ca.ProfileStation:
		if c.Subject.CommonName != req.Station || c.Subject.SerialNumber != "" {
			t.Errorf("subject %q: want CN=%s", c.Subject, req.Station)
		}
		name, products, err := ca.Station(c)
		if err != nil {
			t.Fatal(err)
		}
		if name != req.Station || !slices.Equal(products, req.Products) {
			t.Errorf("station (%s, %v), want (%s, %v)", name, products, req.Station, req.Products)
		}
	}
	tcb := extension(c, ca.OIDDiceTcbInfo)
	switch req.Profile {
	case ca.ProfileIDevID:
		if !c.NotAfter.Equal(ca.NotAfterForever()) {
			t.Errorf("IDevID notAfter %v, want 99991231235959Z", c.NotAfter)
		}
		if !bytes.Contains(c.RawTBSCertificate, []byte("\x18\x0f99991231235959Z")) {
			t.Error("IDevID notAfter is not the GeneralizedTime 99991231235959Z")
		}
		if len(c.ExtKeyUsage) != 0 || len(c.UnknownExtKeyUsage) != 0 {
			t.Errorf("IDevID has extended key usages %v", c.ExtKeyUsage)
		}
		var want []byte
		for _, e := range csr.Extensions {
			if e.Id.Equal(ca.OIDDiceTcbInfo) {
				want = e.Value
			}
		}
		if !bytes.Equal(tcb, want) {
			t.Errorf("DiceTcbInfo %x, want the CSR's %x", tcb, want)
		}
		if critical(c, ca.OIDDiceTcbInfo) {
			t.Error("DiceTcbInfo is critical")
		}
	default:
		want := req.Validity
		if want == 0 {
			want = map[ca.Profile]time.Duration{ca.ProfileOperational: ca.OperationalValidity, ca.ProfileStation: ca.StationValidity}[req.Profile]
		}
		if got := c.NotAfter.Sub(c.NotBefore); got < want || got > want+2*ca.Backdate {
			t.Errorf("validity %v, want %v (plus backdating)", got, want)
		}
		if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Errorf("extended key usages %v, want clientAuth", c.ExtKeyUsage)
		}
		if tcb != nil {
			t.Error("DiceTcbInfo outside an IDevID")
		}
	}
}

func extension(c *x509.Certificate, id asn1.ObjectIdentifier) []byte {
	for _, e := range c.Extensions {
		if e.Id.Equal(id) {
			return e.Value
		}
	}
	return nil
}

func critical(c *x509.Certificate, id asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(id) {
			return e.Critical
		}
	}
	return false
}

// WebPKISources are the zlint lint sources that state the rules of the
// publicly-trusted Web PKI and S/MIME PKI (CA/Browser Forum requirements,
// browser root store policies). A private device PKI is bound by none of
// them: Lint leaves them out. (Some would fire: an IDevID has no
// extendedKeyUsage, as IEEE 802.1AR lets it, so zlint takes it for a TLS
// server certificate and applies the Baseline Requirements' validity
// limits, subject fields, AIA, policies and ban on otherName SANs.)
var WebPKISources = lint.SourceList{
	lint.CABFBaselineRequirements,
	lint.CABFCSBaselineRequirements,
	lint.CABFSMIMEBaselineRequirements,
	lint.CABFEVGuidelines,
	lint.MozillaRootStorePolicy,
	lint.AppleRootStorePolicy,
	lint.ChromeRootStorePolicy,
}

// Registry returns the zlint lints Lint runs: every lint of zlint v3 but
// those of WebPKISources (so RFC 5280, RFC 3279, RFC 5480, RFC 8813,
// RFC 5891, ETSI and the community lints).
func Registry(t testing.TB) lint.Registry {
	t.Helper()
	r, err := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: WebPKISources})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Lint runs the lints of Registry on a DER certificate. It fails the test
// on any error or fatal result, and returns the names of the lints that
// warned, sorted, for the caller to compare with the warnings it expects
// (and explains).
func Lint(t testing.TB, der []byte) (warnings []string) {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("zcrypto cannot parse the certificate: %v", err)
	}
	return results(t, zlint.LintCertificateEx(c, Registry(t)))
}

// LintCRL runs the CRL lints of Registry on a DER CRL, as Lint does.
func LintCRL(t testing.TB, der []byte) (warnings []string) {
	t.Helper()
	r, err := zx509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("zcrypto cannot parse the CRL: %v", err)
	}
	return results(t, zlint.LintRevocationListEx(r, Registry(t)))
}

func results(t testing.TB, rs *zlint.ResultSet) (warnings []string) {
	t.Helper()
	for name, r := range rs.Results {
		switch r.Status {
		case lint.Error, lint.Fatal:
			t.Errorf("zlint %s: %s: %s", name, r.Status, r.Details)
		case lint.Warn:
			warnings = append(warnings, name)
		}
	}
	sort.Strings(warnings)
	return warnings
}

// PEM encodes certificates.
func PEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// OpenSSLVerify runs `openssl verify -CAfile root.pem -untrusted
// chain.pem leaf.pem` (and -crl_check with the CRL, if given, which must
// then be the leaf's issuer's) and returns its error and output. A
// missing openssl skips the test, or fails it under CI.
func OpenSSLVerify(t testing.TB, root *x509.Certificate, chain []*x509.Certificate, leaf *x509.Certificate, crl []byte) (string, error) {
	t.Helper()
	openssl := testdep.LookPath(t, "openssl")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{"verify", "-x509_strict", "-CAfile", write("root.pem", PEM(root))}
	var untrusted []*x509.Certificate
	for _, c := range chain {
		if !c.Equal(root) {
			untrusted = append(untrusted, c)
		}
	}
	if len(untrusted) > 0 {
		args = append(args, "-untrusted", write("chain.pem", PEM(untrusted...)))
	}
	if crl != nil {
		args = append(args, "-crl_check", "-CRLfile",
			write("crl.pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})))
	}
	args = append(args, write("leaf.pem", PEM(leaf)))
	out, err := exec.CommandContext(t.Context(), openssl, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Finding is a zlint result that is not a pass.
type Finding struct {
	Lint   string
	Status lint.LintStatus
	Source lint.LintSource
}

// LintAll runs every zlint v3 lint, those of WebPKISources included, and
// returns the warnings, errors and fatals, sorted by lint name: to show
// that whatever fires comes from a Web PKI source.
func LintAll(t testing.TB, der []byte) []Finding {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("zcrypto cannot parse the certificate: %v", err)
	}
	var out []Finding
	for name, r := range zlint.LintCertificate(c).Results {
		if r.Status >= lint.Warn {
			out = append(out, Finding{name, r.Status, r.LintMetadata.Source})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Lint < out[j].Lint })
	return out
}
