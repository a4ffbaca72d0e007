// Package api serves the attestation verifier (package attest) over HTTPS
// (DESIGN.md, "The field flow", steps 2 and 3), and is its client.
//
// # Wire format, version 1
//
//	POST /v1/nonce                      → NonceResponse
//	POST /v1/attest      AttestRequest  → AttestResponse
//	GET  /v1/devices/{ueid}/verdicts?before=ID&limit=N → VerdictsResponse   (operators)
//	PUT  /v1/endorsements/{product}  attest.ProductEndorsements (JSON) → EndorsementsResponse (operators)
//	GET  /v1/jwks, /.well-known/jwks.json → the EAR key's JWK Set (RFC 7517)
//	GET  /healthz → 200 "ok"
//	GET  /metrics → Prometheus text exposition
//
// Nonce and attest bodies are JSON (application/json, byte strings in
// standard base64) or CBOR (application/cbor, integer map keys as the
// types' cbor tags say, for constrained devices), chosen by the request's
// Content-Type; the answer is in the format the Accept header names, or else
// the request's. CBOR answers are in Core Deterministic Encoding (RFC 8949,
// §4.2.1).
//
// Requests are untrusted and decoded strictly: bounded bodies (MaxNonceBody,
// MaxAttestBody, MaxEndorsementsBody), no unknown or duplicate member or
// key, no trailing data, no CBOR tags or indefinite lengths. A request
// refused before it reaches the verifier gets a 4xx status and an ErrorBody
// whose Problem callers branch on; nothing changes. Evidence the verifier
// refuses is not a bad request: the answer is 200 with status
// "contraindicated" and the verifier's reason (attest.Code), and a signed
// EAR saying so. Only a failure of the server itself is a 500.
//
// # Who may call what
//
// Devices authenticate by their evidence: nonce and attest need no client
// certificate. The verdicts of a device and the endorsement updates are for
// operators: a TLS client certificate that chains, for client
// authentication, to the operator CA (HandlerConfig.OperatorCA). Without an
// operator CA those endpoints refuse everyone.
package api

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/internal/nonce"
)

// Paths of the API, version 1.
const (
	PathNonce         = "/v1/nonce"
	PathAttest        = "/v1/attest"
	PathVerdicts      = "/v1/devices/{ueid}/verdicts"
	PathEndorsements  = "/v1/endorsements/{product}"
	PathJWKS          = "/v1/jwks"
	PathWellKnownJWKS = "/.well-known/jwks.json"
	PathHealth        = "/healthz"
	PathMetrics       = "/metrics"
)

// HandlerConfig configures NewHandler.
type HandlerConfig struct {
	// Verifier is the attestation verifier. Required.
	Verifier *attest.Verifier
	// Store is the verifier's store, read by the verdicts endpoint.
	// Required.
	Store attest.Store
	// OperatorCA holds the CA of operators' client certificates; nil
	// refuses every operator call.
	OperatorCA *x509.CertPool
	// Metrics, if set, collects the handler's metrics (and, with
	// Metrics.Signer, the EAR signing time); default a new one.
	Metrics *Metrics
	// Timeout bounds the verifier's work on one request. Default 30 s.
	Timeout time.Duration
	// Logger: default discard.
	Logger *slog.Logger
}

// Validate checks that the configuration is complete.
func (c *HandlerConfig) Validate() error {
	if c == nil || c.Verifier == nil || c.Store == nil {
		return errors.New("api: Verifier and Store are required")
	}
	if c.Timeout < 0 {
		return errors.New("api: negative Timeout")
	}
	return nil
}

type handler struct {
	v        *attest.Verifier
	store    attest.Store
	operator *x509.CertPool
	m        *Metrics
	timeout  time.Duration
	log      *slog.Logger
}

// NewHandler returns the API's handler.
func NewHandler(cfg *HandlerConfig) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &handler{v: cfg.Verifier, store: cfg.Store, operator: cfg.OperatorCA, m: cfg.Metrics, timeout: cfg.Timeout, log: cfg.Logger}
	if h.m == nil {
		h.m = NewMetrics()
	}
	if h.timeout == 0 {
		h.timeout = 30 * time.Second
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(PathNonce, h.method("POST", h.nonce))
	mux.HandleFunc(PathAttest, h.method("POST", h.attest))
	mux.HandleFunc(PathVerdicts, h.method("GET", h.verdicts))
	mux.HandleFunc(PathEndorsements, h.method("PUT", h.endorsements))
	mux.HandleFunc(PathJWKS, h.method("GET", h.jwks))
	mux.HandleFunc(PathWellKnownJWKS, h.method("GET", h.jwks))
	mux.HandleFunc(PathHealth, h.method("GET", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	}))
	mux.Handle(PathMetrics, h.method("GET", h.m.handler().ServeHTTP))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, responseType(r, ""), problem(ProblemNotFound, "no such endpoint"))
	})
	return mux, nil
}

// method refuses other methods than m with a typed 405.
func (h *handler) method(m string, f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m && !(m == "GET" && r.Method == "HEAD") {
			w.Header().Set("Allow", m)
			h.fail(w, r, responseType(r, ""), problem(ProblemMethod, "use %s", m))
			return
		}
		f(w, r)
	}
}

// responseType returns the media type of the answer: the Accept header's
// if it names JSON or CBOR, else reqType, else JSON.
func responseType(r *http.Request, reqType string) string {
	for _, a := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(a, ",") {
			if mt := mediaType(strings.TrimSpace(part)); mt != "" {
				return mt
			}
		}
	}
	if reqType != "" {
		return reqType
	}
	return MediaJSON
}

// acceptable reports whether the Accept header, if any, admits JSON or
// CBOR.
func acceptable(r *http.Request) bool {
	vs := r.Header.Values("Accept")
	if len(vs) == 0 {
		return true
	}
	for _, a := range vs {
		for part := range strings.SplitSeq(a, ",") {
			p := strings.TrimSpace(part)
			if i := strings.IndexByte(p, ';'); i >= 0 {
				p = strings.TrimSpace(p[:i])
			}
			switch p {
			case "*/*", "application/*", MediaJSON, MediaCBOR:
				return true
			}
		}
	}
	return false
}

// bufPool recycles request bodies' buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// readBody reads at most limit bytes of r's body into a pooled buffer;
// put it back with release.
func readBody(r *http.Request, limit int) (*[]byte, error) {
	if r.ContentLength > int64(limit) {
		return nil, problem(ProblemTooLarge, "request body over %d bytes", limit)
	}
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	lr := io.LimitReader(r.Body, int64(limit)+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = b
			release(bp)
			return nil, problem(ProblemMalformed, "reading the body: %v", err)
		}
	}
	*bp = b
	if len(b) > limit {
		release(bp)
		return nil, problem(ProblemTooLarge, "request body over %d bytes", limit)
	}
	return bp, nil
}

func release(bp *[]byte) {
	if cap(*bp) > 1<<20 {
		return // let the rare large buffer go
	}
	clear(*bp)
	*bp = (*bp)[:0]
	bufPool.Put(bp)
}

// requestType checks the Content-Type of a request with a body and the
// Accept header, and returns the request's and the answer's media types.
func requestType(r *http.Request, bodyOptional bool) (req, resp string, err *Error) {
	ct := r.Header.Get("Content-Type")
	req = mediaType(ct)
	if req == "" && !(bodyOptional && ct == "") {
		return "", responseType(r, ""), problem(ProblemMediaType, "Content-Type %q: want %s or %s", ct, MediaCBOR, MediaJSON)
	}
	resp = responseType(r, req)
	if !acceptable(r) {
		return req, MediaJSON, problem(ProblemNotAcceptable, "this API answers in %s or %s", MediaCBOR, MediaJSON)
	}
	return req, resp, nil
}

func (h *handler) nonce(w http.ResponseWriter, r *http.Request) {
	mt, resp, perr := requestType(r, true)
	if perr != nil {
		h.fail(w, r, resp, perr)
		return
	}
	bp, err := readBody(r, MaxNonceBody)
	if err != nil {
		h.fail(w, r, resp, err)
		return
	}
	err = decodeNonceRequest(mt, *bp)
	release(bp)
	if err != nil {
		h.fail(w, r, resp, err)
		return
	}
	n, err := h.v.Nonce(r.Context())
	if errors.Is(err, nonce.ErrFull) {
		w.Header().Set("Retry-After", "1")
		h.fail(w, r, resp, problem(ProblemBusy, "too many nonces outstanding; retry later"))
		return
	} else if err != nil {
		h.internal(w, r, resp, "nonce", err)
		return
	}
	h.reply(w, resp, http.StatusOK, &NonceResponse{Nonce: n})
}

func (h *handler) attest(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	mt, resp, perr := requestType(r, false)
	if perr != nil {
		h.fail(w, r, resp, perr)
		return
	}
	bp, err := readBody(r, MaxAttestBody)
	if err != nil {
		h.fail(w, r, resp, err)
		return
	}
	req, err := decodeAttestRequest(mt, *bp)
	if err != nil {
		release(bp)
		h.fail(w, r, resp, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	res, err := h.v.Attest(ctx, &attest.Request{Evidence: req.Evidence, IDevIDChain: req.IDevIDChain, CSR: req.CSR})
	cancel()
	// Decoding copied what req holds out of the buffer.
	release(bp)
	if err != nil {
		if r.Context().Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			h.fail(w, r, resp, problem(ProblemUnavailable, "the attestation did not complete in time"))
			return
		}
		h.internal(w, r, resp, "attest", err)
		return
	}
	h.m.attested(res, time.Since(start))
	h.reply(w, resp, http.StatusOK, attestResponse(res))
}

func (h *handler) verdicts(w http.ResponseWriter, r *http.Request) {
	resp := responseType(r, "")
	if !h.authorized(w, r, resp, "verdicts") {
		return
	}
	ueid, err := hex.DecodeString(r.PathValue("ueid"))
	if err != nil || len(ueid) == 0 || len(ueid) > maxUEID {
		h.fail(w, r, resp, problem(ProblemMalformed, "the UEID is 1 to %d bytes in hex", maxUEID))
		return
	}
	q := r.URL.Query()
	before, limit := int64(0), DefaultPage
	if s := q.Get("before"); s != "" {
		if before, err = strconv.ParseInt(s, 10, 64); err != nil || before < 0 {
			h.fail(w, r, resp, problem(ProblemMalformed, "before: want a verdict ID"))
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxPage {
			h.fail(w, r, resp, problem(ProblemMalformed, "limit: want 1 to %d", MaxPage))
			return
		}
	}
	vs, err := h.store.Verdicts(r.Context(), ueid, before, limit)
	if err != nil {
		h.internal(w, r, resp, "verdicts", err)
		return
	}
	out := &VerdictsResponse{Verdicts: make([]Verdict, len(vs))}
	for i, v := range vs {
		out.Verdicts[i] = Verdict{ID: v.ID, Time: v.Time.UTC(), Status: v.Status, Reasons: reasons(v.Reasons),
			Product: v.Product, Release: v.Release, Accepted: v.Accepted}
	}
	if len(vs) == limit {
		out.Next = vs[len(vs)-1].ID
	}
	h.reply(w, resp, http.StatusOK, out)
}

func (h *handler) endorsements(w http.ResponseWriter, r *http.Request) {
	resp := responseType(r, "")
	if !h.authorized(w, r, resp, "endorsements") {
		return
	}
	if mediaType(r.Header.Get("Content-Type")) != MediaJSON {
		h.fail(w, r, resp, problem(ProblemMediaType, "endorsements are %s", MediaJSON))
		return
	}
	bp, err := readBody(r, MaxEndorsementsBody)
	if err != nil {
		h.fail(w, r, resp, err)
		return
	}
	p := new(attest.ProductEndorsements)
	err = decodeJSON(*bp, p)
	release(bp)
	if err != nil {
		h.fail(w, r, resp, problem(ProblemMalformed, "endorsements: %v", err))
		return
	}
	if name := r.PathValue("product"); p.Product != name {
		h.fail(w, r, resp, problem(ProblemBadEndorsements, "the body is product %q's, the path %q's", p.Product, name))
		return
	}
	if err := p.Validate(); err != nil {
		h.fail(w, r, resp, problem(ProblemBadEndorsements, "%v", err))
		return
	}
	if err := h.v.UpdateProduct(p); err != nil {
		if errors.Is(err, attest.ErrEndorsements) {
			h.fail(w, r, resp, problem(ProblemBadEndorsements, "%v", err))
			return
		}
		h.internal(w, r, resp, "endorsements", err)
		return
	}
	h.log.Info("api: endorsements updated", "product", p.Product, "releases", len(p.Releases),
		"operator", r.TLS.PeerCertificates[0].Subject.String())
	h.m.endorsements.Inc()
	h.reply(w, resp, http.StatusOK, &EndorsementsResponse{Product: p.Product, Releases: len(p.Releases)})
}

func (h *handler) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", MediaJWKSet)
	w.Header().Set("Cache-Control", "max-age=300")
	w.Write(h.v.JWKS())
}

// authorized checks that r comes with an operator's client certificate.
func (h *handler) authorized(w http.ResponseWriter, r *http.Request, resp, what string) bool {
	if h.operator == nil {
		h.fail(w, r, resp, problem(ProblemUnauthenticated, "this verifier has no operator CA: %s is disabled", what))
		return false
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		h.fail(w, r, resp, problem(ProblemUnauthenticated, "%s needs an operator client certificate", what))
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := r.TLS.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: h.operator, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		h.log.Warn("api: operator call refused", "what", what, "subject", r.TLS.PeerCertificates[0].Subject.String(), "err", err)
		h.fail(w, r, resp, problem(ProblemUnauthenticated, "%s needs an operator client certificate", what))
		return false
	}
	return true
}

// reply writes v in media type mt.
func (h *handler) reply(w http.ResponseWriter, mt string, status int, v any) {
	var b []byte
	var err error
	if mt == MediaCBOR {
		b, err = cborEnc.Marshal(v)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		h.log.Error("api: encoding an answer", "err", err)
		http.Error(w, `{"problem":"internal","message":"encoding the answer"}`, http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd["Content-Type"] = []string{mt}
	hd["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	w.Write(b)
}

// fail answers a refused request.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, mt string, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = problem(ProblemInternal, "internal error")
	}
	h.m.problem(e.Problem)
	h.log.Debug("api: request refused", "path", r.URL.Path, "problem", e.Problem, "message", e.Message, "remote", r.RemoteAddr)
	h.reply(w, mt, e.StatusCode, &ErrorBody{Problem: e.Problem, Message: e.Message})
}

// internal answers a failure of the server: logged, and not detailed to
// the caller.
func (h *handler) internal(w http.ResponseWriter, r *http.Request, mt, what string, err error) {
	h.log.Error("api: "+what+" failed", "err", err, "remote", r.RemoteAddr)
	h.fail(w, r, mt, problem(ProblemInternal, "%s failed", what))
}
