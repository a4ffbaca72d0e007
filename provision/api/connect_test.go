package api_test

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	pb "github.com/rootline/rootline/provision/api/provisionv1"
	"github.com/rootline/rootline/provision/api/provisionv1/provisionv1connect"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/station"
)

// answer is an HTTP answer of the server.
type answer struct {
	status int
	ctype  string
	proto  string
	body   []byte
}

// post sends body to path with the content type and headers given.
func post(t *testing.T, hc *http.Client, url, path, ctype string, body []byte, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Proto, b}
}

// connectError is the Connect protocol's error body.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string          `json:"type"`
		Value string          `json:"value"`
		Debug json.RawMessage `json:"debug"`
	} `json:"details"`
}

// refusal decodes a Connect error body: its code and the reason of its
// ErrorInfo detail ("" without one).
func refusal(t *testing.T, a answer) (code string, reason api.Reason) {
	t.Helper()
	var ce connectError
	if err := json.Unmarshal(a.body, &ce); err != nil {
		t.Fatalf("error body %q: %v", a.body, err)
	}
	for _, d := range ce.Details {
		if d.Type != "rootline.provision.v1.ErrorInfo" {
			continue
		}
		v, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		if err != nil {
			t.Fatal(err)
		}
		var info pb.ErrorInfo
		if err := proto.Unmarshal(v, &info); err != nil {
			t.Fatal(err)
		}
		// The JSON debug form of the detail says the same, for curl users.
		if !bytes.Contains(d.Debug, []byte(`"reason":"`+info.Reason+`"`)) {
			t.Errorf("detail debug %s, reason %q", d.Debug, info.Reason)
		}
		return ce.Code, api.Reason(info.Reason)
	}
	return ce.Code, ""
}

// TestConnectJSON: a plain HTTPS POST of application/json, as curl sends,
// is the Connect protocol's unary JSON call.
func TestConnectJSON(t *testing.T) {
	e := newEnv(t)
	a := post(t, e.rawClient(e.stA), e.url, api.PathNonce, "application/json", []byte("{}"), nil)
	if a.status != http.StatusOK || a.ctype != "application/json" {
		t.Fatalf("nonce: %d %s %s", a.status, a.ctype, a.body)
	}
	var nr struct {
		Nonce []byte `json:"nonce"`
	}
	if err := json.Unmarshal(a.body, &nr); err != nil || len(nr.Nonce) != provision.NonceSize {
		t.Fatalf("nonce answer %s: %v", a.body, err)
	}
	if a.proto != "HTTP/2.0" {
		t.Errorf("served over %s, want HTTP/2.0", a.proto)
	}
	// An empty body is {}; the charset parameter is allowed.
	if a := post(t, e.rawClient(e.stA), e.url, api.PathNonce, "application/json; charset=utf-8", nil, nil); a.status != http.StatusOK {
		t.Fatalf("empty nonce request: %d %s", a.status, a.body)
	}
}

// TestProtocols: each protocol and encoding reaches the service; refusals
// carry the code and the ErrorInfo reason in each.
func TestProtocols(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	d := e.chip(t)
	for _, p := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpc+json", []connect.ClientOption{connect.WithGRPC(), connect.WithProtoJSON()}},
		{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
		{"connect", nil},
		{"connect+json", []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect+gzip", []connect.ClientOption{connect.WithSendGzip()}},
	} {
		t.Run(p.name, func(t *testing.T) {
			hc := &http.Client{Transport: e.h2Transport(e.stB)}
			c := provisionv1connect.NewProvisionServiceClient(hc, e.url, p.opts...)
			nr, err := c.Nonce(ctx, connect.NewRequest(&pb.NonceRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			fr, err := d.FactoryRequest(ctx, nr.Msg.Nonce)
			if err != nil {
				t.Fatal(err)
			}
			// Station B may not provision sku-a.
			_, err = c.Provision(ctx, connect.NewRequest(&pb.ProvisionRequest{
				Ueid: fr.UEID, Csr: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "lot-1",
			}))
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodePermissionDenied {
				t.Fatalf("provision by B: %v", err)
			}
			ae, ok := api.FromConnect(ce)
			if !ok || ae.Reason != api.ReasonStationNotAllowed || ae.Status != http.StatusForbidden {
				t.Fatalf("refusal %+v", ae)
			}
			// A message over the limit: ResourceExhausted, never Internal.
			_, err = c.Provision(ctx, connect.NewRequest(&pb.ProvisionRequest{Evidence: make([]byte, api.MaxProvisionBody+1)}))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Fatalf("oversized message: %v", err)
			}
			// A confirmation of an unknown chip.
			_, err = c.Confirm(ctx, connect.NewRequest(&pb.ConfirmRequest{Ueid: []byte{1, 2, 3, 4}}))
			if !errors.As(err, &ce) || ce.Code() != connect.CodeNotFound {
				t.Fatalf("confirm: %v", err)
			}
			if ae, _ := api.FromConnect(ce); ae == nil || ae.Reason != api.ReasonNotFound {
				t.Fatalf("confirm refusal %+v", ae)
			}
		})
	}
	if n, _ := e.log.Size(ctx); n != 0 {
		t.Fatal("refused calls logged something")
	}
}

// TestHeaderClaimsChangeNothing: a station B sending headers and fields that
// name station A and its products is still station B.
func TestHeaderClaimsChangeNothing(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	d := e.chip(t)
	hc := e.rawClient(e.stB)
	claims := map[string]string{"X-Station-Products": "sku-a"}
	for _, h := range []string{"X-Station", "X-Station-Name", "X-Forwarded-Client-Cert", "X-SSL-Client-S-DN", "X-Client-Cert", "Grpc-Metadata-Station"} {
		claims[h] = "st-a"
	}
	a := post(t, hc, e.url, api.PathNonce, "application/json", []byte("{}"), claims)
	if a.status != http.StatusOK {
		t.Fatalf("nonce: %d %s", a.status, a.body)
	}
	var nr pb.NonceResponse
	if err := api.Unmarshal(a.body, true, &nr); err != nil {
		t.Fatal(err)
	}
	fr, err := d.FactoryRequest(ctx, nr.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"ueid":%q,"csr":%q,"evidence":%q,"product":"sku-a","lot":"lot-1"}`, b64(fr.UEID), b64(fr.CSR), b64(fr.Evidence))
	a = post(t, hc, e.url, api.PathProvision, "application/json", []byte(body), claims)
	if code, reason := refusal(t, a); a.status != http.StatusForbidden || code != "permission_denied" || reason != api.ReasonStationNotAllowed {
		t.Fatalf("provision as station B claiming A: %d %s", a.status, a.body)
	}
	// The same over gRPC, with the claims as metadata.
	c := provisionv1connect.NewProvisionServiceClient(&http.Client{Transport: e.h2Transport(e.stB)}, e.url, connect.WithGRPC())
	nres, err := c.Nonce(ctx, connect.NewRequest(&pb.NonceRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if fr, err = d.FactoryRequest(ctx, nres.Msg.Nonce); err != nil {
		t.Fatal(err)
	}
	req := connect.NewRequest(&pb.ProvisionRequest{Ueid: fr.UEID, Csr: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "lot-1"})
	for k, v := range claims {
		req.Header().Set(k, v)
	}
	if _, err := c.Provision(ctx, req); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("gRPC provision as station B claiming A: %v", err)
	}
	// A field naming the station is an unknown field: refused.
	a = post(t, hc, e.url, api.PathNonce, "application/json", []byte(`{"station":"st-a"}`), nil)
	if code, reason := refusal(t, a); a.status != http.StatusBadRequest || code != "invalid_argument" || reason != api.ReasonBadRequest {
		t.Fatalf("nonce with a station field: %d %s", a.status, a.body)
	}
	if st, err := e.reg.Stats(ctx); err == nil && st.Issuing+st.Issued+st.Complete != 0 {
		t.Fatalf("refused request recorded: %+v", st)
	}
}

// gzipped compresses b.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestBadBodies: malformed, unknown and oversized messages, in JSON and
// binary protobuf, are refused with a 4xx and a code that says so, never a
// 5xx or Internal, and change nothing.
func TestBadBodies(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	hc := e.rawClient(e.stA)
	bigJSON := []byte(`{"ueid":"` + strings.Repeat("A", api.MaxProvisionBody) + `"}`)
	bomb := gzipped(bytes.Repeat([]byte(" "), 64<<20)) // 64 MiB of JSON whitespace
	const js, pr = "application/json", "application/proto"
	for _, tc := range []struct {
		name, path, ctype string
		body              []byte
		hdr               map[string]string
		status            int
		code              string
		reason            api.Reason // "" if the RPC layer refuses (no detail)
	}{
		{"not json", api.PathProvision, js, []byte("{"), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"array", api.PathProvision, js, []byte("[]"), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"trailing", api.PathProvision, js, []byte("{}{}"), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"unknown field", api.PathProvision, js, []byte(`{"x":1}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"duplicate field", api.PathProvision, js, []byte(`{"lot":"a","lot":"b"}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"bad base64", api.PathProvision, js, []byte(`{"ueid":"!!"}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"empty request", api.PathProvision, js, []byte(`{}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"bad evidence", api.PathProvision, js, []byte(`{"ueid":"AQID","csr":"AQID","evidence":"AQID","product":"sku-a","lot":"l"}`), nil, 400, "invalid_argument", api.ReasonEvidence},
		{"oversized", api.PathProvision, js, bigJSON, nil, 429, "resource_exhausted", ""},
		{"oversized nonce", api.PathNonce, js, []byte(`{"a":"` + strings.Repeat("a", api.MaxSmallBody) + `"}`), nil, 429, "resource_exhausted", ""},
		{"gzip bomb", api.PathProvision, js, bomb, map[string]string{"Content-Encoding": "gzip"}, 429, "resource_exhausted", ""},
		{"proto unknown field", api.PathNonce, pr, []byte{0x78, 0x01}, nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"proto truncated", api.PathProvision, pr, []byte{0x0a, 0x05, 0x01}, nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"proto bad utf-8", api.PathProvision, pr, []byte{0x22, 0x01, 0xff}, nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"proto wrong wire type", api.PathConfirm, pr, []byte{0x08, 0x01}, nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"confirm unknown chip", api.PathConfirm, js, []byte(`{"ueid":"AQIDBA=="}`), nil, 404, "not_found", api.ReasonNotFound},
		{"confirm no ueid", api.PathConfirm, js, []byte(`{}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"injected unknown field", api.PathProvisionInjected, js, []byte(`{"csr":"AQID"}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"injected empty", api.PathProvisionInjected, js, []byte(`{}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"injected bad evidence", api.PathProvisionInjected, js, []byte(`{"ueid":"AQID","product":"sku-a","lot":"l","evidence":"AQID",
			"transportStatement":"AQID","transportSignature":"AQID"}`), nil, 400, "invalid_argument", api.ReasonEvidence},
		{"injected oversized", api.PathProvisionInjected, js, []byte(`{"ueid":"` + strings.Repeat("A", api.MaxInjectedBody) + `"}`), nil, 429, "resource_exhausted", ""},
		{"injected proto unknown field", api.PathProvisionInjected, pr, []byte{0x78, 0x01}, nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"tpm unknown field", api.PathProvisionTPM, js, []byte(`{"transportStatement":"AQID"}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"tpm no TPM fields", api.PathProvisionTPM, js, []byte(`{"ueid":"AQID","csr":"AQID","evidence":"AQID","product":"sku-a","lot":"l"}`), nil, 400, "invalid_argument", api.ReasonBadRequest},
		{"tpm bad evidence", api.PathProvisionTPM, js, []byte(`{"ueid":"AQID","csr":"AQID","evidence":"AQID","product":"sku-a","lot":"l",
			"iakPublic":"AQID","idevidPublic":"AQID","certifyAttest":"AQID","certifySignature":"AQID"}`), nil, 400, "invalid_argument", api.ReasonEvidence},
		{"tpm oversized", api.PathProvisionTPM, js, []byte(`{"ueid":"` + strings.Repeat("A", api.MaxTPMBody) + `"}`), nil, 429, "resource_exhausted", ""},
		{"tpm proto bad utf-8", api.PathProvisionTPM, pr, []byte{0x22, 0x01, 0xff}, nil, 400, "invalid_argument", api.ReasonBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := post(t, hc, e.url, tc.path, tc.ctype, tc.body, tc.hdr)
			code, reason := refusal(t, a)
			if a.status != tc.status || code != tc.code || reason != tc.reason {
				t.Fatalf("%d %.300s, want %d %s %q", a.status, a.body, tc.status, tc.code, tc.reason)
			}
		})
	}
	// What the RPC layer refuses before the service: a 4xx without a
	// Connect error body.
	for _, tc := range []struct {
		name, method, ctype string
		status              int
	}{
		{"content type", http.MethodPost, "text/plain", http.StatusUnsupportedMediaType},
		{"method", http.MethodGet, "", http.StatusMethodNotAllowed},
		{"put", http.MethodPut, "application/json", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tc.method, e.url+api.PathNonce, strings.NewReader("{}"))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("%s, want %d", resp.Status, tc.status)
			}
		})
	}
	if n, _ := e.log.Size(ctx); n != 0 {
		t.Fatal("bad bodies logged something")
	}
	// Every refusal is counted: by its reason, or as "rpc" when the RPC
	// layer refused it (3 oversized messages, content type, 2 methods).
	resp, err := hc.Get(e.url + api.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`rootline_provision_refused_total{call="provision",reason="bad_request"} 9`,
		`rootline_provision_refused_total{call="provision",reason="evidence"} 1`,
		`rootline_provision_refused_total{call="provision",reason="rpc"} 2`,
		`rootline_provision_refused_total{call="nonce",reason="rpc"} 4`,
		`rootline_provision_refused_total{call="nonce",reason="bad_request"} 1`,
		`rootline_provision_refused_total{call="confirm",reason="not_found"} 1`,
		`rootline_provision_refused_total{call="confirm",reason="bad_request"} 2`,
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
	if st, err := e.reg.Stats(ctx); err == nil && st.Issuing+st.Issued+st.Complete != 0 {
		t.Fatalf("bad bodies recorded: %+v", st)
	}
}

// TestHandlerWithoutServe: NewHandler served by another server (httptest)
// with TLSConfig reads the station from the verified chains.
func TestHandlerWithoutServe(t *testing.T) {
	e := newEnvWith(t, envOptions{httptest: true})
	if _, err := provisionChip(t, e, e.stA); err != nil {
		t.Fatal(err)
	}
	_, err := provisionChip(t, e, e.stB)
	wantReason(t, err, http.StatusForbidden, api.ReasonStationNotAllowed)
}

// TestExport: with a verifier CA, the export is served to verifiers only,
// and the station calls to stations only.
func TestExport(t *testing.T) {
	ctx := t.Context()
	e := newEnvWith(t, envOptions{verifier: true})
	if _, err := provisionChip(t, e, e.stA); err != nil {
		t.Fatal(err)
	}
	get := func(cert tls.Certificate) (int, []byte) {
		resp, err := e.rawClient(cert).Get(e.url + api.PathExport)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	s, b := get(e.verif)
	if s != http.StatusOK {
		t.Fatalf("export for the verifier: %d %s", s, b)
	}
	if ex, err := export.Read(bytes.NewReader(b)); err != nil || len(ex.Devices) != 1 {
		t.Fatalf("export: %v", err)
	}
	if s, b := get(e.stA); s != http.StatusForbidden {
		t.Fatalf("export for a station: %d %s", s, b)
	}
	// A verifier is not a station.
	_, err := e.client(t, e.verif).Nonce(ctx)
	wantReason(t, err, http.StatusForbidden, api.ReasonNotStation)
	a := post(t, e.rawClient(e.verif), e.url, api.PathNonce, "application/json", []byte("{}"), nil)
	if code, reason := refusal(t, a); a.status != http.StatusForbidden || code != "permission_denied" || reason != api.ReasonNotStation {
		t.Fatalf("nonce for the verifier: %d %s", a.status, a.body)
	}
	// A certificate of another CA: refused at the handshake.
	for name, cert := range map[string]tls.Certificate{
		"another CA": e.other,
	} {
		resp, err := e.rawClient(cert).Get(e.url + api.PathExport)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: answered %s", name, resp.Status)
		}
	}
	// Without the verifier, there is no export.
	e2 := newEnv(t)
	resp, err := e2.rawClient(e2.stA).Get(e2.url + api.PathExport)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("export without a verifier CA: %s", resp.Status)
	}
}

// TestExportVerifierCertOfWrongEKU: a certificate the verifier CA issued
// for server authentication only is refused at the handshake.
func TestExportVerifierCertOfWrongEKU(t *testing.T) {
	e := newEnvWith(t, envOptions{verifier: true})
	// Issue from the same verifier CA: rebuild the pool around a new CA and
	// serve again.
	vca, vcert := clientCA(t, "Test Verifier CA", "verifier-1", x509.ExtKeyUsageServerAuth)
	pool := x509.NewCertPool()
	pool.AddCert(vca)
	addr := serve(t, &api.ServerConfig{Listen: "127.0.0.1:0", Certificate: e.server, StationCA: e.stCA,
		VerifierCA: pool, Export: export.Handler(e.reg, e.prods, nil)}, api.NewHandler(e.svc, nil))
	resp, err := e.rawClient(vcert).Get("https://" + addr.String() + api.PathExport)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a server-auth certificate of the verifier CA answered %s", resp.Status)
	}
}

func TestServerConfigValidate(t *testing.T) {
	e := newEnv(t)
	for name, cfg := range map[string]*api.ServerConfig{
		"nil":                nil,
		"no certificate":     {StationCA: e.stCA},
		"no station CA":      {Certificate: e.server},
		"verifier no export": {Certificate: e.server, StationCA: e.stCA, VerifierCA: e.stCA},
		"export no verifier": {Certificate: e.server, StationCA: e.stCA, Export: http.NotFoundHandler()},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
		if err := api.Serve(t.Context(), cfg, http.NotFoundHandler()); err == nil {
			t.Errorf("%s: served", name)
		}
	}
}

func provisionChip(t *testing.T, e *env, cert tls.Certificate) (*provision.Result, error) {
	t.Helper()
	return station.ProvisionChip(t.Context(), e.client(t, cert), e.chip(t), "sku-a", "lot-1")
}

func TestServe(t *testing.T) {
	e := newEnv(t)
	a := serve(t, &api.ServerConfig{Listen: "127.0.0.1:0", Certificate: e.server, StationCA: e.stCA}, http.NotFoundHandler())
	// TLS 1.2 is refused.
	conn, err := tls.Dial("tcp", a.String(), &tls.Config{MaxVersion: tls.VersionTLS12, RootCAs: e.srvCA, Certificates: []tls.Certificate{e.stA}})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.2 handshake succeeded")
	}
	// TLS 1.3, and HTTP/2 by ALPN (what gRPC needs), or HTTP/1.1.
	for _, proto := range []string{"h2", "http/1.1"} {
		conn, err = tls.Dial("tcp", a.String(), &tls.Config{RootCAs: e.srvCA, Certificates: []tls.Certificate{e.stA}, NextProtos: []string{proto}})
		if err != nil {
			t.Fatal(err)
		}
		if cs := conn.ConnectionState(); cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != proto {
			t.Fatalf("TLS version %x, protocol %q; want TLS 1.3, %q", cs.Version, cs.NegotiatedProtocol, proto)
		}
		conn.Close()
	}
}
