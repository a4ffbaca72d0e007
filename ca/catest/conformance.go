package catest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
)

// Backend is a ca.Issuer under test, with what Conformance needs to know
// of it.
type Backend struct {
	Issuer ca.Issuer
	// Root is the root every certificate must chain to.
	Root *x509.Certificate
	// Products the backend issues for: at least "sku-a" and "sku-b".
	Products ca.Products
	// CRL returns the CRL that covers sku-a's IDevIDs. Default:
	// Issuer.CRL.
	CRL func(context.Context) ([]byte, error)
	// Log, if set, is the recorder the backend logs to: Conformance checks
	// that refused requests are never logged as issued.
	Log *Recorder
}

// Recorder is a slog.Handler that keeps the messages it is given.
type Recorder struct {
	mu   sync.Mutex
	msgs []string
}

// Logger returns a logger writing to r.
func (r *Recorder) Logger() *slog.Logger { return slog.New(r) }

func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *Recorder) WithGroup(string) slog.Handler      { return r }

// Count returns how many records had the message msg.
func (r *Recorder) Count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// Requests returns one valid request of each profile, with fresh keys,
// for products "sku-a" and "sku-b".
func Requests(t testing.TB) map[string]*ca.IssueRequest {
	t.Helper()
	ueid := UEID(t)
	return map[string]*ca.IssueRequest{
		"idevid": {
			Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid,
			CSR: CSR(t, Key(t), pkix.Name{CommonName: "chip"},
				pkix.Extension{Id: ca.OIDDiceTcbInfo, Value: TcbInfo(t)}),
		},
		"idevid-no-tcbinfo": {
			Profile: ca.ProfileIDevID, Product: "sku-b", UEID: ueid,
			CSR: CSR(t, Key(t), pkix.Name{}),
		},
		"operational": {
			Profile: ca.ProfileOperational, Product: "sku-a", UEID: ueid,
			CSR: CSR(t, Key(t), pkix.Name{}),
		},
		"operational-1h": {
			Profile: ca.ProfileOperational, Product: "sku-a", UEID: ueid, Validity: time.Hour,
			CSR: CSR(t, Key(t), pkix.Name{}),
		},
		"station": {
			Profile: ca.ProfileStation, Station: "line-1.fixture-07", Products: []string{"sku-a", "sku-b"},
			CSR: CSR(t, Key(t), pkix.Name{CommonName: "line-1.fixture-07"}),
		},
	}
}

// BadRequest is a request every backend must refuse with Want (and
// ca.ErrBadRequest).
type BadRequest struct {
	Name string
	Req  *ca.IssueRequest
	Want error
}

// testdata reads a file of ca/testdata (see its README.md).
func testdata(t testing.TB, name string) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BadRequests returns the requests every backend refuses: bad signatures,
// key types and sizes, oversized fields, CA and name requests, unknown
// critical extensions, malformed DiceTcbInfo, wrong fields for the
// profile.
func BadRequests(t testing.TB) []BadRequest {
	t.Helper()
	key := Key(t)
	ueid := UEID(t)
	good := CSR(t, key, pkix.Name{})
	badSig := bytes.Clone(good)
	badSig[len(badSig)-5] ^= 0x01
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	ku := func(bits ...int) pkix.Extension {
		b := asn1.BitString{Bytes: []byte{0}, BitLength: 8}
		for _, i := range bits {
			b.Bytes[0] |= 0x80 >> i
		}
		v, _ := asn1.Marshal(b)
		return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: v}
	}
	otherUEID, _ := asn1.Marshal(struct{ U []byte }{UEID(t)})
	dnsSAN, _ := asn1.Marshal([]asn1.RawValue{{Class: 2, Tag: 2, Bytes: []byte("evil.example")}})
	huge := pkix.Name{Organization: []string{strings.Repeat("x", ca.MaxCSRSize)}}
	idevid := func(csr []byte) *ca.IssueRequest {
		return &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, CSR: csr}
	}
	ext := func(id asn1.ObjectIdentifier, critical bool, v []byte) []byte {
		return CSR(t, key, pkix.Name{}, pkix.Extension{Id: id, Critical: critical, Value: v})
	}
	return []BadRequest{
		{"bad signature", idevid(badSig), ca.ErrBadCSRSignature},
		{"truncated", idevid(good[:len(good)-10]), ca.ErrMalformedCSR},
		{"trailing data", idevid(append(bytes.Clone(good), 0)), ca.ErrMalformedCSR},
		{"empty", idevid(nil), ca.ErrMalformedCSR},
		{"P-224", idevid(CSR(t, p224, pkix.Name{})), ca.ErrKeyType},
		{"P-521", idevid(CSR(t, p521, pkix.Name{})), ca.ErrKeyType},
		{"secp256k1", idevid(testdata(t, "secp256k1.csr.der")), ca.ErrKeyType},
		{"brainpoolP256r1", idevid(testdata(t, "brainpoolP256r1.csr.der")), ca.ErrKeyType},
		{"Ed448", idevid(testdata(t, "ed448.csr.der")), ca.ErrKeyType},
		{"RSA-512", idevid(testdata(t, "rsa512.csr.der")), ca.ErrKeyType},
		{"SHA-1 signature", idevid(testdata(t, "rsa2048-sha1.csr.der")), ca.ErrBadCSRSignature},
		{"oversized CSR", idevid(CSR(t, key, huge)), ca.ErrTooLarge},
		{"oversized UEID", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: make([]byte, 33), CSR: good}, ca.ErrTooLarge},
		{"short UEID", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: make([]byte, 6), CSR: good}, ca.ErrInvalidField},
		{"oversized station name", &ca.IssueRequest{Profile: ca.ProfileStation, Station: strings.Repeat("s", 65), Products: []string{"sku-a"}, CSR: good}, ca.ErrTooLarge},
		{"too many station products", &ca.IssueRequest{Profile: ca.ProfileStation, Station: "s", Products: make([]string, 65), CSR: good}, ca.ErrTooLarge},
		{"CA:TRUE", idevid(ext(asn1.ObjectIdentifier{2, 5, 29, 19}, true, bc)), ca.ErrForbiddenExtension},
		{"keyCertSign", idevid(CSR(t, key, pkix.Name{}, ku(0, 5))), ca.ErrForbiddenExtension},
		{"cRLSign", idevid(CSR(t, key, pkix.Name{}, ku(6))), ca.ErrForbiddenExtension},
		{"otherName by openssl", idevid(testdata(t, "othername.csr.der")), ca.ErrForbiddenExtension},
		{"DNS name", idevid(ext(asn1.ObjectIdentifier{2, 5, 29, 17}, false, dnsSAN)), ca.ErrForbiddenExtension},
		{"name constraints", idevid(ext(asn1.ObjectIdentifier{2, 5, 29, 30}, true, []byte{0x30, 0})), ca.ErrForbiddenExtension},
		{"unknown critical", idevid(ext(asn1.ObjectIdentifier{1, 2, 3, 4}, true, []byte{5, 0})), ca.ErrForbiddenExtension},
		{"malformed TcbInfo", idevid(ext(ca.OIDDiceTcbInfo, false, []byte{0x30, 0x03, 0x80, 0x00, 0x00})), ca.ErrForbiddenExtension},
		{"other UEID in CSR", idevid(ext(ca.OIDDiceUEID, false, otherUEID)), ca.ErrInvalidField},
		{"unknown product", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-z", UEID: ueid, CSR: good}, ca.ErrUnknownProduct},
		{"unknown station product", &ca.IssueRequest{Profile: ca.ProfileStation, Station: "s1", Products: []string{"sku-z"}, CSR: good}, ca.ErrUnknownProduct},
		{"unknown profile", &ca.IssueRequest{Profile: "server", CSR: good}, ca.ErrUnknownProfile},
		{"IDevID validity", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, Validity: time.Hour, CSR: good}, ca.ErrInvalidField},
		{"operational too long", &ca.IssueRequest{Profile: ca.ProfileOperational, Product: "sku-a", UEID: ueid, Validity: 8 * 24 * time.Hour, CSR: good}, ca.ErrInvalidField},
		{"wrong hwType", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, HWType: asn1.ObjectIdentifier{1, 2, 3}, CSR: good}, ca.ErrInvalidField},
		{"station with UEID", &ca.IssueRequest{Profile: ca.ProfileStation, Station: "s1", Products: []string{"sku-a"}, UEID: ueid, CSR: good}, ca.ErrInvalidField},
		{"station product twice", &ca.IssueRequest{Profile: ca.ProfileStation, Station: "s1", Products: []string{"sku-a", "sku-a"}, CSR: good}, ca.ErrInvalidField},
		{"bad station name", &ca.IssueRequest{Profile: ca.ProfileStation, Station: "../etc", Products: []string{"sku-a"}, CSR: good}, ca.ErrInvalidField},
	}
}

// Conformance runs the tests every backend must pass: each profile issued
// as ca.Checked.Template says (CheckIssued), linted with no error nor
// warning (Lint), accepted by `openssl verify`; each of BadRequests
// refused with its typed error, nothing issued and nothing logged as
// issued; a revocation that the next CRL lists, with its reason, and that
// `openssl verify -crl_check` then refuses; a second revocation of the
// same serial number (ca.ErrAlreadyRevoked) and a bad reason
// (ca.ErrBadReason) refused.
func Conformance(t *testing.T, b *Backend) {
	t.Run("profiles", func(t *testing.T) {
		for name, req := range Requests(t) {
			t.Run(name, func(t *testing.T) {
				iss, err := b.Issuer.Issue(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				CheckIssued(t, iss, req, b.Root, b.Products)
				if w := Lint(t, iss.Certificate.Raw); len(w) != 0 {
					t.Errorf("zlint warnings %v", w)
				}
				if out, err := OpenSSLVerify(t, b.Root, iss.Chain, iss.Certificate, nil); err != nil {
					t.Errorf("openssl verify: %v: %s", err, out)
				}
			})
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		issued := 0
		if b.Log != nil {
			issued = b.Log.Count("ca: issued")
		}
		for _, tc := range BadRequests(t) {
			t.Run(tc.Name, func(t *testing.T) {
				iss, err := b.Issuer.Issue(t.Context(), tc.Req)
				if iss != nil {
					t.Fatal("issued")
				}
				var re *ca.RequestError
				if !errors.Is(err, tc.Want) || !errors.Is(err, ca.ErrBadRequest) || !errors.As(err, &re) || re.Kind != tc.Want {
					t.Fatalf("err = %v, want a RequestError of kind %v", err, tc.Want)
				}
			})
		}
		if b.Log != nil && b.Log.Count("ca: issued") != issued {
			t.Errorf("%d refused requests logged as issued", b.Log.Count("ca: issued")-issued)
		}
	})
	t.Run("revocation", func(t *testing.T) {
		ctx := t.Context()
		req := Requests(t)["idevid"]
		revoked, err := b.Issuer.Issue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		kept, err := b.Issuer.Issue(ctx, Requests(t)["idevid"])
		if err != nil {
			t.Fatal(err)
		}
		serial := revoked.Certificate.SerialNumber
		if err := b.Issuer.Revoke(ctx, serial, ca.ReasonKeyCompromise); err != nil {
			t.Fatal(err)
		}
		if err := b.Issuer.Revoke(ctx, serial, ca.ReasonSuperseded); !errors.Is(err, ca.ErrAlreadyRevoked) {
			t.Errorf("revoking twice: %v, want ErrAlreadyRevoked", err)
		}
		for _, r := range []int{-1, 2, 6, 7, 8, 10} {
			if err := b.Issuer.Revoke(ctx, kept.Certificate.SerialNumber, r); !errors.Is(err, ca.ErrBadReason) {
				t.Errorf("reason %d: %v, want ErrBadReason", r, err)
			}
		}
		crlOf := b.CRL
		if crlOf == nil {
			crlOf = b.Issuer.CRL
		}
		der, err := crlOf(ctx)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(revoked.Chain[0]); err != nil {
			t.Errorf("CRL not signed by the issuing CA: %v", err)
		}
		if crl.Number == nil || crl.Number.Sign() <= 0 || !crl.NextUpdate.After(crl.ThisUpdate) {
			t.Errorf("CRL number %v, thisUpdate %v, nextUpdate %v", crl.Number, crl.ThisUpdate, crl.NextUpdate)
		}
		i := slices.IndexFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Cmp(serial) == 0 })
		if i < 0 {
			t.Fatalf("the CRL does not list serial %x", serial)
		}
		if r := crl.RevokedCertificateEntries[i].ReasonCode; r != ca.ReasonKeyCompromise {
			t.Errorf("reason %d, want keyCompromise", r)
		}
		if slices.ContainsFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool {
			return e.SerialNumber.Cmp(kept.Certificate.SerialNumber) == 0
		}) {
			t.Error("the CRL lists a certificate whose revocation was refused")
		}
		if w := LintCRL(t, der); len(w) != 0 {
			t.Errorf("zlint CRL warnings %v", w)
		}
		if out, err := OpenSSLVerify(t, b.Root, revoked.Chain, revoked.Certificate, der); err == nil || !strings.Contains(out, "certificate revoked") {
			t.Errorf("openssl verify -crl_check of the revoked certificate: %v: %s", err, out)
		}
		if out, err := OpenSSLVerify(t, b.Root, kept.Chain, kept.Certificate, der); err != nil {
			t.Errorf("openssl verify -crl_check of a good certificate: %v: %s", err, out)
		}
	})
}
