package translog

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
)

// HTTP paths the [Handler] serves (GET only).
const (
	PathHead        = "/v1/log/head"              // the signed tree head (text/plain note)
	PathInclusion   = "/v1/log/proof/inclusion"   // ?index=I&size=N: a RecordProof (MarshalProof)
	PathConsistency = "/v1/log/proof/consistency" // ?old=M&new=N: a TreeProof (MarshalProof)
	PathLeaf        = "/v1/log/leaf"              // ?index=I: the leaf (certificate DER)
	maxQueryLen     = 256                         // bytes of raw query accepted
	proofType       = "application/octet-stream"  // proofs: 32-byte hashes concatenated
	headType        = "text/plain; charset=utf-8" // the note
	leafType        = "application/pkix-cert"     // RFC 2585
	errorType       = "text/plain; charset=utf-8" // error bodies
)

// Handler serves the log's tree head, proofs and leaves read-only over
// HTTP. Bad queries get 400, out-of-range ones 404, anything else 500
// (logged to log, which may be nil).
func Handler(l *Log, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrBadQuery):
			code = http.StatusBadRequest
		case errors.Is(err, ErrRange):
			code = http.StatusNotFound
		default:
			log.ErrorContext(r.Context(), "translog: serving", "path", r.URL.Path, "err", err)
			err = errors.New("internal error")
		}
		w.Header().Set("Content-Type", errorType)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		fmt.Fprintln(w, err)
	}
	reply := func(w http.ResponseWriter, typ string, b []byte) {
		w.Header().Set("Content-Type", typ)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}
	mux.HandleFunc("GET "+PathHead, func(w http.ResponseWriter, r *http.Request) {
		if _, err := ParseQuery(r.URL.RawQuery); err != nil {
			fail(w, r, err)
			return
		}
		h, err := l.TreeHead(r.Context())
		if err != nil {
			fail(w, r, err)
			return
		}
		reply(w, headType, h)
	})
	mux.HandleFunc("GET "+PathInclusion, func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseQuery(r.URL.RawQuery, "index", "size")
		if err != nil {
			fail(w, r, err)
			return
		}
		p, err := l.InclusionProof(r.Context(), q["index"], q["size"])
		if err != nil {
			fail(w, r, err)
			return
		}
		reply(w, proofType, MarshalProof(p))
	})
	mux.HandleFunc("GET "+PathConsistency, func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseQuery(r.URL.RawQuery, "old", "new")
		if err != nil {
			fail(w, r, err)
			return
		}
		p, err := l.ConsistencyProof(r.Context(), q["old"], q["new"])
		if err != nil {
			fail(w, r, err)
			return
		}
		reply(w, proofType, MarshalProof(p))
	})
	mux.HandleFunc("GET "+PathLeaf, func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseQuery(r.URL.RawQuery, "index")
		if err != nil {
			fail(w, r, err)
			return
		}
		b, err := l.Leaf(r.Context(), q["index"])
		if err != nil {
			fail(w, r, err)
			return
		}
		reply(w, leafType, b)
	})
	return mux
}

// ErrBadQuery: an HTTP query is malformed.
var ErrBadQuery = errors.New("translog: bad query")

// ParseQuery parses an untrusted raw URL query that must hold exactly the
// named parameters, once each, as decimal integers in [0, 2^62] written
// without sign or leading zeros, and nothing else.
func ParseQuery(raw string, names ...string) (map[string]int64, error) {
	if len(raw) > maxQueryLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadQuery, maxQueryLen)
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadQuery, err)
	}
	if len(v) != len(names) {
		return nil, fmt.Errorf("%w: want parameters %q", ErrBadQuery, names)
	}
	out := make(map[string]int64, len(names))
	for _, name := range names {
		vs := v[name]
		if len(vs) != 1 {
			return nil, fmt.Errorf("%w: want one %q", ErrBadQuery, name)
		}
		n, err := strconv.ParseInt(vs[0], 10, 64)
		if err != nil || n < 0 || n > 1<<62 || strconv.FormatInt(n, 10) != vs[0] {
			return nil, fmt.Errorf("%w: %q is not a non-negative decimal integer", ErrBadQuery, name)
		}
		out[name] = n
	}
	return out, nil
}
