package api

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/pluton/evidence"
)

// raw sends one request as any client could, and returns the status, the
// Content-Type and the body.
func (e *env) raw(method, path, contentType, accept string, body []byte, cert *tls.Certificate) (int, string, []byte) {
	e.t.Helper()
	tc := &tls.Config{RootCAs: e.serverCA}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(e.ctx, method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// problemOf decodes an ErrorBody in mt.
func problemOf(t *testing.T, mt string, b []byte) Problem {
	t.Helper()
	var eb ErrorBody
	if err := decodeReply(mediaType(mt), b, &eb); err != nil {
		t.Fatalf("error body %q (%s): %v", b, mt, err)
	}
	return eb.Problem
}

func (e *env) nonce(t *testing.T) []byte {
	t.Helper()
	n, err := e.client(false, nil).Nonce(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) evidence(t *testing.T, d *fieldDevice) []byte {
	t.Helper()
	tok, err := d.Attest(e.ctx, e.nonce(t))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAttestJSONAndCBOR(t *testing.T) {
	e := newEnv(t)
	d := e.newDevice(2)
	for _, json := range []bool{false, true} {
		c := e.client(json, nil)
		n, err := c.Nonce(e.ctx)
		if err != nil || len(n) != attest.NonceSize {
			t.Fatalf("json %v: nonce %x, %v", json, n, err)
		}
		tok, err := d.Attest(e.ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Attest(e.ctx, &AttestRequest{Evidence: tok, IDevIDChain: d.chain})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != attest.StatusAffirming || res.Release != "r2" || res.Verdict == 0 || res.TrustVector.Executables < 2 {
			t.Fatalf("json %v: %+v", json, res)
		}
		ear, err := attest.ParseEAR([]byte(res.EAR), &e.earKey.PublicKey, time.Now(), time.Minute)
		if err != nil || ear.Submods[attest.EARSubmod].Status != attest.StatusAffirming {
			t.Fatalf("EAR: %+v, %v", ear, err)
		}
	}
	// Accept wins over the request's type.
	n := e.nonce(t)
	tok, _ := d.Attest(e.ctx, n)
	body, _ := json.Marshal(&AttestRequest{Evidence: tok})
	code, ct, b := e.raw("POST", PathAttest, MediaJSON, MediaCBOR, body, nil)
	var res AttestResponse
	if code != 200 || ct != MediaCBOR || cborDec.Unmarshal(b, &res) != nil || res.Status != attest.StatusAffirming {
		t.Fatalf("%d %s %x", code, ct, b)
	}
	// The CBOR answer is deterministic: re-encoding gives the same bytes.
	if again, _ := cborEnc.Marshal(&res); !bytes.Equal(again, b) {
		t.Fatal("the CBOR answer is not in deterministic encoding")
	}
}

// TestBadRequests sends requests that never reach the verifier: each gets
// its 4xx status and problem, in the format asked, and nothing changes.
func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	d := e.newDevice(2)
	if res, err := e.client(false, nil).Attest(e.ctx, &AttestRequest{Evidence: e.evidence(t, d)}); err != nil || res.Status != attest.StatusAffirming {
		t.Fatal(res, err)
	}
	good := e.evidence(t, d)
	goodCBOR, _ := cborEnc.Marshal(&AttestRequest{Evidence: good})
	goodJSON, _ := json.Marshal(&AttestRequest{Evidence: good})
	big := make([]byte, MaxAttestBody+1)
	for _, tc := range []struct {
		name, method, path, ct string
		body                   []byte
		status                 int
		problem                Problem
	}{
		{"malformed JSON", "POST", PathAttest, MediaJSON, []byte(`{"evidence": "AAA`), 400, ProblemMalformed},
		{"JSON of the wrong type", "POST", PathAttest, MediaJSON, []byte(`["evidence"]`), 400, ProblemMalformed},
		{"JSON unknown member", "POST", PathAttest, MediaJSON, bytes.Replace(goodJSON, []byte(`{`), []byte(`{"x":1,`), 1), 400, ProblemMalformed},
		{"JSON duplicate member", "POST", PathAttest, MediaJSON, bytes.Replace(goodJSON, []byte(`{`), []byte(`{"evidence":"AAAA",`), 1), 400, ProblemMalformed},
		{"JSON member in another case", "POST", PathAttest, MediaJSON, bytes.Replace(goodJSON, []byte(`"evidence"`), []byte(`"Evidence"`), 1), 400, ProblemMalformed},
		{"JSON trailing data", "POST", PathAttest, MediaJSON, append(bytes.Clone(goodJSON), []byte(` {}`)...), 400, ProblemMalformed},
		{"JSON no evidence", "POST", PathAttest, MediaJSON, []byte(`{}`), 400, ProblemMalformed},
		{"oversized JSON", "POST", PathAttest, MediaJSON, big, 413, ProblemTooLarge},
		{"malformed CBOR", "POST", PathAttest, MediaCBOR, goodCBOR[:len(goodCBOR)/2], 400, ProblemMalformed},
		{"CBOR trailing data", "POST", PathAttest, MediaCBOR, append(bytes.Clone(goodCBOR), 0xa0), 400, ProblemMalformed},
		{"CBOR unknown key", "POST", PathAttest, MediaCBOR, []byte{0xa2, 0x01, 0x41, 0x00, 0x09, 0x00}, 400, ProblemMalformed},
		{"CBOR duplicate key", "POST", PathAttest, MediaCBOR, []byte{0xa2, 0x01, 0x41, 0x00, 0x01, 0x41, 0x01}, 400, ProblemMalformed},
		{"CBOR indefinite length", "POST", PathAttest, MediaCBOR, []byte{0xbf, 0x01, 0x41, 0x00, 0xff}, 400, ProblemMalformed},
		{"CBOR tag", "POST", PathAttest, MediaCBOR, append([]byte{0xd8, 0x18}, goodCBOR...), 400, ProblemMalformed},
		{"CBOR too many chain certificates", "POST", PathAttest, MediaCBOR, mustCBOR(t, &AttestRequest{Evidence: good, IDevIDChain: [][]byte{{1}, {1}, {1}, {1}, {1}}}), 400, ProblemMalformed},
		{"oversized CBOR", "POST", PathAttest, MediaCBOR, big, 413, ProblemTooLarge},
		{"no content type", "POST", PathAttest, "", goodCBOR, 415, ProblemMediaType},
		{"wrong content type", "POST", PathAttest, "text/plain", goodJSON, 415, ProblemMediaType},
		{"bad content type", "POST", PathAttest, "application/", goodJSON, 415, ProblemMediaType},
		{"nonce with a body", "POST", PathNonce, MediaJSON, []byte(`{"a":1}`), 400, ProblemMalformed},
		{"nonce with a big body", "POST", PathNonce, MediaCBOR, make([]byte, MaxNonceBody+1), 413, ProblemTooLarge},
		{"nonce wrong content type", "POST", PathNonce, "text/plain", []byte(`x`), 415, ProblemMediaType},
		{"GET attest", "GET", PathAttest, "", nil, 405, ProblemMethod},
		{"unknown path", "GET", "/v2/attest", "", nil, 404, ProblemNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot(d.ueid)
			for _, accept := range []string{"", MediaJSON, MediaCBOR} {
				code, ct, b := e.raw(tc.method, tc.path, tc.ct, accept, tc.body, nil)
				if code != tc.status {
					t.Fatalf("Accept %q: status %d, want %d: %s", accept, code, tc.status, b)
				}
				if accept != "" && ct != accept {
					t.Fatalf("answer in %s, asked for %s", ct, accept)
				}
				if p := problemOf(t, ct, b); p != tc.problem {
					t.Fatalf("problem %s, want %s", p, tc.problem)
				}
			}
			if after := e.snapshot(d.ueid); !sameSnapshot(before, after) {
				t.Fatalf("the store changed: %+v → %+v", before, after)
			}
		})
	}
	t.Run("not acceptable", func(t *testing.T) {
		code, _, b := e.raw("POST", PathNonce, "", "text/html", nil, nil)
		if code != 406 || problemOf(t, MediaJSON, b) != ProblemNotAcceptable {
			t.Fatalf("%d %s", code, b)
		}
	})
	// The good evidence is still good: the bad requests spent nothing.
	if res, err := e.client(false, nil).Attest(e.ctx, &AttestRequest{Evidence: good}); err != nil || res.Status != attest.StatusAffirming {
		t.Fatal(res, err)
	}
	// The client reports refused requests as *Error.
	_, err := e.client(false, nil).Attest(e.ctx, &AttestRequest{})
	if !errors.Is(err, ErrRequest) || !errors.Is(err, &Error{Problem: ProblemMalformed}) {
		t.Fatalf("client error %v", err)
	}
}

func mustCBOR(t *testing.T, v any) []byte {
	b, err := cborEnc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameSnapshot(a, b snapshot) bool {
	return a.verdicts == b.verdicts && sameState(a.state, b.state)
}

func sameState(a, b *attest.DeviceState) bool {
	if a == nil || b == nil {
		return a == b
	}
	return maps.Equal(a.Counters, b.Counters) && maps.Equal(a.SVNs, b.SVNs)
}

// TestRefusedEvidence: evidence the verifier refuses is answered 200,
// contraindicated, with the verifier's reason and a signed EAR; the
// device's accepted state is unchanged (a verdict is recorded when the
// evidence was authenticated as the device's).
func TestRefusedEvidence(t *testing.T) {
	e := newEnv(t)
	d := e.newDevice(2)
	c := e.client(false, nil)
	if res, err := c.Attest(e.ctx, &AttestRequest{Evidence: e.evidence(t, d)}); err != nil || res.Status != attest.StatusAffirming {
		t.Fatal(res, err)
	}
	check := func(t *testing.T, ueid []byte, req *AttestRequest, want attest.Code, stored bool) {
		t.Helper()
		before := e.snapshot(ueid)
		for _, json := range []bool{false, true} {
			res, err := e.client(json, nil).Attest(e.ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != attest.StatusContraindicated || len(res.Reasons) == 0 || res.Reasons[0].Code != want || res.Certificate != nil {
				t.Fatalf("%s %v, want contraindicated %s", res.Status, res.Reasons, want)
			}
			ear, err := attest.ParseEAR([]byte(res.EAR), &e.earKey.PublicKey, time.Now(), time.Minute)
			if err != nil || ear.Submods[attest.EARSubmod].Status != attest.StatusContraindicated {
				t.Fatal(err)
			}
			if want != attest.CodeNonceReplayed {
				break // a second try would be a replay
			}
		}
		after := e.snapshot(ueid)
		if !sameState(before.state, after.state) {
			t.Fatalf("state changed: %+v → %+v", before.state, after.state)
		}
		if !stored && after.verdicts != before.verdicts {
			t.Fatalf("%d verdicts, want %d", after.verdicts, before.verdicts)
		}
	}
	t.Run("replayed nonce", func(t *testing.T) {
		tok := e.evidence(t, d)
		if res, err := c.Attest(e.ctx, &AttestRequest{Evidence: tok}); err != nil || res.Status != attest.StatusAffirming {
			t.Fatal(res, err)
		}
		check(t, d.ueid, &AttestRequest{Evidence: tok}, attest.CodeNonceReplayed, true)
	})
	t.Run("wrong signature", func(t *testing.T) {
		bad := e.evidence(t, d)
		bad[len(bad)-1] ^= 1
		check(t, d.ueid, &AttestRequest{Evidence: bad}, attest.CodeSignature, false)
	})
	t.Run("malformed evidence", func(t *testing.T) {
		check(t, d.ueid, &AttestRequest{Evidence: []byte("not a token")}, attest.CodeMalformed, false)
	})
	t.Run("oversized evidence", func(t *testing.T) {
		check(t, d.ueid, &AttestRequest{Evidence: make([]byte, evidence.MaxTokenSize+1)}, attest.CodeTooLarge, false)
	})
	t.Run("unknown root", func(t *testing.T) {
		h := catest.NewHierarchy(t, product)
		l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
		if err != nil {
			t.Fatal(err)
		}
		other := e.newDeviceWith(2, l)
		check(t, other.ueid, &AttestRequest{Evidence: e.evidence(t, other)}, attest.CodeUnknownRoot, false)
	})
	t.Run("revoked device", func(t *testing.T) {
		other := e.newDevice(2)
		if res, err := c.Attest(e.ctx, &AttestRequest{Evidence: e.evidence(t, other)}); err != nil || res.Status != attest.StatusAffirming {
			t.Fatal(res, err)
		}
		if err := e.ca.Revoke(e.ctx, other.idevid.SerialNumber, 1); err != nil {
			t.Fatal(err)
		}
		if err := e.v.SetCRLs([][]byte{e.crl()}); err != nil {
			t.Fatal(err)
		}
		check(t, other.ueid, &AttestRequest{Evidence: e.evidence(t, other)}, attest.CodeRevoked, true)
	})
	t.Run("lowered counter", func(t *testing.T) {
		// The verifier accepted a newer OS (SVN 3) than the device now
		// reports (a device restored from a backup).
		st, _ := e.store.State(e.ctx, d.ueid)
		higher := &attest.DeviceState{Counters: maps.Clone(st.Counters), SVNs: maps.Clone(st.SVNs)}
		higher.SVNs["os"]++
		for k := range higher.Counters {
			higher.Counters[k]++
		}
		if err := e.store.Record(e.ctx, &attest.Verdict{UEID: d.ueid, Time: time.Now(), Status: attest.StatusAffirming, Accepted: higher}); err != nil {
			t.Fatal(err)
		}
		check(t, d.ueid, &AttestRequest{Evidence: e.evidence(t, d)}, attest.CodeRollback, true)
	})
	t.Run("unknown measurement", func(t *testing.T) {
		other := e.newDevice(3) // OS 1.3.0 has no reference value
		code := e.attestCode(t, other)
		if code != attest.CodeUnknownVersion && code != attest.CodeUnknownMeasurement {
			t.Fatalf("reason %s", code)
		}
		if st, _ := e.store.State(e.ctx, other.ueid); st != nil {
			t.Fatalf("state accepted: %+v", st)
		}
	})
	t.Run("vulnerable release", func(t *testing.T) {
		// A warning, not a refusal: the release is known but vulnerable.
		other := e.newDevice(1)
		res, err := c.Attest(e.ctx, &AttestRequest{Evidence: e.evidence(t, other)})
		if err != nil || res.Status != attest.StatusWarning || res.Reasons[0].Code != attest.CodeVulnerable {
			t.Fatal(res, err)
		}
	})
	t.Run("missing link", func(t *testing.T) {
		s := e.newSynth()
		n := e.nonce(t)
		// The synthetic device is genuine with its whole chain …
		if res, err := c.Attest(e.ctx, &AttestRequest{Evidence: s.sign(t, n, s.chain)}); err != nil || res.Status != attest.StatusAffirming {
			t.Fatal(res, err)
		}
		// … and refused with its middle Alias certificate left out.
		check(t, s.ueid, &AttestRequest{Evidence: s.sign(t, e.nonce(t), [][]byte{s.chain[0], s.chain[2]})}, attest.CodeChain, false)
	})
	// The refusals are counted by reason.
	_, _, b := e.raw("GET", PathMetrics, "", "", nil, nil)
	for _, want := range []string{`rootline_attest_refusals_total{reason="nonce-replayed"}`, `rootline_attest_attestations_total{status="affirming"}`,
		`rootline_attest_bad_requests_total`, "rootline_attest_ear_sign_duration_seconds_count", "rootline_attest_duration_seconds_bucket"} {
		if want == "rootline_attest_bad_requests_total" {
			continue // none in this test
		}
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func (e *env) attestCode(t *testing.T, d *fieldDevice) attest.Code {
	t.Helper()
	res, err := e.client(false, nil).Attest(e.ctx, &AttestRequest{Evidence: e.evidence(t, d)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != attest.StatusContraindicated || len(res.Reasons) == 0 {
		t.Fatalf("%s %v", res.Status, res.Reasons)
	}
	return res.Reasons[0].Code
}

func TestEndorsementsUpdate(t *testing.T) {
	e := newEnv(t)
	d := e.newDevice(3) // unknown until the update
	if code := e.attestCode(t, d); code != attest.CodeUnknownVersion && code != attest.CodeUnknownMeasurement {
		t.Fatal(code)
	}
	p := e.endorsements().Products[0]
	p.Releases = append(p.Releases, e.release("r3", e.images(3)))
	body, _ := json.Marshal(&p)
	for name, cert := range map[string]*tls.Certificate{"no client certificate": nil, "another CA's certificate": &e.stranger} {
		t.Run(name, func(t *testing.T) {
			if _, err := e.client(false, cert).UpdateEndorsements(e.ctx, &p); !errors.Is(err, &Error{Problem: ProblemUnauthenticated}) {
				t.Fatalf("update: %v", err)
			}
		})
	}
	// The refusals changed nothing.
	if code := e.attestCode(t, d); code != attest.CodeUnknownVersion && code != attest.CodeUnknownMeasurement {
		t.Fatal(code)
	}
	op := e.client(false, &e.operator)
	for _, tc := range []struct {
		name, path, ct string
		body           []byte
		status         int
		problem        Problem
	}{
		{"another product's", "/v1/endorsements/sku-b", MediaJSON, body, 422, ProblemBadEndorsements},
		{"invalid", "/v1/endorsements/sku-a", MediaJSON, []byte(`{"product":"sku-a","releases":[{"release":"r","layers":[]}]}`), 422, ProblemBadEndorsements},
		{"unknown member", "/v1/endorsements/sku-a", MediaJSON, []byte(`{"product":"sku-a","releases":[],"x":1}`), 400, ProblemMalformed},
		{"CBOR", "/v1/endorsements/sku-a", MediaCBOR, []byte{0xa0}, 415, ProblemMediaType},
	} {
		code, ct, b := e.raw("PUT", tc.path, tc.ct, "", tc.body, &e.operator)
		if code != tc.status || problemOf(t, ct, b) != tc.problem {
			t.Fatalf("%s: %d %s", tc.name, code, b)
		}
	}
	r, err := op.UpdateEndorsements(e.ctx, &p)
	if err != nil || r.Product != product || r.Releases != 3 {
		t.Fatal(r, err)
	}
	res, err := e.client(false, nil).Attest(e.ctx, &AttestRequest{Evidence: e.evidence(t, d)})
	if err != nil || res.Status != attest.StatusAffirming || res.Release != "r3" {
		t.Fatal(res, err)
	}
}

func TestVerdicts(t *testing.T) {
	e := newEnv(t)
	d := e.newDevice(2)
	c := e.client(false, nil)
	for range 5 {
		if res, err := c.Attest(e.ctx, &AttestRequest{Evidence: e.evidence(t, d)}); err != nil || res.Status != attest.StatusAffirming {
			t.Fatal(res, err)
		}
	}
	if _, err := c.Verdicts(e.ctx, d.ueid, 0, 2); !errors.Is(err, &Error{Problem: ProblemUnauthenticated}) {
		t.Fatalf("verdicts without a certificate: %v", err)
	}
	op := e.client(false, &e.operator)
	var ids []int64
	for before := int64(0); ; {
		page, err := op.Verdicts(e.ctx, d.ueid, before, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Verdicts {
			if v.Status != attest.StatusAffirming || v.Release != "r2" || v.Product != product || v.Accepted == nil {
				t.Fatalf("verdict %+v", v)
			}
			ids = append(ids, v.ID)
		}
		if page.Next == 0 {
			break
		}
		before = page.Next
	}
	if len(ids) != 5 {
		t.Fatalf("%d verdicts, want 5: %v", len(ids), ids)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("not newest first: %v", ids)
		}
	}
	for _, q := range []string{"/v1/devices/zz/verdicts", "/v1/devices/00/verdicts?limit=0", "/v1/devices/00/verdicts?limit=1001", "/v1/devices/00/verdicts?before=-1",
		"/v1/devices/" + strings.Repeat("00", 65) + "/verdicts"} {
		code, ct, b := e.raw("GET", q, "", "", nil, &e.operator)
		if code != 400 || problemOf(t, ct, b) != ProblemMalformed {
			t.Fatalf("%s: %d %s", q, code, b)
		}
	}
}

// TestEARWithJOSE checks an EAR with an independent JOSE implementation
// (go-jose) and the key set the server publishes.
func TestEARWithJOSE(t *testing.T) {
	e := newEnv(t)
	d := e.newDevice(2)
	res, err := e.client(false, nil).Attest(e.ctx, &AttestRequest{Evidence: e.evidence(t, d)})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{PathJWKS, PathWellKnownJWKS} {
		code, ct, b := e.raw("GET", path, "", "", nil, nil)
		if code != 200 || ct != MediaJWKSet {
			t.Fatalf("%s: %d %s", path, code, ct)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("JWKS %s: %v", b, err)
		}
		k := set.Keys[0]
		if !k.Valid() || !k.IsPublic() || k.KeyID != e.v.KeyID() || !k.Key.(*ecdsa.PublicKey).Equal(&e.earKey.PublicKey) {
			t.Fatalf("JWK %+v", k)
		}
		tp, err := k.Thumbprint(cryptoSHA256)
		if err != nil || b64url(tp) != k.KeyID {
			t.Fatalf("kid %s is not the RFC 7638 thumbprint", k.KeyID)
		}
		jws, err := jose.ParseSigned(res.EAR, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if kid := jws.Signatures[0].Header.KeyID; kid != k.KeyID {
			t.Fatalf("EAR kid %s, JWKS kid %s", kid, k.KeyID)
		}
		payload, err := jws.Verify(set)
		if err != nil {
			t.Fatal(err)
		}
		var claims struct {
			Profile string `json:"eat_profile"`
			Submods map[string]struct {
				Status string `json:"ear.status"`
			} `json:"submods"`
		}
		if err := json.Unmarshal(payload, &claims); err != nil || claims.Profile != attest.EARProfile || claims.Submods["device"].Status != "affirming" {
			t.Fatalf("claims %s: %v", payload, err)
		}
		// A tampered EAR does not verify.
		bad := []byte(res.EAR)
		bad[len(bad)/2] ^= 1
		if jws, err := jose.ParseSigned(string(bad), []jose.SignatureAlgorithm{jose.ES256}); err == nil {
			if _, err := jws.Verify(set); err == nil {
				t.Fatal("a tampered EAR verified")
			}
		}
	}
}

// TestOperationalCertificate: with a CSR for the key that signed the
// evidence, an affirmed device gets its operational certificate chain.
func TestOperationalCertificate(t *testing.T) {
	e := newEnv(t)
	s := e.newSynth()
	alias := s.aliases[len(s.aliases)-1]
	csr := catest.CSR(t, alias, pkixName())
	res, err := e.client(false, nil).Attest(e.ctx, &AttestRequest{Evidence: s.sign(t, e.nonce(t), s.chain), CSR: csr})
	if err != nil || res.Status != attest.StatusAffirming || len(res.Certificate) != 3 {
		t.Fatal(res, err)
	}
	leaf, err := x509.ParseCertificate(res.Certificate[0])
	if err != nil || !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&alias.PublicKey) {
		t.Fatal(err)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("validity %s", d)
	}
	// A CSR of another key: contraindicated, no certificate.
	other := catest.CSR(t, catest.Key(t), pkixName())
	res, err = e.client(true, nil).Attest(e.ctx, &AttestRequest{Evidence: s.sign(t, e.nonce(t), s.chain), CSR: other})
	if err != nil || res.Status != attest.StatusContraindicated || res.Reasons[0].Code != attest.CodeCSR || res.Certificate != nil {
		t.Fatal(res, err)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	if code, _, b := e.raw("GET", PathHealth, "", "", nil, nil); code != 200 || string(b) != "ok\n" {
		t.Fatalf("%d %q", code, b)
	}
	e.raw("POST", PathAttest, "text/plain", "", []byte("x"), nil)
	code, _, b := e.raw("GET", PathMetrics, "", "", nil, nil)
	if code != 200 || !bytes.Contains(b, []byte(`rootline_attest_bad_requests_total{problem="unsupported-media-type"} 1`)) {
		t.Fatalf("%d %s", code, b)
	}
}
