package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"reflect"
	"strings"
	"time"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/internal/strictcbor"
	"github.com/rootline/rootline/pluton/evidence"
)

// Media types of the API.
const (
	MediaJSON   = "application/json"
	MediaCBOR   = "application/cbor"
	MediaJWKSet = "application/jwk-set+json"
)

// Bounds of request bodies.
const (
	// MaxNonceBody bounds a nonce request: nothing, {} or the empty CBOR
	// map.
	MaxNonceBody = 64
	// MaxAttestBody bounds an attest request: the token (at most
	// evidence.MaxTokenSize), the IDevID chain and the CSR, base64 in
	// JSON.
	MaxAttestBody = (evidence.MaxTokenSize+attest.MaxIDevIDChain*maxCertificate+ca.MaxCSRSize)*4/3 + 4096
	// MaxEndorsementsBody bounds an endorsements update (one product).
	MaxEndorsementsBody = 4 << 20
	// DefaultPage and MaxPage bound the verdicts one page holds.
	DefaultPage = 100
	MaxPage     = attest.MaxPage

	maxCertificate = 16 << 10
	maxUEID        = 64
)

// NonceResponse answers POST /v1/nonce.
type NonceResponse struct {
	Nonce []byte `json:"nonce" cbor:"1,keyasint"`
}

// AttestRequest is the body of POST /v1/attest. All of it is untrusted.
type AttestRequest struct {
	// Evidence is the device's token (pluton/evidence) over a nonce
	// from POST /v1/nonce.
	Evidence []byte `json:"evidence" cbor:"1,keyasint"`
	// IDevIDChain is the device's IDevID chain (DER, leaf first),
	// optional: the registry has it.
	IDevIDChain [][]byte `json:"idevid_chain,omitempty" cbor:"2,keyasint,omitempty"`
	// CSR is an optional DER PKCS#10 request for an operational
	// certificate, for the key that signed the evidence.
	CSR []byte `json:"csr,omitempty" cbor:"3,keyasint,omitempty"`
}

// Reason is one reason of an attestation result (attest.Reason on the
// wire).
type Reason struct {
	Code   attest.Code `json:"code" cbor:"1,keyasint"`
	Detail string      `json:"detail,omitempty" cbor:"2,keyasint,omitempty"`
}

// AttestResponse answers POST /v1/attest: the verifier's verdict.
type AttestResponse struct {
	Status  attest.Status `json:"status" cbor:"1,keyasint"`
	Reasons []Reason      `json:"reasons,omitempty" cbor:"2,keyasint,omitempty"`
	// EAR is the signed attestation result, a JWT (attest.SignEAR).
	EAR string `json:"ear" cbor:"3,keyasint"`
	// Certificate is the operational certificate's chain, DER, leaf
	// first then the issuing CA and the root, when one was issued.
	Certificate [][]byte           `json:"certificate,omitempty" cbor:"4,keyasint,omitempty"`
	TrustVector attest.TrustVector `json:"trust_vector" cbor:"5,keyasint"`
	Release     string             `json:"release,omitempty" cbor:"6,keyasint,omitempty"`
	// Verdict is the verdict's ID in the store (0: not stored).
	Verdict int64 `json:"verdict,omitempty" cbor:"7,keyasint,omitempty"`
}

// Verdict is a stored verdict (attest.Verdict on the wire).
type Verdict struct {
	ID       int64               `json:"id" cbor:"1,keyasint"`
	Time     time.Time           `json:"time" cbor:"2,keyasint"`
	Status   attest.Status       `json:"status" cbor:"3,keyasint"`
	Reasons  []Reason            `json:"reasons,omitempty" cbor:"4,keyasint,omitempty"`
	Product  string              `json:"product,omitempty" cbor:"5,keyasint,omitempty"`
	Release  string              `json:"release,omitempty" cbor:"6,keyasint,omitempty"`
	Accepted *attest.DeviceState `json:"accepted,omitempty" cbor:"7,keyasint,omitempty"`
}

// VerdictsResponse answers GET /v1/devices/{ueid}/verdicts: a page of
// the device's verdicts, newest first. Next, if not 0, is the "before"
// of the next page.
type VerdictsResponse struct {
	Verdicts []Verdict `json:"verdicts" cbor:"1,keyasint"`
	Next     int64     `json:"next,omitempty" cbor:"2,keyasint,omitempty"`
}

// EndorsementsResponse answers PUT /v1/endorsements/{product}.
type EndorsementsResponse struct {
	Product  string `json:"product" cbor:"1,keyasint"`
	Releases int    `json:"releases" cbor:"2,keyasint"`
}

// Problem names why a request was refused before it reached the
// verifier: callers branch on it, never on the message.
type Problem string

// Problems, and the HTTP status each comes with (Status).
const (
	ProblemMalformed       Problem = "malformed-request"      // 400: not a valid body of the request's type
	ProblemTooLarge        Problem = "request-too-large"      // 413: the body exceeds its bound
	ProblemMediaType       Problem = "unsupported-media-type" // 415: the Content-Type is neither JSON nor CBOR
	ProblemNotAcceptable   Problem = "not-acceptable"         // 406: Accept names no format the API writes
	ProblemMethod          Problem = "method-not-allowed"     // 405
	ProblemNotFound        Problem = "not-found"              // 404
	ProblemUnauthenticated Problem = "unauthenticated"        // 401: no operator client certificate
	ProblemBadEndorsements Problem = "bad-endorsements"       // 422: endorsements that do not validate
	ProblemBusy            Problem = "busy"                   // 503: the nonce cache is full, retry later
	ProblemUnavailable     Problem = "unavailable"            // 503: the request was cancelled or timed out
	ProblemInternal        Problem = "internal"               // 500: the server failed
)

// Status returns the HTTP status code of p.
func Status(p Problem) int {
	switch p {
	case ProblemMalformed:
		return 400
	case ProblemTooLarge:
		return 413
	case ProblemMediaType:
		return 415
	case ProblemNotAcceptable:
		return 406
	case ProblemMethod:
		return 405
	case ProblemNotFound:
		return 404
	case ProblemUnauthenticated:
		return 401
	case ProblemBadEndorsements:
		return 422
	case ProblemBusy, ProblemUnavailable:
		return 503
	}
	return 500
}

// ErrorBody is the body of every refused request.
type ErrorBody struct {
	Problem Problem `json:"problem" cbor:"1,keyasint"`
	Message string  `json:"message" cbor:"2,keyasint"`
}

// Error is a refused request, as the client sees it. It matches
// ErrRequest.
type Error struct {
	StatusCode int
	Problem    Problem
	Message    string
}

// ErrRequest is matched by every *Error.
var ErrRequest = errors.New("api: request refused")

func (e *Error) Error() string {
	return fmt.Sprintf("api: %d %s: %s", e.StatusCode, e.Problem, e.Message)
}

// Is makes errors.Is(err, ErrRequest) true, and errors.Is(err,
// &Error{Problem: p}) true for an *Error of problem p.
func (e *Error) Is(target error) bool {
	if target == ErrRequest {
		return true
	}
	t, ok := target.(*Error)
	return ok && t.Problem == e.Problem
}

func problem(p Problem, format string, a ...any) *Error {
	return &Error{StatusCode: Status(p), Problem: p, Message: fmt.Sprintf(format, a...)}
}

// CBOR modes: requests decoded strictly (no unknown keys, no duplicates,
// no tags, no indefinite lengths, bounded nesting); responses in Core
// Deterministic Encoding; a client reading responses admits unknown keys
// (fields a later version adds).
var (
	cborEnc      = strictcbor.EncMode()
	cborDec      = strictcbor.DecMode(strictcbor.Limits{MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16})
	cborDecReply = strictcbor.DecMode(strictcbor.Limits{MaxNestedLevels: 8, MaxArrayElements: MaxPage + 16, MaxMapPairs: 64, AllowUnknownFields: true})
	cborEmptyMap = []byte{0xa0}
)

// mediaType returns the media type of a Content-Type or Accept value,
// "" if it is not one the API reads.
func mediaType(v string) string {
	if v == MediaCBOR || v == MediaJSON { // the common case, without parsing
		return v
	}
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return ""
	}
	switch mt {
	case MediaCBOR, MediaJSON:
		return mt
	}
	return ""
}

// decodeJSON decodes one untrusted JSON value into v, a pointer to a
// struct: no unknown member, no member named twice, members at the top
// level spelled exactly as v's json tags (encoding/json alone would match
// them case-insensitively, so that "Evidence" and "evidence" would both
// land in one field), no trailing data.
func decodeJSON(body []byte, v any) error {
	if err := checkMembers(body, jsonNames(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data")
	}
	return nil
}

// jsonNames returns the member names of the struct v points to.
func jsonNames(v any) map[string]bool {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	names := map[string]bool{}
	if t.Kind() != reflect.Struct {
		return names
	}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		if name != "-" && f.IsExported() {
			names[name] = true
		}
	}
	return names
}

// checkMembers refuses a top-level JSON object with a member named twice
// (RFC 8259 leaves it undefined; encoding/json would keep the last) or not
// spelled as one of names. Below the top level the values the API reads are
// arrays and strings, or (endorsements) objects whose Validate refuses
// repeated names.
func checkMembers(body []byte, names map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil // Decode reports the type mismatch
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := k.(string)
		if !names[name] {
			return fmt.Errorf("unknown member %q", name)
		}
		if seen[name] {
			return fmt.Errorf("member %q twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

// decodeAttestRequest decodes an untrusted attest request body of media
// type mt (MediaJSON or MediaCBOR) and checks its form. The evidence itself
// is checked by the verifier.
func decodeAttestRequest(mt string, body []byte) (*AttestRequest, error) {
	if len(body) > MaxAttestBody {
		return nil, problem(ProblemTooLarge, "request body over %d bytes", MaxAttestBody)
	}
	req := new(AttestRequest)
	var err error
	switch mt {
	case MediaCBOR:
		err = cborDec.Unmarshal(body, req)
	case MediaJSON:
		err = decodeJSON(body, req)
	default:
		return nil, problem(ProblemMediaType, "want Content-Type %s or %s", MediaCBOR, MediaJSON)
	}
	if err != nil {
		return nil, problem(ProblemMalformed, "%s attest request: %v", mt, err)
	}
	switch {
	case len(req.Evidence) == 0:
		return nil, problem(ProblemMalformed, "no evidence")
	case len(req.IDevIDChain) > attest.MaxIDevIDChain:
		return nil, problem(ProblemMalformed, "IDevID chain of %d certificates, at most %d", len(req.IDevIDChain), attest.MaxIDevIDChain)
	case req.CSR != nil && len(req.CSR) == 0:
		return nil, problem(ProblemMalformed, "empty CSR")
	}
	for i, c := range req.IDevIDChain {
		if len(c) == 0 || len(c) > maxCertificate {
			return nil, problem(ProblemMalformed, "IDevID chain certificate %d of %d bytes (1 to %d)", i, len(c), maxCertificate)
		}
	}
	return req, nil
}

// decodeNonceRequest checks a nonce request's body: empty, {} or the
// empty CBOR map.
func decodeNonceRequest(mt string, body []byte) error {
	if len(body) == 0 {
		return nil
	}
	switch mt {
	case MediaCBOR:
		if !bytes.Equal(body, cborEmptyMap) {
			return problem(ProblemMalformed, "a nonce request is empty or the empty CBOR map")
		}
	case MediaJSON:
		var v struct{}
		if err := decodeJSON(body, &v); err != nil {
			return problem(ProblemMalformed, "a nonce request is empty or {}: %v", err)
		}
	default:
		return problem(ProblemMediaType, "want Content-Type %s or %s", MediaCBOR, MediaJSON)
	}
	return nil
}

func reasons(rs []attest.Reason) []Reason {
	if len(rs) == 0 {
		return nil
	}
	out := make([]Reason, len(rs))
	for i, r := range rs {
		out[i] = Reason{Code: r.Code, Detail: r.Detail}
	}
	return out
}

func attestResponse(res *attest.Result) *AttestResponse {
	out := &AttestResponse{Status: res.Status, Reasons: reasons(res.Reasons), EAR: string(res.EAR),
		TrustVector: res.TrustVector, Release: res.Release, Verdict: res.Verdict}
	if c := res.Certificate; c != nil && c.Certificate != nil {
		out.Certificate = append(out.Certificate, c.Certificate.Raw)
		for _, ic := range c.Chain {
			out.Certificate = append(out.Certificate, ic.Raw)
		}
	}
	return out
}
