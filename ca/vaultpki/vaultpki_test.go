package vaultpki_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/ca/vaultpki"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/vault"
	"github.com/rootline/rootline/internal/vaulttest"
)

// env is a hierarchy whose issuing CAs' keys are Vault transit keys and
// whose state is in Vault KV, on a dev server of its own.
type env struct {
	srv     *vaulttest.Server
	kms     *vault.KMS
	store   *vaultpki.Store
	root    *x509.Certificate
	hwTypes ca.Products
}

// issuing CAs of the tests: name, key algorithm.
var issuers = []struct {
	name string
	alg  hsm.Algorithm
}{
	{"sku-a", hsm.P256},
	{"sku-b", hsm.P384},
	{ca.StationsIssuer, hsm.Ed25519},
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{srv: vaulttest.Start(t), hwTypes: ca.Products{}}
	e.srv.EnableTransit(t)
	var err error
	e.kms, err = vault.Open(ctx, &vault.Config{Address: e.srv.Addr, Token: e.srv.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.kms.Close() })
	if e.store, err = vaultpki.NewStore(e.kms.Client(), "", ""); err != nil {
		t.Fatal(err)
	}
	// The ceremony: the root key is offline (here, in memory); each
	// issuing CA's key is made in Vault and its certificate signed by the
	// root.
	rootKey := catest.Key(t)
	e.root, err = ca.NewRoot(ctx, rootKey, pkix.Name{Organization: []string{"Rootline Test"}, CommonName: "Rootline Test Root CA"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.PutRoot(ctx, e.root); err != nil {
		t.Fatal(err)
	}
	for i, is := range issuers {
		pub, err := e.kms.CreateKey(ctx, "ca-"+is.name, is.alg)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.NewIntermediate(ctx, e.root, rootKey, pub,
			pkix.Name{Organization: []string{"Rootline Test"}, CommonName: is.name + " Issuing CA"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := &vaultpki.IssuerRecord{Name: is.name, Certificate: cert, Key: "ca-" + is.name}
		if is.name != ca.StationsIssuer {
			rec.HWType = append(slices.Clone(catest.HWType), i+1)
			e.hwTypes[is.name] = rec.HWType
		}
		if err := e.store.PutIssuer(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) open(t *testing.T) *vaultpki.CA {
	t.Helper()
	c, err := vaultpki.Open(t.Context(), &vaultpki.Config{Store: e.store, Keys: e.kms, Organization: "Rootline Test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// requests returns one valid request of each profile, with fresh keys.
func requests(t *testing.T) map[string]*ca.IssueRequest {
	ueid := catest.UEID(t)
	return map[string]*ca.IssueRequest{
		"idevid": {
			Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid,
			CSR: catest.CSR(t, catest.Key(t), pkix.Name{CommonName: "chip"},
				pkix.Extension{Id: ca.OIDDiceTcbInfo, Value: catest.TcbInfo(t)}),
		},
		"idevid-p384-ca": {
			Profile: ca.ProfileIDevID, Product: "sku-b", UEID: ueid,
			CSR: catest.CSR(t, catest.Key(t), pkix.Name{}),
		},
		"operational": {
			Profile: ca.ProfileOperational, Product: "sku-a", UEID: ueid,
			CSR: catest.CSR(t, catest.Key(t), pkix.Name{}),
		},
		"operational-1h": {
			Profile: ca.ProfileOperational, Product: "sku-b", UEID: ueid, Validity: time.Hour,
			CSR: catest.CSR(t, catest.Key(t), pkix.Name{}),
		},
		"station": {
			Profile: ca.ProfileStation, Station: "line-1.fixture-07", Products: []string{"sku-a", "sku-b"},
			CSR: catest.CSR(t, catest.Key(t), pkix.Name{CommonName: "line-1.fixture-07"}),
		},
	}
}

// TestProfiles issues every profile through Vault and checks each
// certificate independently (catest.CheckIssued), with zlint and
// `openssl verify` against the root.
func TestProfiles(t *testing.T) {
	e := setup(t)
	c := e.open(t)
	for name, req := range requests(t) {
		t.Run(name, func(t *testing.T) {
			iss, err := c.Issue(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			catest.CheckIssued(t, iss, req, e.root, e.hwTypes)
			if w := catest.Lint(t, iss.Certificate.Raw); len(w) != 0 {
				t.Errorf("zlint warnings: %v", w)
			}
			if out, err := catest.OpenSSLVerify(t, e.root, iss.Chain, iss.Certificate, nil); err != nil {
				t.Errorf("openssl verify: %v: %s", err, out)
			}
		})
	}
}

func TestRevokeAndCRL(t *testing.T) {
	e := setup(t)
	c := e.open(t)
	ctx := t.Context()
	reqs := requests(t)
	iss, err := c.Issue(ctx, reqs["idevid"])
	if err != nil {
		t.Fatal(err)
	}
	keep, err := c.Issue(ctx, reqs["operational"])
	if err != nil {
		t.Fatal(err)
	}
	serial := iss.Certificate.SerialNumber
	if err := c.Revoke(ctx, serial, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, serial, ca.ReasonSuperseded); !errors.Is(err, ca.ErrAlreadyRevoked) {
		t.Fatalf("second revocation: %v", err)
	}
	if err := c.Revoke(ctx, big.NewInt(12345), 2); !errors.Is(err, ca.ErrBadReason) {
		t.Fatalf("cACompromise for a leaf: %v", err)
	}
	if err := c.Revoke(ctx, big.NewInt(0), 0); !errors.Is(err, ca.ErrBadSerial) {
		t.Fatalf("serial 0: %v", err)
	}
	if _, err := c.CRL(ctx); !errors.Is(err, ca.ErrUnknownIssuer) {
		t.Fatalf("CRL of a CA with three issuing CAs: %v", err)
	}
	var last *big.Int
	for i := range 2 {
		der, err := c.CRLFor(ctx, "sku-a")
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(iss.Chain[0]); err != nil {
			t.Fatal(err)
		}
		if last != nil && crl.Number.Cmp(last) <= 0 {
			t.Fatalf("CRL number %v after %v", crl.Number, last)
		}
		last = crl.Number
		if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(serial) != 0 ||
			crl.RevokedCertificateEntries[0].ReasonCode != ca.ReasonKeyCompromise {
			t.Fatalf("CRL %d entries %+v", i, crl.RevokedCertificateEntries)
		}
		if w := catest.LintCRL(t, der); len(w) != 0 {
			t.Errorf("zlint CRL warnings: %v", w)
		}
		out, err := catest.OpenSSLVerify(t, e.root, iss.Chain, iss.Certificate, der)
		if err == nil || !strings.Contains(out, "revoked") {
			t.Errorf("openssl verify -crl_check of the revoked certificate: %v: %s", err, out)
		}
		if out, err := catest.OpenSSLVerify(t, e.root, keep.Chain, keep.Certificate, der); err != nil {
			t.Errorf("openssl verify -crl_check of a valid certificate: %v: %s", err, out)
		}
	}
	// The state is in Vault: a second replica sees it.
	c2 := e.open(t)
	if err := c2.Revoke(ctx, serial, 0); !errors.Is(err, ca.ErrAlreadyRevoked) {
		t.Fatalf("revocation through another replica: %v", err)
	}
	der, err := c2.CRLFor(ctx, "sku-a")
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := x509.ParseRevocationList(der)
	if crl.Number.Cmp(last) <= 0 || len(crl.RevokedCertificateEntries) != 1 {
		t.Fatalf("replica's CRL: number %v (last %v), %d entries", crl.Number, last, len(crl.RevokedCertificateEntries))
	}
}

// TestConcurrentReplicas: two replicas revoke at once; check-and-set keeps
// every revocation and gives every CRL a distinct number.
func TestConcurrentReplicas(t *testing.T) {
	e := setup(t)
	cas := []*vaultpki.CA{e.open(t), e.open(t)}
	ctx := t.Context()
	const n = 12
	var wg sync.WaitGroup
	numbers := make(chan string, 2*n)
	for w, c := range cas {
		wg.Go(func() {
			for i := range n {
				if err := c.Revoke(ctx, big.NewInt(int64(1000*(w+1)+i)), ca.ReasonCessationOfOperation); err != nil {
					t.Error(err)
					return
				}
				der, err := c.CRLFor(ctx, "sku-b")
				if err != nil {
					t.Error(err)
					return
				}
				crl, _ := x509.ParseRevocationList(der)
				numbers <- crl.Number.String()
			}
		})
	}
	wg.Wait()
	close(numbers)
	seen := map[string]bool{}
	for s := range numbers {
		if seen[s] {
			t.Fatalf("CRL number %s given twice", s)
		}
		seen[s] = true
	}
	revoked, err := e.store.Revoked(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 2*n {
		t.Fatalf("%d revocations recorded, want %d", len(revoked), 2*n)
	}
}

// TestSameRefusals: the requests package ca's local backend refuses are
// refused here with the same errors, and nothing reaches Vault.
func TestSameRefusals(t *testing.T) {
	e := setup(t)
	c := e.open(t)
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	local, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products, Stations: h.Stations})
	if err != nil {
		t.Fatal(err)
	}
	good := requests(t)["idevid"]
	csr := slices.Clone(good.CSR)
	csr[len(csr)-1] ^= 1
	san, _ := ca.MarshalHardwareModuleName(catest.HWType, good.UEID)
	for _, tc := range []struct {
		name string
		req  *ca.IssueRequest
		want error
	}{
		{"bad CSR signature", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: good.UEID, CSR: csr}, ca.ErrBadCSRSignature},
		{"unknown product", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-z", UEID: good.UEID, CSR: good.CSR}, ca.ErrUnknownProduct},
		{"unknown profile", &ca.IssueRequest{Profile: "server", CSR: good.CSR}, ca.ErrUnknownProfile},
		{"short UEID", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: []byte{1}, CSR: good.CSR}, ca.ErrInvalidField},
		{"IDevID validity", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: good.UEID, CSR: good.CSR, Validity: time.Hour}, ca.ErrInvalidField},
		{"CSR asks for a HardwareModuleName", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: good.UEID,
			CSR: catest.CSR(t, catest.Key(t), pkix.Name{}, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san})}, ca.ErrForbiddenExtension},
		{"empty CSR", &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: good.UEID}, ca.ErrMalformedCSR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Issue(t.Context(), tc.req)
			_, lerr := local.Issue(t.Context(), tc.req)
			if !errors.Is(err, tc.want) || !errors.Is(err, ca.ErrBadRequest) || !errors.Is(lerr, tc.want) {
				t.Fatalf("vault: %v; local: %v; want %v", err, lerr, tc.want)
			}
			if err.Error() != lerr.Error() {
				t.Errorf("messages differ:\nvault: %v\nlocal: %v", err, lerr)
			}
		})
	}
}

func TestSealed(t *testing.T) {
	e := setup(t)
	c := e.open(t)
	ctx := t.Context()
	e.srv.Seal(t)
	_, err := c.Issue(ctx, requests(t)["operational"])
	if !errors.Is(err, ca.ErrUnavailable) || !errors.Is(err, ca.ErrSigning) || !errors.Is(err, vault.ErrSealed) {
		t.Fatalf("Issue on a sealed Vault: %v", err)
	}
	if err := c.Revoke(ctx, big.NewInt(7), 0); !errors.Is(err, ca.ErrUnavailable) || !errors.Is(err, ca.ErrRevocationStore) {
		t.Fatalf("Revoke on a sealed Vault: %v", err)
	}
	if _, err := c.CRLFor(ctx, "sku-a"); !errors.Is(err, ca.ErrUnavailable) {
		t.Fatalf("CRL on a sealed Vault: %v", err)
	}
	if _, err := vaultpki.Open(ctx, &vaultpki.Config{Store: e.store, Keys: e.kms}); !errors.Is(err, ca.ErrUnavailable) {
		t.Fatalf("Open on a sealed Vault: %v", err)
	}
}

func TestPermission(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	// A token that may sign with transit keys but not read the store.
	e.srv.Policy(t, "signer-only", `
path "transit/keys/*" { capabilities = ["read"] }
path "transit/sign/*" { capabilities = ["update"] }
`)
	k, err := vault.Open(ctx, &vault.Config{Address: e.srv.Addr, Token: e.srv.Token(t, "signer-only")})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	st, _ := vaultpki.NewStore(k.Client(), "", "")
	if _, err := vaultpki.Open(ctx, &vaultpki.Config{Store: st, Keys: k}); !errors.Is(err, ca.ErrRefused) {
		t.Fatalf("Open without the store's policy: %v", err)
	}
}

func TestStoreRecords(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	if err := e.store.PutRoot(ctx, e.root); err != nil {
		t.Fatalf("recording the same root again: %v", err)
	}
	other := catest.NewHierarchy(t, "sku-a")
	if err := e.store.PutRoot(ctx, other.Root); !errors.Is(err, ca.ErrInvalidCA) {
		t.Fatalf("another root: %v", err)
	}
	recs, err := e.store.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Name != "sku-a" || recs[2].Name != ca.StationsIssuer || !recs[1].HWType.Equal(e.hwTypes["sku-b"]) {
		t.Fatalf("issuers %+v", recs)
	}
	// An issuing CA recorded twice, or not signed by the root.
	if err := e.store.PutIssuer(ctx, recs[0]); !errors.Is(err, ca.ErrInvalidCA) {
		t.Fatalf("recording sku-a twice: %v", err)
	}
	foreign := &vaultpki.IssuerRecord{Name: "sku-c", Certificate: other.Products[0].Certificate, Key: "ca-sku-a", HWType: catest.HWType}
	if err := e.store.PutIssuer(ctx, foreign); !errors.Is(err, ca.ErrInvalidCA) {
		t.Fatalf("an issuing CA of another root: %v", err)
	}
	for _, bad := range []*vaultpki.IssuerRecord{
		{Name: "../x", Certificate: recs[0].Certificate, Key: "k", HWType: catest.HWType},
		{Name: "sku-d", Certificate: recs[0].Certificate, Key: "a/b", HWType: catest.HWType},
		{Name: "sku-d", Certificate: recs[0].Certificate, Key: "k"}, // a product without hwType
		{Name: ca.StationsIssuer + "2", Certificate: recs[0].Certificate, Key: "k"},
	} {
		if err := e.store.PutIssuer(ctx, bad); err == nil {
			t.Errorf("PutIssuer(%s, key %s) accepted", bad.Name, bad.Key)
		}
	}
	if _, err := vaultpki.NewStore(e.kms.Client(), "secret", "a/../b"); err == nil {
		t.Error("a prefix with .. accepted")
	}
	st2, _ := vaultpki.NewStore(e.kms.Client(), "secret", "elsewhere")
	if _, err := vaultpki.Open(ctx, &vaultpki.Config{Store: st2, Keys: e.kms}); !errors.Is(err, ca.ErrInvalidCA) {
		t.Fatalf("Open on an empty store: %v", err)
	}
}

// TestKeyMismatch: a record whose transit key is not its certificate's
// key is refused at Open.
func TestKeyMismatch(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	recs, _ := e.store.Issuers(ctx)
	st2, _ := vaultpki.NewStore(e.kms.Client(), "secret", "mismatch")
	if err := st2.PutRoot(ctx, e.root); err != nil {
		t.Fatal(err)
	}
	rec := *recs[0]
	rec.Key = "ca-sku-b" // the P-384 key of sku-b, under sku-a's certificate
	if err := st2.PutIssuer(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	if _, err := vaultpki.Open(ctx, &vaultpki.Config{Store: st2, Keys: e.kms}); !errors.Is(err, ca.ErrInvalidCA) {
		t.Fatalf("Open with a mismatched key: %v", err)
	}
}
