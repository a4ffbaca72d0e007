// Package api serves the provisioning service (package provision) to factory
// stations over mutually authenticated TLS (DESIGN.md, "The factory flow").
//
// # Wire format, version 1
//
// The API is the protobuf service rootline.provision.v1.ProvisionService
// (proto/rootline/provision/v1/provision.proto; generated code in
// provisionv1 and provisionv1/provisionv1connect), served with Connect
// (connectrpc.com): one handler speaks the gRPC, gRPC-Web and Connect
// protocols, each with binary protobuf or JSON (protojson), over HTTP/2 (and
// HTTP/1.1 for the protocols that allow it). A gRPC client, a Connect client
// and curl all reach it:
//
//	POST /rootline.provision.v1.ProvisionService/Nonce      NonceRequest     → NonceResponse
//	POST /rootline.provision.v1.ProvisionService/Provision  ProvisionRequest → ProvisionResponse
//	POST /rootline.provision.v1.ProvisionService/Confirm    ConfirmRequest   → ConfirmResponse
//	POST /rootline.provision.v1.ProvisionService/ProvisionInjected
//	                                   ProvisionInjectedRequest → ProvisionInjectedResponse
//	POST /rootline.provision.v1.ProvisionService/ProvisionTPM
//	                                   ProvisionTPMRequest      → ProvisionResponse
//	GET  /healthz       → 200 "ok"
//	GET  /metrics       → Prometheus text exposition
//	GET  /v1/registry/export (verifiers only, when Serve is given one: ServerConfig.Export)
//
//	curl --cert st.pem --key st.key --cacert tls-ca.pem -H 'Content-Type: application/json' \
//	    -d '{}' https://provision.example:8443/rootline.provision.v1.ProvisionService/Nonce
//
// JSON is protojson's mapping: bytes are base64, int64 values (log_index)
// are strings, and fields are named in lowerCamelCase (logIndex) on output
// and either way on input.
//
// Requests are decoded strictly: unknown fields (protobuf or JSON),
// duplicate or malformed JSON, invalid UTF-8 and trailing data are refused;
// an empty JSON body is {}. Each call's message has a size limit
// (MaxSmallBody, MaxProvisionBody, MaxInjectedBody, MaxTPMBody).
//
// A refused call ends with a status code (connect.Code; gRPC's codes) and
// one rootline.provision.v1.ErrorInfo detail whose reason is one of the
// Reason constants: callers branch on the reason, never on the message.
// Only a failure of the server itself is CodeInternal, and its message says
// nothing more. FromConnect turns a client's *connect.Error into an *Error.
//
// # The station's identity
//
// The station is who its verified client certificate says (ca.Station: the
// station profile's otherName): its name and the products it may provision.
// Nothing the station sends, in a header or a field, names it. The
// certificate must chain to the station CA pool alone: the pool must hold
// the stations' issuing CA, not the root, so that no other certificate of
// the hierarchy is accepted as a station. Serve checks this per request;
// when it also serves the registry export to verifiers (a CA of their own),
// a verifier's certificate is refused by the station calls, and a station's
// by the export.
package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/provision"
	pb "github.com/rootline/rootline/provision/api/provisionv1"
	"github.com/rootline/rootline/provision/api/provisionv1/provisionv1connect"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
)

// Paths of the API, version 1: the procedures of ProvisionService, and the
// service's own endpoints.
const (
	PathNonce     = provisionv1connect.ProvisionServiceNonceProcedure
	PathProvision = provisionv1connect.ProvisionServiceProvisionProcedure
	PathConfirm   = provisionv1connect.ProvisionServiceConfirmProcedure
	// PathProvisionInjected and PathProvisionTPM are the injected-identity
	// and TPM variants of PathProvision.
	PathProvisionInjected = provisionv1connect.ProvisionServiceProvisionInjectedProcedure
	PathProvisionTPM      = provisionv1connect.ProvisionServiceProvisionTPMProcedure
	PathHealth            = "/healthz"
	PathMetrics           = "/metrics"
	// PathExport is where Serve mounts ServerConfig.Export.
	PathExport = export.Path
)

// Reason is the typed reason of a refusal, in the ErrorInfo detail of the
// call's error.
type Reason string

// Reasons, with the status code each is sent with and the HTTP status of
// Status.
const (
	ReasonBadRequest        Reason = "bad_request"         // InvalidArgument, 400: malformed message or field
	ReasonTooLarge          Reason = "too_large"           // ResourceExhausted, 413: message over the limit
	ReasonUnauthenticated   Reason = "unauthenticated"     // Unauthenticated, 401: no verified client certificate
	ReasonNotStation        Reason = "not_a_station"       // PermissionDenied, 403: certificate without a station identity, or not of the station CA
	ReasonNonce             Reason = "nonce"               // InvalidArgument, 400: provision.ErrNonce
	ReasonStationNotAllowed Reason = "station_not_allowed" // PermissionDenied, 403: provision.ErrStationNotAllowed
	ReasonEvidence          Reason = "evidence"            // InvalidArgument, 422: provision.ErrEvidence
	ReasonKeyMismatch       Reason = "key_mismatch"        // InvalidArgument, 422: provision.ErrKeyMismatch
	ReasonReferenceValues   Reason = "reference_values"    // FailedPrecondition, 422: provision.ErrReferenceValues
	ReasonClone             Reason = "clone"               // AlreadyExists, 409: registry.ErrClone
	ReasonQuotaExceeded     Reason = "quota_exceeded"      // ResourceExhausted, 429: registry.ErrQuotaExceeded
	ReasonNotFound          Reason = "not_found"           // NotFound, 404: registry.ErrNotFound
	ReasonWrongState        Reason = "wrong_state"         // FailedPrecondition, 409: registry.ErrWrongState
	ReasonTransportKey      Reason = "transport_key"       // InvalidArgument, 422: provision.ErrTransportKey
	ReasonTPMIdentity       Reason = "tpm_identity"        // InvalidArgument, 422: provision.ErrTPMIdentity
	// ReasonInjectionUnsupported: provision.ErrInjection because the HSM
	// lacks a mechanism (hsm.ErrMechanismUnsupported): the service's
	// configuration, not the request, is at fault; a retry fails the
	// same way. FailedPrecondition, 501.
	ReasonInjectionUnsupported Reason = "injection_unsupported"
	// ReasonInjection: any other provision.ErrInjection (the HSM failed,
	// or answered with other than what was asked); nothing was issued,
	// and a retry may succeed. Unavailable, 503.
	ReasonInjection Reason = "injection"
	ReasonInternal  Reason = "internal" // Internal, 500: the server failed
)

// Message limits, per call, on the encoded message (the larger JSON form
// included). A provision message holds at most an evidence token, a CSR
// and a UEID, base64 in JSON, plus names and syntax.
const (
	MaxSmallBody     = 4 << 10
	MaxProvisionBody = (evidence.MaxTokenSize+ca.MaxCSRSize+registry.MaxUEIDLen+2)/3*4 + 4<<10
	// MaxInjectedBody bounds a ProvisionInjectedRequest: evidence, UEID
	// and the transport key statement and signature.
	MaxInjectedBody = (evidence.MaxTokenSize+registry.MaxUEIDLen+provision.MaxTransportStatementSize+
		provision.MaxTransportSignatureSize+2)/3*4 + 4<<10
	// MaxTPMBody bounds a ProvisionTPMRequest: a provision request, two
	// TPM public areas, a certification and its signature.
	MaxTPMBody = (evidence.MaxTokenSize+ca.MaxCSRSize+registry.MaxUEIDLen+
		2*provision.MaxTPMPublicSize+2*provision.MaxTPMAttestSize+2)/3*4 + 4<<10
	// MaxWrappedSecrets bounds the secrets a client accepts in an answer.
	MaxWrappedSecrets = 16
	// MaxChainCerts bounds the chain a client accepts in an answer.
	MaxChainCerts = 8
	// maxReason and maxMessage bound what FromConnect keeps of untrusted
	// error details.
	maxReason  = 64
	maxMessage = 1 << 10
)

// errorInfoType is the full name of the ErrorInfo detail.
var errorInfoType = string((&pb.ErrorInfo{}).ProtoReflect().Descriptor().FullName())

// Error is a refusal as a Go error: the server builds it, and package
// station (or FromConnect) returns it for a refused call. Status is the
// HTTP status that stands for Reason (Status), kept for callers that grade
// refusals by it (4xx: the request; 5xx: the server).
type Error struct {
	Status  int
	Code    connect.Code
	Reason  Reason
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("api: %d %s: %s", e.Status, e.Reason, e.Message)
}

// Is reports whether the refusal's reason stands for target, one of the
// sentinel errors of package provision or registry that reasonOf maps to a
// reason: errors.Is(err, provision.ErrStationNotAllowed) holds for a
// refusal of reason station_not_allowed, on the client's side too.
func (e *Error) Is(target error) bool {
	switch e.Reason {
	case ReasonNonce:
		return target == provision.ErrNonce
	case ReasonStationNotAllowed:
		return target == provision.ErrStationNotAllowed
	case ReasonEvidence:
		return target == provision.ErrEvidence
	case ReasonKeyMismatch:
		return target == provision.ErrKeyMismatch
	case ReasonReferenceValues:
		return target == provision.ErrReferenceValues
	case ReasonClone:
		return target == registry.ErrClone
	case ReasonQuotaExceeded:
		return target == registry.ErrQuotaExceeded
	case ReasonNotFound:
		return target == registry.ErrNotFound
	case ReasonWrongState:
		return target == registry.ErrWrongState
	case ReasonTransportKey:
		return target == provision.ErrTransportKey
	case ReasonTPMIdentity:
		return target == provision.ErrTPMIdentity
	case ReasonInjection:
		return target == provision.ErrInjection
	case ReasonInjectionUnsupported:
		return target == provision.ErrInjection || target == hsm.ErrMechanismUnsupported
	}
	return false
}

// newError returns the refusal of reason r.
func newError(r Reason, msg string) *Error {
	return &Error{Status: Status(r), Code: Code(r), Reason: r, Message: msg}
}

// Status returns the HTTP status that stands for a reason.
func Status(r Reason) int {
	switch r {
	case ReasonBadRequest, ReasonNonce:
		return http.StatusBadRequest
	case ReasonTooLarge:
		return http.StatusRequestEntityTooLarge
	case ReasonUnauthenticated:
		return http.StatusUnauthorized
	case ReasonNotStation, ReasonStationNotAllowed:
		return http.StatusForbidden
	case ReasonEvidence, ReasonKeyMismatch, ReasonReferenceValues, ReasonTransportKey, ReasonTPMIdentity:
		return http.StatusUnprocessableEntity
	case ReasonInjectionUnsupported:
		return http.StatusNotImplemented
	case ReasonInjection:
		return http.StatusServiceUnavailable
	case ReasonClone, ReasonWrongState:
		return http.StatusConflict
	case ReasonQuotaExceeded:
		return http.StatusTooManyRequests
	case ReasonNotFound:
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// Code returns the status code a reason is sent with.
func Code(r Reason) connect.Code {
	switch r {
	case ReasonBadRequest, ReasonNonce, ReasonEvidence, ReasonKeyMismatch, ReasonTransportKey, ReasonTPMIdentity:
		return connect.CodeInvalidArgument
	case ReasonInjection:
		return connect.CodeUnavailable
	case ReasonTooLarge, ReasonQuotaExceeded:
		return connect.CodeResourceExhausted
	case ReasonUnauthenticated:
		return connect.CodeUnauthenticated
	case ReasonNotStation, ReasonStationNotAllowed:
		return connect.CodePermissionDenied
	case ReasonReferenceValues, ReasonWrongState, ReasonInjectionUnsupported:
		return connect.CodeFailedPrecondition
	case ReasonClone:
		return connect.CodeAlreadyExists
	case ReasonNotFound:
		return connect.CodeNotFound
	}
	return connect.CodeInternal
}

// httpStatus is the HTTP status that stands for a code without a reason
// (the Connect protocol's mapping).
func httpStatus(c connect.Code) int {
	switch c {
	case connect.CodeCanceled:
		return 499
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return http.StatusBadRequest
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return http.StatusConflict
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnimplemented:
		return http.StatusNotImplemented
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// connectError is e on the wire: its code, its message and an ErrorInfo
// detail with its reason.
func (e *Error) connectError() *connect.Error {
	ce := connect.NewError(e.Code, errors.New(e.Message))
	if d, err := connect.NewErrorDetail(&pb.ErrorInfo{Reason: string(e.Reason)}); err == nil {
		ce.AddDetail(d)
	}
	return ce
}

// FromConnect returns the refusal an untrusted error of a call carries: its
// ErrorInfo reason if it has one, else a reason read from the code alone
// (InvalidArgument: bad_request, ResourceExhausted: too_large,
// Unauthenticated: unauthenticated; refusals of the RPC layer itself, such
// as a message over the limit, come without a detail), else ReasonInternal.
// Reasons and messages are truncated to bounded lengths. ok is false for
// the codes a client sees when no answer came (Canceled, DeadlineExceeded,
// Unavailable, Unknown): such an error is not a refusal.
func FromConnect(ce *connect.Error) (e *Error, ok bool) {
	if ce == nil {
		return nil, false
	}
	var reason Reason
	for _, d := range ce.Details() {
		if d.Type() != errorInfoType {
			continue
		}
		var info pb.ErrorInfo
		if err := proto.Unmarshal(d.Bytes(), &info); err != nil {
			continue
		}
		reason = Reason(info.GetReason())
		if len(reason) > maxReason || !utf8.ValidString(string(reason)) {
			reason = ReasonInternal
		}
		break
	}
	code := ce.Code()
	if reason == "" {
		switch code {
		case connect.CodeCanceled, connect.CodeDeadlineExceeded, connect.CodeUnavailable, connect.CodeUnknown:
			return nil, false
		case connect.CodeInvalidArgument:
			reason = ReasonBadRequest
		case connect.CodeResourceExhausted:
			reason = ReasonTooLarge
		case connect.CodeUnauthenticated:
			reason = ReasonUnauthenticated
		default:
			reason = ReasonInternal
		}
	}
	status := Status(reason)
	if reason == ReasonInternal {
		status = httpStatus(code)
	}
	msg := ce.Message()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	return &Error{Status: status, Code: code, Reason: reason, Message: msg}, true
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
	case errors.Is(err, provision.ErrTransportKey):
		return ReasonTransportKey
	case errors.Is(err, provision.ErrTPMIdentity):
		return ReasonTPMIdentity
	case errors.Is(err, provision.ErrInjection) && errors.Is(err, hsm.ErrMechanismUnsupported):
		return ReasonInjectionUnsupported
	case errors.Is(err, provision.ErrInjection):
		return ReasonInjection
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
			Help: "Station API calls by call (nonce, provision, provision_injected, provision_tpm, confirm) and outcome (ok, refused, error).",
		}, []string{"call", "outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rootline_provision_refused_total",
			Help: "Station API calls refused, by call and reason (a Reason, or rpc: refused by the RPC layer before the service, e.g. a message over the limit).",
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

// service implements ProvisionService on a provision.Service.
type service struct {
	svc    *provision.Service
	logger *slog.Logger
	m      *metrics
}

// NewHandler returns the API's handler: ProvisionService (Connect, gRPC and
// gRPC-Web, binary and JSON), /healthz and /metrics. It reads the station
// from the request's client certificate: as Serve verified it against the
// station CA, or, served otherwise, from r.TLS.VerifiedChains, which then
// must be verified against the station CA alone (TLSConfig); without a
// verified certificate, every call is refused as ReasonUnauthenticated.
// logger may be nil (discard).
func NewHandler(svc *provision.Service, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &service{svc: svc, logger: logger, m: newMetrics()}
	mux := http.NewServeMux()
	methods := pb.File_rootline_provision_v1_provision_proto.Services().ByName("ProvisionService").Methods()
	mount := func(call, path string, limit int64, h *connect.Handler) {
		mux.Handle(path, s.withPeer(call, limit, h))
	}
	mount("nonce", PathNonce, MaxSmallBody, connect.NewUnaryHandler(PathNonce, s.nonce, s.options(methods.ByName("Nonce"), MaxSmallBody)...))
	mount("provision", PathProvision, MaxProvisionBody, connect.NewUnaryHandler(PathProvision, s.provision, s.options(methods.ByName("Provision"), MaxProvisionBody)...))
	mount("confirm", PathConfirm, MaxSmallBody, connect.NewUnaryHandler(PathConfirm, s.confirm, s.options(methods.ByName("Confirm"), MaxSmallBody)...))
	mount("provision_injected", PathProvisionInjected, MaxInjectedBody, connect.NewUnaryHandler(PathProvisionInjected, s.provisionInjected,
		s.options(methods.ByName("ProvisionInjected"), MaxInjectedBody)...))
	mount("provision_tpm", PathProvisionTPM, MaxTPMBody, connect.NewUnaryHandler(PathProvisionTPM, s.provisionTPM,
		s.options(methods.ByName("ProvisionTPM"), MaxTPMBody)...))
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	return mux
}

// options are a procedure's handler options: its schema, its message
// limit, the codecs that leave decoding to the procedure (wire), and a
// recovery that turns a panic into an internal error.
func (s *service) options(md protoreflect.MethodDescriptor, limit int64) []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithSchema(md),
		// descriptorpb's levels and connect's have the same numbers.
		connect.WithIdempotency(connect.IdempotencyLevel(md.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel())),
		connect.WithReadMaxBytes(int(limit)),
		// Answers are a few kilobytes of certificates that do not
		// compress: gzip would cost CPU for nothing (it was 5% of the
		// service's CPU under load). Requests may still come compressed.
		connect.WithCompressMinBytes(noCompressionBelow),
		connect.WithCodec(wireCodec{"proto"}),
		connect.WithCodec(wireCodec{"json"}),
		connect.WithCodec(wireCodec{"json; charset=utf-8"}),
		connect.WithRecover(func(_ context.Context, spec connect.Spec, _ http.Header, p any) error {
			s.logger.Error("station API call panicked", "procedure", spec.Procedure, "panic", p)
			return newError(ReasonInternal, "internal error").connectError()
		}),
	}
}

// noCompressionBelow: answers smaller than this are not compressed.
const noCompressionBelow = 1 << 20

// wire is a request message as it came, in a codec's encoding: the codecs
// of the handler do not decode (connect's own would refuse a malformed
// message with an untyped error, and drop unknown JSON fields), so that the
// procedure decodes strictly and refuses with a typed reason.
type wire struct {
	json bool
	data []byte
}

// wireCodec is a codec named name ("proto" or "json..."): it marshals
// answers as protobuf or protojson, and keeps requests as wire.
type wireCodec struct{ name string }

func (c wireCodec) Name() string { return c.name }

func (c wireCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("api: cannot marshal %T", v)
	}
	if c.name != "proto" {
		return protojson.Marshal(m)
	}
	return proto.Marshal(m)
}

func (c wireCodec) Unmarshal(b []byte, v any) error {
	w, ok := v.(*wire)
	if !ok {
		return fmt.Errorf("api: cannot unmarshal into %T", v)
	}
	w.json = c.name != "proto"
	w.data = bytes.Clone(b) // b belongs to connect's buffer pool
	return nil
}

// Unmarshal decodes an untrusted request message, binary protobuf or
// protojson, into m strictly: no unknown field (m's fields are scalars, so
// checking m itself covers all), valid UTF-8 in strings, for JSON no
// duplicate field and no trailing data, and an empty or blank JSON body is
// {}. A refusal is an *Error of ReasonBadRequest.
func Unmarshal(data []byte, json bool, m proto.Message) error {
	var err error
	if json {
		if len(bytes.TrimSpace(data)) == 0 {
			data = []byte("{}")
		}
		err = protojson.UnmarshalOptions{}.Unmarshal(data, m)
	} else {
		err = proto.UnmarshalOptions{}.Unmarshal(data, m)
		if err == nil && len(m.ProtoReflect().GetUnknown()) != 0 {
			err = errors.New("unknown field")
		}
	}
	if err != nil {
		return newError(ReasonBadRequest, "message: "+err.Error())
	}
	return nil
}

// peerKey is the context key of the request's TLS state and the chains
// Serve verified, put there by withPeer.
type peerKey struct{}

// peer is what a procedure knows of its caller.
type peer struct {
	tls *tls.ConnectionState
	// auth, if set, is Serve's verification of the client certificate
	// against the station CA: the chains, or none.
	auth *stationAuth
	// reached is set once the procedure runs.
	reached bool
}

// stationAuth is the chains of the client certificate to the station CA,
// verified by Serve; none if it does not chain there.
type stationAuth struct {
	chains [][]*x509.Certificate
	// revoked: the certificate chains to the station CA but is revoked,
	// or its revocation status is unknown.
	revoked bool
}

type stationAuthKey struct{}

// withPeer bounds the request body to limit (and the envelope), so that
// the server stops reading an oversized message, and hands the caller's
// TLS state to the procedure through the context. A call the RPC layer
// refuses before the procedure runs (message over the limit, content type,
// method, framing, compression) is counted as refused for reason "rpc".
func (s *service) withPeer(call string, limit int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit+1<<10)
		auth, _ := r.Context().Value(stationAuthKey{}).(*stationAuth)
		p := &peer{tls: r.TLS, auth: auth}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, p)))
		if !p.reached {
			s.m.requests.WithLabelValues(call, "refused").Inc()
			s.m.refused.WithLabelValues(call, reasonRPC).Inc()
			s.logger.InfoContext(r.Context(), "station API call refused by the RPC layer", "call", call, "remote", r.RemoteAddr,
				"method", r.Method, "content_type", r.Header.Get("Content-Type"))
		}
	})
}

// reasonRPC is the metrics' reason of a call the RPC layer refused before
// the procedure ran; such a call's error has no ErrorInfo.
const reasonRPC = "rpc"

// station returns the station named by the caller's verified client
// certificate: the leaf of the first verified chain to the station CA.
func station(ctx context.Context) (*provision.Station, error) {
	p, _ := ctx.Value(peerKey{}).(*peer)
	if p != nil {
		p.reached = true
	}
	if p == nil || p.tls == nil || len(p.tls.PeerCertificates) == 0 {
		return nil, newError(ReasonUnauthenticated, "no verified client certificate")
	}
	chains := p.tls.VerifiedChains
	if p.auth != nil {
		chains = p.auth.chains
		if p.auth.revoked {
			return nil, newError(ReasonUnauthenticated, "the client certificate is revoked, or its revocation status is unknown")
		}
		if len(chains) == 0 {
			return nil, newError(ReasonNotStation, "the client certificate is not of the station CA")
		}
	}
	if len(chains) == 0 || len(chains[0]) == 0 {
		return nil, newError(ReasonUnauthenticated, "no verified client certificate")
	}
	name, products, err := ca.Station(chains[0][0])
	if err != nil {
		return nil, newError(ReasonNotStation, err.Error())
	}
	return &provision.Station{Name: name, Products: products}, nil
}

// begin authenticates the station, then decodes the untrusted message into
// m.
func begin(ctx context.Context, req *connect.Request[wire], m proto.Message) (*provision.Station, error) {
	st, err := station(ctx)
	if err != nil {
		return nil, err
	}
	return st, Unmarshal(req.Msg.data, req.Msg.json, m)
}

// refuse counts and logs the refusal of err and returns it as the call's
// error.
func (s *service) refuse(ctx context.Context, call string, st *provision.Station, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		e = newError(reasonOf(err), err.Error())
	}
	name := ""
	if st != nil {
		name = st.Name
	}
	outcome := "refused"
	switch e.Reason {
	case ReasonInternal, ReasonInjection, ReasonInjectionUnsupported:
		outcome = "error"
		s.logger.ErrorContext(ctx, "station API call failed", "call", call, "station", name, "reason", e.Reason, "err", err)
		// The server's own failures (its HSM's too) are not described to
		// the client beyond their reason.
		msg := map[Reason]string{
			ReasonInternal:             "internal error",
			ReasonInjection:            "key injection failed",
			ReasonInjectionUnsupported: "the HSM lacks a mechanism key injection needs",
		}[e.Reason]
		e = newError(e.Reason, msg)
	default:
		s.logger.InfoContext(ctx, "station API call refused", "call", call, "station", name, "reason", e.Reason, "err", err)
	}
	s.m.requests.WithLabelValues(call, outcome).Inc()
	s.m.refused.WithLabelValues(call, string(e.Reason)).Inc()
	if e.Reason == ReasonClone {
		s.m.clones.Inc()
	}
	return e.connectError()
}

func answer[T any](s *service, call string, m *T) (*connect.Response[T], error) {
	s.m.requests.WithLabelValues(call, "ok").Inc()
	return connect.NewResponse(m), nil
}

func (s *service) nonce(ctx context.Context, req *connect.Request[wire]) (*connect.Response[pb.NonceResponse], error) {
	const call = "nonce"
	st, err := begin(ctx, req, &pb.NonceRequest{})
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	n, err := s.svc.Nonce(ctx, *st)
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	return answer(s, call, &pb.NonceResponse{Nonce: n})
}

func (s *service) provision(ctx context.Context, req *connect.Request[wire]) (*connect.Response[pb.ProvisionResponse], error) {
	const call = "provision"
	var m pb.ProvisionRequest
	st, err := begin(ctx, req, &m)
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	res, err := s.svc.Provision(ctx, *st, &provision.Request{
		UEID: m.Ueid, CSR: m.Csr, Evidence: m.Evidence, Product: m.Product, Lot: m.Lot,
	})
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	s.countIssued(res.Issued)
	s.logger.InfoContext(ctx, "station API provision", "station", st.Name, "product", m.Product, "lot", m.Lot,
		"issued", res.Issued, "log_index", res.LogIndex, "protocol", req.Peer().Protocol)
	return answer(s, call, &pb.ProvisionResponse{Chain: res.Chain, LogIndex: res.LogIndex})
}

func (s *service) countIssued(issued bool) {
	if issued {
		s.m.issued.WithLabelValues("issued").Inc()
	} else {
		s.m.issued.WithLabelValues("idempotent").Inc()
	}
}

func (s *service) provisionInjected(ctx context.Context, req *connect.Request[wire]) (*connect.Response[pb.ProvisionInjectedResponse], error) {
	const call = "provision_injected"
	var m pb.ProvisionInjectedRequest
	st, err := begin(ctx, req, &m)
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	res, err := s.svc.ProvisionInjected(ctx, *st, &provision.InjectedRequest{
		UEID: m.Ueid, Product: m.Product, Lot: m.Lot, Evidence: m.Evidence,
		TransportStatement: m.TransportStatement, TransportSignature: m.TransportSignature,
	})
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	s.countIssued(res.Issued)
	s.logger.InfoContext(ctx, "station API provision", "station", st.Name, "product", m.Product, "lot", m.Lot,
		"identity", provision.Injected.String(), "issued", res.Issued, "log_index", res.LogIndex,
		"key", res.Key != nil, "secrets", len(res.Secrets), "protocol", req.Peer().Protocol)
	return answer(s, call, &pb.ProvisionInjectedResponse{Chain: res.Chain, LogIndex: res.LogIndex, Key: res.Key, Secrets: res.Secrets})
}

func (s *service) provisionTPM(ctx context.Context, req *connect.Request[wire]) (*connect.Response[pb.ProvisionResponse], error) {
	const call = "provision_tpm"
	var m pb.ProvisionTPMRequest
	st, err := begin(ctx, req, &m)
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	res, err := s.svc.ProvisionTPM(ctx, *st, &provision.TPMRequest{
		Request:   provision.Request{UEID: m.Ueid, CSR: m.Csr, Evidence: m.Evidence, Product: m.Product, Lot: m.Lot},
		IAKPublic: m.IakPublic, IDevIDPublic: m.IdevidPublic,
		CertifyAttest: m.CertifyAttest, CertifySignature: m.CertifySignature,
	})
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	s.countIssued(res.Issued)
	s.logger.InfoContext(ctx, "station API provision", "station", st.Name, "product", m.Product, "lot", m.Lot,
		"identity", "tpm", "issued", res.Issued, "log_index", res.LogIndex, "protocol", req.Peer().Protocol)
	return answer(s, call, &pb.ProvisionResponse{Chain: res.Chain, LogIndex: res.LogIndex})
}

func (s *service) confirm(ctx context.Context, req *connect.Request[wire]) (*connect.Response[pb.ConfirmResponse], error) {
	const call = "confirm"
	var m pb.ConfirmRequest
	st, err := begin(ctx, req, &m)
	if err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	if err := s.svc.Confirm(ctx, *st, m.Ueid); err != nil {
		return nil, s.refuse(ctx, call, st, err)
	}
	s.m.confirmed.Inc()
	return answer(s, call, &pb.ConfirmResponse{})
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
	// VerifierCA, with Export, holds the CA of the verifiers' client
	// certificates (a CA other than the stations'): a client certificate
	// chaining to it, for client authentication, may read Export, and
	// nothing of the station API.
	VerifierCA *x509.CertPool
	// Export, with VerifierCA, is served at PathExport (GET
	// /v1/registry/export) to verifiers only; normally export.Handler.
	// (/healthz and /metrics answer any client the handshake accepts,
	// station or verifier.)
	Export http.Handler
	// Revocation, optional, is asked on every request whether the client's
	// certificate (or an intermediate of its chain) is revoked: a revoked
	// station or verifier is refused at its next call. NewCRLFile reads
	// the CAs' CRLs.
	Revocation Revocation
	// Logger: default discard.
	Logger *slog.Logger
	// Ready, if set, receives the listener's address once it listens.
	Ready func(net.Addr)
}

// Validate checks that the configuration is complete.
func (c *ServerConfig) Validate() error {
	switch {
	case c == nil || c.StationCA == nil || len(c.Certificate.Certificate) == 0:
		return errors.New("api: server certificate and station CA are required")
	case (c.VerifierCA == nil) != (c.Export == nil):
		return errors.New("api: VerifierCA and Export go together")
	}
	return nil
}

// TLSConfig returns the server's TLS configuration for stations alone: TLS
// 1.3 only, HTTP/2 or HTTP/1.1, a client certificate required and verified
// against stationCA.
func TLSConfig(cert tls.Certificate, stationCA *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    stationCA,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// tlsConfigPools is TLSConfig for clients of several CAs: the handshake
// requires a client certificate that chains, for client authentication,
// to one of pools; each route then checks the pool it serves (authorize).
// (A tls.Config holds one pool of client CAs, and a CertPool cannot be
// merged into another; the pools' names are therefore not sent in the
// CertificateRequest, which is allowed: RFC 8446, section 4.2.4.)
func tlsConfigPools(cert tls.Certificate, pools ...*x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, p := range pools {
				if len(verify(&cs, p)) != 0 {
					return nil
				}
			}
			return errors.New("api: client certificate of an unknown CA")
		},
	}
}

// verify returns the chains of the client certificate of cs to pool, for
// client authentication; none if it has none or does not chain there.
func verify(cs *tls.ConnectionState, pool *x509.CertPool) [][]*x509.Certificate {
	if cs == nil || len(cs.PeerCertificates) == 0 || pool == nil {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil
	}
	return chains
}

// authorize routes a request by its client certificate: PathExport to
// export for a certificate of verifierCA (403 otherwise), everything else
// to h with the certificate's chains to stationCA in the context, which the
// station calls require. A certificate that rev says is revoked, or whose
// revocation is unknown, counts as none.
func authorize(stationCA, verifierCA *x509.CertPool, rev Revocation, exp, h http.Handler, logger *slog.Logger) http.Handler {
	// chainsOf verifies the request's client certificate against pool,
	// once per connection (and again each minute, or when a certificate
	// of the chain expires), then asks rev on every request.
	chainsOf := func(r *http.Request, pool *x509.CertPool) (chains [][]*x509.Certificate, revoked bool) {
		chains = verifyCached(r.Context(), r.TLS, pool)
		if len(chains) == 0 || rev == nil {
			return chains, false
		}
		for _, c := range chains[0][:len(chains[0])-1] { // the root is not on a CRL
			isRevoked, err := rev.Revoked(c)
			if err != nil {
				logger.Error("client certificate refused: its revocation status is unknown", "subject", c.Subject.String(), "err", err)
				return nil, true
			}
			if isRevoked {
				logger.Warn("client certificate refused: revoked", "subject", c.Subject.String(), "serial", c.SerialNumber.Text(16), "remote", r.RemoteAddr)
				return nil, true
			}
		}
		return chains, false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exp != nil && r.URL.Path == PathExport {
			if chains, _ := chainsOf(r, verifierCA); len(chains) == 0 {
				logger.Warn("registry export refused: not a verifier certificate", "remote", r.RemoteAddr)
				http.Error(w, "api: the registry export is for verifiers only", http.StatusForbidden)
				return
			}
			exp.ServeHTTP(w, r)
			return
		}
		chains, revoked := chainsOf(r, stationCA)
		ctx := context.WithValue(r.Context(), stationAuthKey{}, &stationAuth{chains: chains, revoked: revoked})
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// connAuth caches, per TLS connection, the client certificate's chains to
// each pool: verifying a chain is a signature check per certificate, and
// a station makes three calls per chip on one connection.
type connAuth struct {
	mu    sync.Mutex
	pools map[*x509.CertPool]cachedChains
}

type cachedChains struct {
	chains [][]*x509.Certificate
	until  time.Time
}

type connAuthKey struct{}

// reverifyAfter bounds how long a connection's verification is reused.
const reverifyAfter = time.Minute

// verifyCached is verify, remembered for the request's connection (Serve
// puts a connAuth in each connection's context) until reverifyAfter has
// passed or a certificate of the chain expires.
func verifyCached(ctx context.Context, cs *tls.ConnectionState, pool *x509.CertPool) [][]*x509.Certificate {
	ca, _ := ctx.Value(connAuthKey{}).(*connAuth)
	if ca == nil {
		return verify(cs, pool)
	}
	now := time.Now()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.pools[pool]; ok && now.Before(c.until) {
		return c.chains
	}
	chains := verify(cs, pool)
	until := now.Add(reverifyAfter)
	if len(chains) > 0 {
		for _, c := range chains[0] {
			if c.NotAfter.Before(until) {
				until = c.NotAfter
			}
		}
	}
	ca.pools[pool] = cachedChains{chains: chains, until: until}
	return chains
}

// Serve serves h (normally NewHandler's) over TLS 1.3, HTTP/2 and
// HTTP/1.1, at cfg.Listen until ctx is done, then shuts the server down,
// giving calls in flight up to ten seconds. Each request's client
// certificate is verified against the station CA for the station calls,
// and against the verifier CA for cfg.Export.
func Serve(ctx context.Context, cfg *ServerConfig, h http.Handler) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tlsConf := TLSConfig(cfg.Certificate, cfg.StationCA)
	if cfg.VerifierCA != nil {
		tlsConf = tlsConfigPools(cfg.Certificate, cfg.StationCA, cfg.VerifierCA)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{
		Handler: authorize(cfg.StationCA, cfg.VerifierCA, cfg.Revocation, cfg.Export, h, logger),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connAuthKey{}, &connAuth{pools: map[*x509.CertPool]cachedChains{}})
		},
		TLSConfig:         tlsConf,
		Protocols:         protocols,
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
