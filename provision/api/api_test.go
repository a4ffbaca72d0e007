package api_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/boot/boottest"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/station"
	"github.com/rootline/rootline/provision/translog"
)

// vendor is a product's signing setup (boottest).
type vendor struct{ *boottest.Vendor }

func newVendor(t testing.TB, product string) *vendor {
	return &vendor{boottest.NewVendor(t, product, pluton.ECDSAP256)}
}

func (v *vendor) firmware(t testing.TB) *device.Images {
	t.Helper()
	img := func(l boot.Layer, payload string) []byte {
		b, err := boot.SignImage(rand.Reader, []crypto.Signer{v.Signers[l]}, &boot.Manifest{
			Layer: l, Product: v.Product, Version: "1.0.0", SVN: 1,
		}, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return &device.Images{
		Policy:     v.Policy,
		Bootloader: img(boot.Bootloader, "factory bootloader"),
		OS:         img(boot.OS, "factory os"),
		App:        img(boot.App, "factory test app"),
	}
}

type env struct {
	h      *catest.Hierarchy
	local  *ca.Local
	reg    *registry.SQLite
	log    *translog.Log
	v      *vendor
	fw     *device.Images
	svc    *provision.Service
	prods  map[string]*provision.ProductPolicy
	url    string
	srvCA  *x509.CertPool
	stCA   *x509.CertPool  // the stations' issuing CA
	stA    tls.Certificate // station "st-a", products sku-a
	stB    tls.Certificate // station "st-b", products sku-b
	other  tls.Certificate // a station certificate of another hierarchy
	verCA  *x509.CertPool  // the verifiers' CA (envOptions.verifier)
	verif  tls.Certificate // a verifier's client certificate
	server tls.Certificate
}

type envOptions struct {
	// verifier serves the registry export to verifiers (VerifierCA, Export).
	verifier bool
	// httptest serves NewHandler with httptest and TLSConfig instead of
	// Serve.
	httptest bool
	// products, if set, changes the products' policies before the
	// service is made (inject_test.go: an injected sku-b).
	products func(t *testing.T, e *env)
	// revocation, if set, gives Serve its Revocation.
	revocation func(t *testing.T, e *env) api.Revocation
}

func newEnv(t *testing.T) *env { return newEnvWith(t, envOptions{}) }

func newEnvWith(t *testing.T, opts envOptions) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{}
	var err error
	e.reg, err = registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: filepath.Join(t.TempDir(), "registry.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.reg.Close() })
	_, logKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := translog.NewSigner("log.rootline.test", logKey)
	if err != nil {
		t.Fatal(err)
	}
	if e.log, err = translog.New(translog.NewMemStore(), signer); err != nil {
		t.Fatal(err)
	}
	e.h = catest.NewHierarchy(t, "sku-a", "sku-b")
	if e.local, err = ca.NewLocal(&ca.LocalOptions{Root: e.h.Root, Products: e.h.Products, Stations: e.h.Stations}); err != nil {
		t.Fatal(err)
	}

	e.v = newVendor(t, "sku-a")
	e.fw = e.v.firmware(t)
	ms, err := e.chip(t).Manifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]provision.LayerReference{}
	for _, m := range ms {
		refs[string(m.Layer)] = provision.LayerReference{Digests: [][]byte{m.Digest}, MinSVN: 1}
	}
	e.prods = map[string]*provision.ProductPolicy{}
	for _, p := range e.h.Products {
		e.prods[p.Name] = &provision.ProductPolicy{
			HWType: p.HWType, Chain: []*x509.Certificate{p.Certificate, e.h.Root}, ReferenceValues: refs,
		}
	}
	if opts.products != nil {
		opts.products(t, e)
	}
	e.svc, err = provision.New(&provision.Config{
		Registry: e.reg, Issuer: e.local, Log: e.log, Products: e.prods,
		NonceKey: bytes.Repeat([]byte{7}, 32),
	})
	if err != nil {
		t.Fatal(err)
	}

	e.stA = e.stationCert(t, e.local, "st-a", "sku-a")
	e.stB = e.stationCert(t, e.local, "st-b", "sku-b")
	oh := catest.NewHierarchy(t, "sku-a")
	ol, err := ca.NewLocal(&ca.LocalOptions{Root: oh.Root, Products: oh.Products, Stations: oh.Stations})
	if err != nil {
		t.Fatal(err)
	}
	e.other = e.stationCert(t, ol, "st-a", "sku-a")

	e.server, e.srvCA = serverCertificate(t)
	e.stCA = x509.NewCertPool()
	e.stCA.AddCert(e.h.Stations.Certificate)

	if opts.httptest {
		srv := httptest.NewUnstartedServer(api.NewHandler(e.svc, nil))
		srv.EnableHTTP2 = true
		srv.TLS = api.TLSConfig(e.server, e.stCA)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		e.url = srv.URL
		return e
	}
	cfg := &api.ServerConfig{Listen: "127.0.0.1:0", Certificate: e.server, StationCA: e.stCA}
	if opts.revocation != nil {
		cfg.Revocation = opts.revocation(t, e)
	}
	if opts.verifier {
		var vca *x509.Certificate
		vca, e.verif = clientCA(t, "Test Verifier CA", "verifier-1", x509.ExtKeyUsageClientAuth)
		e.verCA = x509.NewCertPool()
		e.verCA.AddCert(vca)
		cfg.VerifierCA = e.verCA
		cfg.Export = export.Handler(e.reg, e.prods, nil)
	}
	e.url = "https://" + serve(t, cfg, api.NewHandler(e.svc, nil)).String()
	return e
}

// serve runs api.Serve with cfg and h until the test ends, and returns its
// address.
func serve(t *testing.T, cfg *api.ServerConfig, h http.Handler) net.Addr {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	cfg.Ready = func(a net.Addr) { addr <- a }
	go func() { done <- api.Serve(ctx, cfg, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case a := <-addr:
		return a
	case err := <-done:
		done <- nil
		t.Fatal(err)
	}
	return nil
}

// clientCA makes a self-signed CA and a client certificate named cn it
// issues with the extended key usages eku.
func clientCA(t *testing.T, caName, cn string, eku ...x509.ExtKeyUsage) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	caKey := catest.Key(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: caName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k := catest.Key(t)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: eku,
	}, caCert, k.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return caCert, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// stationCert has l issue a station certificate.
func (e *env) stationCert(t *testing.T, l *ca.Local, name string, products ...string) tls.Certificate {
	t.Helper()
	k := catest.Key(t)
	iss, err := l.Issue(t.Context(), &ca.IssueRequest{
		CSR: catest.CSR(t, k, pkix.Name{}), Profile: ca.ProfileStation, Station: name, Products: products,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{iss.Certificate.Raw}, PrivateKey: k, Leaf: iss.Certificate}
}

// serverCertificate makes a self-signed CA and a server certificate for
// 127.0.0.1 it issues.
func serverCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey := catest.Key(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Server CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k := catest.Key(t)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "provision.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, caCert, k.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, pool
}

// chip makes a chip of sku-a booted with the test firmware.
func (e *env) chip(t *testing.T) *device.Device {
	t.Helper()
	d, err := device.Init(t.Context(), t.TempDir(), &device.InitRequest{Product: e.v.Product, RootKeyHash: e.v.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(t.Context(), e.fw); err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) client(t *testing.T, cert tls.Certificate) *station.Client {
	t.Helper()
	c, err := station.Dial(&station.Config{URL: e.url, Certificate: cert, ServerCA: e.srvCA, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// rawClient is an HTTPS client, HTTP/2 or HTTP/1.1, with an optional
// client certificate.
func (e *env) rawClient(certs ...tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: e.srvCA, Certificates: certs,
	}}}
}

// h2Transport is an HTTP/2-only transport with a client certificate.
func (e *env) h2Transport(cert tls.Certificate) *http.Transport {
	t := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: e.srvCA, Certificates: []tls.Certificate{cert},
	}}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP2(true)
	return t
}

func wantReason(t *testing.T, err error, status int, reason api.Reason) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != status || ae.Reason != reason || ae.Code != api.Code(reason) {
		t.Fatalf("error %v, want %d %s", err, status, reason)
	}
}

func TestProvisionChipEndToEnd(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	c := e.client(t, e.stA)
	d := e.chip(t)
	res, err := station.ProvisionChip(ctx, c, d, "sku-a", "lot-1")
	if err != nil {
		t.Fatal(err)
	}
	if lc, err := d.Chip().Lifecycle(ctx); err != nil || lc != pluton.Provisioned {
		t.Fatalf("chip lifecycle %v, %v; want Provisioned", lc, err)
	}
	fr, err := d.FactoryRequest(ctx, bytes.Repeat([]byte{1}, provision.NonceSize))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.reg.Get(ctx, fr.UEID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != registry.Complete || rec.Station != "st-a" || !bytes.Equal(rec.Certificate, res.Chain[0]) {
		t.Fatalf("record %v station %q, want COMPLETE by st-a with the chain's leaf", rec.State, rec.Station)
	}
	if n, err := e.log.Size(ctx); err != nil || n != 1 || res.LogIndex != 0 {
		t.Fatalf("log size %d (%v), index %d; want 1, 0", n, err, res.LogIndex)
	}

	// The whole flow again is harmless and returns the same chain.
	res2, err := station.ProvisionChip(ctx, c, d, "sku-a", "lot-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(res2.Chain) != len(res.Chain) || !bytes.Equal(res2.Chain[0], res.Chain[0]) || res2.LogIndex != res.LogIndex {
		t.Fatal("retry returned another chain")
	}
	if n, _ := e.log.Size(ctx); n != 1 {
		t.Fatalf("retry logged again: size %d", n)
	}
}

func TestIdempotentProvision(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	c := e.client(t, e.stA)
	d := e.chip(t)
	var chains [][]byte
	for range 2 {
		n, err := c.Nonce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := d.FactoryRequest(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Provision(ctx, &provision.Request{UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "lot-1"})
		if err != nil {
			t.Fatal(err)
		}
		chains = append(chains, res.Chain[0])
	}
	if !bytes.Equal(chains[0], chains[1]) {
		t.Fatal("the retry got another certificate")
	}
}

func TestStationOfAnotherProduct(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	c := e.client(t, e.stB)
	d := e.chip(t)
	_, err := station.ProvisionChip(ctx, c, d, "sku-a", "lot-1")
	wantReason(t, err, http.StatusForbidden, api.ReasonStationNotAllowed)
	if !errors.Is(err, provision.ErrStationNotAllowed) || !strings.Contains(err.Error(), "station_not_allowed") {
		t.Fatalf("error %v: not provision.ErrStationNotAllowed, or without its reason", err)
	}
	if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Manufacturing {
		t.Fatalf("refused chip in lifecycle %v", lc)
	}
	if st, err := e.reg.Stats(ctx); err == nil && st.Issuing+st.Issued+st.Complete != 0 {
		t.Fatalf("refused request recorded: %+v", st)
	}
}

func TestNoClientCertificate(t *testing.T) {
	e := newEnv(t)
	resp, err := e.rawClient().Post(e.url+api.PathNonce, "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("call without a client certificate answered %s", resp.Status)
	}
}

func TestClientCertificateOfAnotherCA(t *testing.T) {
	e := newEnv(t)
	_, err := e.client(t, e.other).Nonce(t.Context())
	if err == nil {
		t.Fatal("a station certificate of another CA was accepted")
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		t.Fatalf("refused at the HTTP layer (%v), want the TLS handshake", err)
	}
}

func TestNotAStationCertificate(t *testing.T) {
	// A certificate the station CA signed without the station otherName
	// (here, the stations' own key signing a plain client certificate).
	e := newEnv(t)
	k := catest.Key(t)
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "st-a"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, e.h.Stations.Certificate, k.Public(), e.h.Stations.Signer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client(t, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}).Nonce(t.Context())
	wantReason(t, err, http.StatusForbidden, api.ReasonNotStation)
}

func TestHealthAndMetrics(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	// One chip provisioned by A, a refusal for B.
	if _, err := station.ProvisionChip(ctx, e.client(t, e.stA), e.chip(t), "sku-a", "lot-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := station.ProvisionChip(ctx, e.client(t, e.stB), e.chip(t), "sku-a", "lot-1"); err == nil {
		t.Fatal("station B provisioned sku-a")
	}
	hc := e.rawClient(e.stA)
	get := func(path string) (int, string) {
		resp, err := hc.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if s, b := get(api.PathHealth); s != 200 || b != "ok\n" {
		t.Fatalf("healthz: %d %q", s, b)
	}
	s, b := get(api.PathMetrics)
	if s != 200 {
		t.Fatalf("metrics: %d", s)
	}
	for _, want := range []string{
		`rootline_provision_requests_total{call="provision",outcome="ok"} 1`,
		`rootline_provision_certificates_total{result="issued"} 1`,
		`rootline_provision_requests_total{call="confirm",outcome="ok"} 1`,
		`rootline_provision_requests_total{call="nonce",outcome="ok"} 2`,
		`rootline_provision_refused_total{call="provision",reason="station_not_allowed"} 1`,
		`rootline_provision_clone_incidents_total 0`,
		`rootline_provision_confirmed_total 1`,
	} {
		if !strings.Contains(b, want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
