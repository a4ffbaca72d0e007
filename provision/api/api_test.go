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
	"fmt"
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
	h     *catest.Hierarchy
	local *ca.Local
	reg   *registry.SQLite
	log   *translog.Log
	v     *vendor
	fw    *device.Images
	srv   *httptest.Server
	url   string
	srvCA *x509.CertPool
	stA   tls.Certificate // station "st-a", products sku-a
	stB   tls.Certificate // station "st-b", products sku-b
	other tls.Certificate // a station certificate of another hierarchy
}

func newEnv(t *testing.T) *env {
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
	products := map[string]*provision.ProductPolicy{}
	for _, p := range e.h.Products {
		products[p.Name] = &provision.ProductPolicy{
			HWType: p.HWType, Chain: []*x509.Certificate{p.Certificate, e.h.Root}, ReferenceValues: refs,
		}
	}
	svc, err := provision.New(&provision.Config{
		Registry: e.reg, Issuer: e.local, Log: e.log, Products: products,
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

	serverCert, srvCA := serverCertificate(t)
	e.srvCA = srvCA
	stationCA := x509.NewCertPool()
	stationCA.AddCert(e.h.Stations.Certificate)

	e.srv = httptest.NewUnstartedServer(api.NewHandler(svc, nil))
	e.srv.TLS = api.TLSConfig(serverCert, stationCA)
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.url = e.srv.URL
	return e
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

// rawClient is an HTTPS client with an optional client certificate and
// extra headers.
func (e *env) rawClient(certs ...tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: e.srvCA, Certificates: certs,
	}}}
}

func wantReason(t *testing.T, err error, status int, reason api.Reason) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != status || ae.Reason != reason {
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

// TestHeaderClaimsChangeNothing: a station B sending headers and fields that
// name station A and its products is still station B.
func TestHeaderClaimsChangeNothing(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	d := e.chip(t)
	hc := e.rawClient(e.stB)
	post := func(path, body string) (*http.Response, []byte) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for _, h := range []string{"X-Station", "X-Station-Name", "X-Forwarded-Client-Cert", "X-SSL-Client-S-DN", "X-Client-Cert"} {
			req.Header.Set(h, "st-a")
		}
		req.Header.Set("X-Station-Products", "sku-a")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := post(api.PathNonce, "{}")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("nonce: %s %s", resp.Status, b)
	}
	var nr api.NonceResponse
	if err := api.DecodeBytes(b, &nr); err != nil {
		t.Fatal(err)
	}
	fr, err := d.FactoryRequest(ctx, nr.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"ueid":%q,"csr":%q,"evidence":%q,"product":"sku-a","lot":"lot-1"}`, b64(fr.UEID), b64(fr.CSR), b64(fr.Evidence))
	resp, b = post(api.PathProvision, body)
	if resp.StatusCode != http.StatusForbidden || !bytes.Contains(b, []byte(api.ReasonStationNotAllowed)) {
		t.Fatalf("provision as station B claiming A: %s %s", resp.Status, b)
	}
	// A field naming the station is an unknown field: refused.
	resp, b = post(api.PathNonce, `{"station":"st-a"}`)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("nonce with a station field: %s %s", resp.Status, b)
	}
}

func TestBadBodies(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	hc := e.rawClient(e.stA)
	big := `{"ueid":"` + strings.Repeat("A", api.MaxProvisionBody) + `"}`
	for _, tc := range []struct {
		name, method, path, ctype, body string
		status                          int
		reason                          api.Reason
	}{
		{"not json", "POST", api.PathProvision, "application/json", "{", 400, api.ReasonBadRequest},
		{"array", "POST", api.PathProvision, "application/json", "[]", 400, api.ReasonBadRequest},
		{"trailing", "POST", api.PathProvision, "application/json", "{}{}", 400, api.ReasonBadRequest},
		{"unknown field", "POST", api.PathProvision, "application/json", `{"x":1}`, 400, api.ReasonBadRequest},
		{"bad base64", "POST", api.PathProvision, "application/json", `{"ueid":"!!"}`, 400, api.ReasonBadRequest},
		{"empty request", "POST", api.PathProvision, "application/json", `{}`, 400, api.ReasonBadRequest},
		{"bad evidence", "POST", api.PathProvision, "application/json", `{"ueid":"AQID","csr":"AQID","evidence":"AQID","product":"sku-a","lot":"l"}`, 422, api.ReasonEvidence},
		{"oversized", "POST", api.PathProvision, "application/json", big, 413, api.ReasonTooLarge},
		{"oversized nonce", "POST", api.PathNonce, "application/json", `{"a":"` + strings.Repeat("a", api.MaxSmallBody) + `"}`, 413, api.ReasonTooLarge},
		{"content type", "POST", api.PathNonce, "text/plain", "{}", 415, api.ReasonUnsupportedMedia},
		{"method", "GET", api.PathNonce, "", "", 405, api.ReasonMethodNotAllowed},
		{"confirm unknown chip", "POST", api.PathConfirm, "application/json", `{"ueid":"AQIDBA=="}`, 404, api.ReasonNotFound},
		{"confirm no ueid", "POST", api.PathConfirm, "application/json", `{}`, 400, api.ReasonBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tc.method, e.url+tc.path, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var eb api.ErrorBody
			if err := api.DecodeBytes(b, &eb); err != nil {
				t.Fatalf("error body %q: %v", b, err)
			}
			if resp.StatusCode != tc.status || eb.Error.Reason != tc.reason {
				t.Fatalf("%s %s, want %d %s", resp.Status, b, tc.status, tc.reason)
			}
		})
	}
	if n, _ := e.log.Size(ctx); n != 0 {
		t.Fatal("bad bodies logged something")
	}
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

func TestServe(t *testing.T) {
	e := newEnv(t)
	serverCert, srvCA := serverCertificate(t)
	stationCA := x509.NewCertPool()
	stationCA.AddCert(e.h.Stations.Certificate)
	ctx, cancel := context.WithCancel(t.Context())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- api.Serve(ctx, &api.ServerConfig{
			Listen: "127.0.0.1:0", Certificate: serverCert, StationCA: stationCA,
			Ready: func(a net.Addr) { addr <- a },
		}, http.NotFoundHandler())
	}()
	var a net.Addr
	select {
	case a = <-addr:
	case err := <-done:
		t.Fatal(err)
	}
	// TLS 1.2 is refused.
	conn, err := tls.Dial("tcp", a.String(), &tls.Config{MaxVersion: tls.VersionTLS12, RootCAs: srvCA, Certificates: []tls.Certificate{e.stA}})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.2 handshake succeeded")
	}
	conn, err = tls.Dial("tcp", a.String(), &tls.Config{RootCAs: srvCA, Certificates: []tls.Certificate{e.stA}})
	if err != nil {
		t.Fatal(err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("TLS version %x", v)
	}
	conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
