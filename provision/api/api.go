// Package api serves the provisioning service (package provision) to factory
// stations over mutually authenticated TLS (DESIGN.md, "The factory flow").
//
// # Wire format, version 1
//
// The API is JSON over HTTPS; every call is a POST with a JSON object body
// (Content-Type application/json, or none; an empty body is {}) and answers
// a JSON object; unknown fields and trailing data are refused. Byte strings
// are standard base64 (RFC 4648, section 4), as encoding/json writes []byte.
//
//	POST /v1/nonce      {}                                        → {"nonce": B64}
//	POST /v1/provision  {"ueid","csr","evidence": B64,
//	                     "product","lot": string}                 → {"chain": [B64...], "log_index": int}
//	POST /v1/confirm    {"ueid": B64}                             → {}
//	GET  /healthz       → 200 "ok"
//	GET  /metrics       → Prometheus text exposition
//
// A refused call answers a 4xx status and {"error": {"reason", "message"}},
// where reason is one of the Reason constants: callers branch on it, never
// on the message. Only a failure of the server itself is a 5xx.
//
// # The station's identity
//
// The station is who its verified client certificate says (ca.Station: the
// station profile's otherName): its name and the products it may provision.
// Nothing the station sends, in a header or a field, names it. Serve
// requires and verifies a client certificate against the station CA pool
// alone: the pool must hold the stations' issuing CA, not the root, so that
// no other certificate of the hierarchy is accepted as a client.
package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/registry"
)

// Paths of the API, version 1.
const (
	PathNonce     = "/v1/nonce"
	PathProvision = "/v1/provision"
	PathConfirm   = "/v1/confirm"
	PathHealth    = "/healthz"
	PathMetrics   = "/metrics"
)

// Reason is the typed reason of a refusal, in the error object of a 4xx or
// 5xx answer.
type Reason string

// Reasons, and the HTTP status each is sent with.
const (
	ReasonBadRequest        Reason = "bad_request"         // 400: malformed body or field
	ReasonTooLarge          Reason = "too_large"           // 413: body over the limit
	ReasonUnsupportedMedia  Reason = "unsupported_media"   // 415: not application/json
	ReasonMethodNotAllowed  Reason = "method_not_allowed"  // 405
	ReasonUnauthenticated   Reason = "unauthenticated"     // 401: no verified client certificate
	ReasonNotStation        Reason = "not_a_station"       // 403: certificate without a station identity
	ReasonNonce             Reason = "nonce"               // 400: provision.ErrNonce
	ReasonStationNotAllowed Reason = "station_not_allowed" // 403: provision.ErrStationNotAllowed
	ReasonEvidence          Reason = "evidence"            // 422: provision.ErrEvidence
	ReasonKeyMismatch       Reason = "key_mismatch"        // 422: provision.ErrKeyMismatch
	ReasonReferenceValues   Reason = "reference_values"    // 422: provision.ErrReferenceValues
	ReasonClone             Reason = "clone"               // 409: registry.ErrClone
	ReasonQuotaExceeded     Reason = "quota_exceeded"      // 429: registry.ErrQuotaExceeded
	ReasonNotFound          Reason = "not_found"           // 404: registry.ErrNotFound
	ReasonWrongState        Reason = "wrong_state"         // 409: registry.ErrWrongState
	ReasonInternal          Reason = "internal"            // 500: the server failed
)

// Body limits. A provision body holds the base64 of at most an evidence
// token, a CSR and a UEID, plus names and JSON syntax.
const (
	MaxSmallBody     = 4 << 10
	MaxProvisionBody = (evidence.MaxTokenSize+ca.MaxCSRSize+registry.MaxUEIDLen+2)/3*4 + 4<<10
	// MaxChainCerts bounds the chain a client accepts in an answer.
	MaxChainCerts = 8
)

// NonceResponse is the answer of PathNonce.
type NonceResponse struct {
	Nonce []byte `json:"nonce"`
}

// ProvisionRequest is the body of PathProvision: a provision.Request.
type ProvisionRequest struct {
	UEID     []byte `json:"ueid"`
	CSR      []byte `json:"csr"`
	Evidence []byte `json:"evidence"`
	Product  string `json:"product"`
	Lot      string `json:"lot"`
}

// ProvisionResponse is the answer of PathProvision: a provision.Result.
type ProvisionResponse struct {
	Chain    [][]byte `json:"chain"`
	LogIndex int64    `json:"log_index"`
}

// ConfirmRequest is the body of PathConfirm.
type ConfirmRequest struct {
	UEID []byte `json:"ueid"`
}

// ErrorBody is the body of a refusal.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a refusal's reason and a human-readable message.
type ErrorDetail struct {
	Reason  Reason `json:"reason"`
	Message string `json:"message"`
}

// Error is a refusal as a Go error: the server builds it, and package
// station returns it for an answer with an error body.
type Error struct {
	Status  int
	Reason  Reason
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("api: %d %s: %s", e.Status, e.Reason, e.Message)
}

// Status returns the HTTP status of a reason.
func Status(r Reason) int {
	switch r {
	case ReasonBadRequest, ReasonNonce:
		return http.StatusBadRequest
	case ReasonTooLarge:
		return http.StatusRequestEntityTooLarge
	case ReasonUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case ReasonMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case ReasonUnauthenticated:
		return http.StatusUnauthorized
	case ReasonNotStation, ReasonStationNotAllowed:
		return http.StatusForbidden
	case ReasonEvidence, ReasonKeyMismatch, ReasonReferenceValues:
		return http.StatusUnprocessableEntity
	case ReasonClone, ReasonWrongState:
		return http.StatusConflict
	case ReasonQuotaExceeded:
		return http.StatusTooManyRequests
	case ReasonNotFound:
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// reasonOf classifies an error of the service. Anything it does not know is
// the server's failure.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, provision.ErrNonce):
		return ReasonNonce
	case errors.Is(err, provision.ErrStationNotAllowed):
		return ReasonStationNotAllowed
	case errors.Is(err, provision.ErrEvidence):
		return ReasonEvidence
	case errors.Is(err, provision.ErrKeyMismatch):
		return ReasonKeyMismatch
	case errors.Is(err, provision.ErrReferenceValues):
		return ReasonReferenceValues
	case errors.Is(err, provision.ErrBadRequest), errors.Is(err, registry.ErrInvalidRequest):
		return ReasonBadRequest
	case errors.Is(err, registry.ErrClone):
		return ReasonClone
	case errors.Is(err, registry.ErrQuotaExceeded):
		return ReasonQuotaExceeded
	case errors.Is(err, registry.ErrNotFound):
		return ReasonNotFound
	case errors.Is(err, registry.ErrWrongState):
		return ReasonWrongState
	}
	return ReasonInternal
}

type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec // by call and outcome
	refused   *prometheus.CounterVec // by call and reason
	clones    prometheus.Counter
	confirmed prometheus.Counter
	issued    *prometheus.CounterVec // by result: issued or idempotent
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rootline_provision_certificates_total",
			Help: "Successful provision calls: result=issued (a new certificate) or idempotent (a retry answered with the certificate issued before).",
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rootline_provision_requests_total",
			Help: "Station API calls by call (nonce, provision, confirm) and outcome (ok, refused, error).",
		}, []string{"call", "outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rootline_provision_refused_total",
			Help: "Station API calls refused, by call and reason.",
		}, []string{"call", "reason"}),
		clones: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rootline_provision_clone_incidents_total",
			Help: "Provision requests refused as clones (a known UEID with another key).",
		}),
		confirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rootline_provision_confirmed_total",
			Help: "Chips confirmed provisioned.",
		}),
	}
	m.reg.MustRegister(m.requests, m.refused, m.clones, m.confirmed, m.issued)
	return m
}

type handler struct {
	svc    *provision.Service
	logger *slog.Logger
	m      *metrics
	mux    *http.ServeMux
}

// NewHandler returns the API's handler. It reads the station from the
// request's verified client certificate (r.TLS.VerifiedChains), so it must
// be served with a TLS configuration that requires and verifies client
// certificates against the station CA, as Serve does; without one, every
// call is refused as ReasonUnauthenticated. logger may be nil (discard).
func NewHandler(svc *provision.Service, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{svc: svc, logger: logger, m: newMetrics(), mux: http.NewServeMux()}
	h.mux.HandleFunc(PathNonce, h.nonce)
	h.mux.HandleFunc(PathProvision, h.provision)
	h.mux.HandleFunc(PathConfirm, h.confirm)
	h.mux.HandleFunc(PathHealth, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	h.mux.Handle(PathMetrics, promhttp.HandlerFor(h.m.reg, promhttp.HandlerOpts{}))
	return h.mux
}

// refuse answers err as a refusal and counts it.
func (h *handler) refuse(w http.ResponseWriter, call string, st *provision.Station, err error) {
	var e *Error
	if !errors.As(err, &e) {
		r := reasonOf(err)
		e = &Error{Status: Status(r), Reason: r, Message: err.Error()}
	}
	name := ""
	if st != nil {
		name = st.Name
	}
	outcome := "refused"
	if e.Status >= 500 {
		outcome = "error"
		h.logger.Error("station API call failed", "call", call, "station", name, "err", err)
		// The server's own failures are not described to the client.
		e = &Error{Status: e.Status, Reason: ReasonInternal, Message: "internal error"}
	} else {
		h.logger.Info("station API call refused", "call", call, "station", name, "reason", e.Reason, "err", err)
	}
	h.m.requests.WithLabelValues(call, outcome).Inc()
	h.m.refused.WithLabelValues(call, string(e.Reason)).Inc()
	if e.Reason == ReasonClone {
		h.m.clones.Inc()
	}
	if e.Status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	writeJSON(w, e.Status, &ErrorBody{Error: ErrorDetail{Reason: e.Reason, Message: e.Message}})
}

func (h *handler) ok(w http.ResponseWriter, call string, v any) {
	h.m.requests.WithLabelValues(call, "ok").Inc()
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"reason":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// station returns the station named by the request's verified client
// certificate: the leaf of the first verified chain.
func station(r *http.Request) (*provision.Station, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil, &Error{Status: http.StatusUnauthorized, Reason: ReasonUnauthenticated, Message: "no verified client certificate"}
	}
	name, products, err := ca.Station(r.TLS.VerifiedChains[0][0])
	if err != nil {
		return nil, &Error{Status: http.StatusForbidden, Reason: ReasonNotStation, Message: err.Error()}
	}
	return &provision.Station{Name: name, Products: products}, nil
}

// begin checks the method and authenticates the station, then decodes the
// untrusted body into v (nil: the body must be an empty object or empty).
func (h *handler) begin(w http.ResponseWriter, r *http.Request, limit int64, v any) (*provision.Station, error) {
	if r.Method != http.MethodPost {
		return nil, &Error{Status: http.StatusMethodNotAllowed, Reason: ReasonMethodNotAllowed, Message: r.Method}
	}
	st, err := station(r)
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = &struct{}{}
	}
	return st, Decode(w, r, limit, v)
}

// Decode decodes the untrusted JSON body of r into v, strictly: a
// Content-Type, if any, of application/json, at most limit bytes, one object, no unknown fields, no
// trailing data. An empty body decodes as {}. w may be nil; if set, the body
// is read through http.MaxBytesReader so that the server closes the
// connection after an oversized body.
func Decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &Error{Status: http.StatusUnsupportedMediaType, Reason: ReasonUnsupportedMedia, Message: "Content-Type must be application/json"}
		}
	}
	if r.ContentLength > limit {
		return &Error{Status: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge, Message: fmt.Sprintf("body of %d bytes, at most %d", r.ContentLength, limit)}
	}
	var body io.Reader = io.LimitReader(r.Body, limit+1)
	if w != nil {
		body = http.MaxBytesReader(w, r.Body, limit)
	}
	b, err := io.ReadAll(body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || int64(len(b)) > limit {
		return &Error{Status: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge, Message: fmt.Sprintf("body over %d bytes", limit)}
	}
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Reason: ReasonBadRequest, Message: "reading body: " + err.Error()}
	}
	return DecodeBytes(b, v)
}

// DecodeBytes decodes an untrusted JSON body, already bounded, into v as
// Decode does.
func DecodeBytes(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Error{Status: http.StatusBadRequest, Reason: ReasonBadRequest, Message: "body: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Error{Status: http.StatusBadRequest, Reason: ReasonBadRequest, Message: "body: trailing data after the JSON object"}
	}
	return nil
}

func (h *handler) nonce(w http.ResponseWriter, r *http.Request) {
	const call = "nonce"
	st, err := h.begin(w, r, MaxSmallBody, nil)
	if err != nil {
		h.refuse(w, call, st, err)
		return
	}
	n, err := h.svc.Nonce(r.Context(), *st)
	if err != nil {
		h.refuse(w, call, st, err)
		return
	}
	h.ok(w, call, &NonceResponse{Nonce: n})
}

func (h *handler) provision(w http.ResponseWriter, r *http.Request) {
	const call = "provision"
	var req ProvisionRequest
	st, err := h.begin(w, r, MaxProvisionBody, &req)
	if err != nil {
		h.refuse(w, call, st, err)
		return
	}
	res, err := h.svc.Provision(r.Context(), *st, &provision.Request{
		UEID: req.UEID, CSR: req.CSR, Evidence: req.Evidence, Product: req.Product, Lot: req.Lot,
	})
	if err != nil {
		h.refuse(w, call, st, err)
		return
	}
	if res.Issued {
		h.m.issued.WithLabelValues("issued").Inc()
	} else {
		h.m.issued.WithLabelValues("idempotent").Inc()
	}
	h.ok(w, call, &ProvisionResponse{Chain: res.Chain, LogIndex: res.LogIndex})
}

func (h *handler) confirm(w http.ResponseWriter, r *http.Request) {
	const call = "confirm"
	var req ConfirmRequest
	st, err := h.begin(w, r, MaxSmallBody, &req)
	if err != nil {
		h.refuse(w, call, st, err)
		return
	}
	if err := h.svc.Confirm(r.Context(), *st, req.UEID); err != nil {
		h.refuse(w, call, st, err)
		return
	}
	h.m.confirmed.Inc()
	h.ok(w, call, &struct{}{})
}

// ServerConfig configures Serve.
type ServerConfig struct {
	// Listen is the TCP address ("host:port").
	Listen string
	// Certificate is the server's certificate chain and key.
	Certificate tls.Certificate
	// StationCA holds the station certificates' issuing CA, and only it
	// (not the root: see the package documentation).
	StationCA *x509.CertPool
	// Logger: default discard.
	Logger *slog.Logger
	// Ready, if set, receives the listener's address once it listens.
	Ready func(net.Addr)
}

// TLSConfig returns the server's TLS configuration: TLS 1.3 only, a client
// certificate required and verified against stationCA.
func TLSConfig(cert tls.Certificate, stationCA *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    stationCA,
	}
}

// Serve serves h over TLS at cfg.Listen until ctx is done, then shuts the
// server down, giving calls in flight up to ten seconds.
func Serve(ctx context.Context, cfg *ServerConfig, h http.Handler) error {
	if cfg == nil || cfg.StationCA == nil || len(cfg.Certificate.Certificate) == 0 {
		return errors.New("api: server certificate and station CA are required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         TLSConfig(cfg.Certificate, cfg.StationCA),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	<-errc
	return nil
}
