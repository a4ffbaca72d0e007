package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rootline/rootline/attest"
)

// ClientConfig configures Dial.
type ClientConfig struct {
	// URL is the verifier's base URL, https://host:port.
	URL string
	// ServerCA verifies the server's certificate; nil uses the system's
	// roots.
	ServerCA *x509.CertPool
	// Certificate, if set, is an operator's client certificate (needed for
	// Verdicts and UpdateEndorsements only).
	Certificate *tls.Certificate
	// JSON makes nonce and attest calls in JSON rather than CBOR.
	JSON bool
	// HTTP1 keeps to HTTP/1.1 (one request per connection at a time:
	// the cheapest for a client that makes one call at a time).
	HTTP1 bool
	// Timeout bounds each call. Default 30 s.
	Timeout time.Duration
}

// Client calls a verifier. It is safe for concurrent use.
type Client struct {
	base    string
	hc      *http.Client
	tr      *http.Transport
	json    bool
	timeout time.Duration
}

// maxReply bounds the answers the client reads.
const maxReply = 4 << 20

// Dial returns a client of the verifier at cfg.URL. It does not connect
// until the first call.
func Dial(cfg *ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("api: verifier URL %q: want https://host:port", cfg.URL)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: cfg.ServerCA}
	if cfg.Certificate != nil {
		tc.Certificates = []tls.Certificate{*cfg.Certificate}
	}
	tr := &http.Transport{
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   !cfg.HTTP1,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if cfg.HTTP1 {
		p := new(http.Protocols)
		p.SetHTTP1(true)
		tr.Protocols = p
	}
	c := &Client{base: "https://" + u.Host, hc: &http.Client{Transport: tr}, tr: tr, json: cfg.JSON, timeout: cfg.Timeout}
	if c.timeout <= 0 {
		c.timeout = 30 * time.Second
	}
	return c, nil
}

// Close closes the client's idle connections.
func (c *Client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

func (c *Client) mediaType() string {
	if c.json {
		return MediaJSON
	}
	return MediaCBOR
}

// do sends a request with body in (encoded in the client's format, or
// raw JSON if raw) and decodes the answer into out.
func (c *Client) do(ctx context.Context, method, path string, in any, mt string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		var b []byte
		var err error
		if mt == MediaCBOR {
			b, err = cborEnc.Marshal(in)
		} else {
			b, err = json.Marshal(in)
		}
		if err != nil {
			return fmt.Errorf("api: encoding the request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if in != nil {
		req.Header["Content-Type"] = []string{mt}
	}
	req.Header["Accept"] = []string{mt}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return fmt.Errorf("api: %s %s: reading the answer: %w", method, path, err)
	}
	if len(b) > maxReply {
		return fmt.Errorf("api: %s %s: answer over %d bytes", method, path, maxReply)
	}
	rmt := mediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if decodeReply(rmt, b, &eb) != nil || eb.Problem == "" {
			return &Error{StatusCode: resp.StatusCode, Problem: ProblemInternal, Message: strings.TrimSpace(string(b[:min(len(b), 256)]))}
		}
		return &Error{StatusCode: resp.StatusCode, Problem: eb.Problem, Message: eb.Message}
	}
	if err := decodeReply(rmt, b, out); err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	return nil
}

func decodeReply(mt string, b []byte, out any) error {
	switch mt {
	case MediaCBOR:
		return cborDecReply.Unmarshal(b, out)
	case MediaJSON:
		return json.Unmarshal(b, out)
	}
	return errors.New("answer of an unknown media type")
}

// Nonce asks the verifier for a nonce.
func (c *Client) Nonce(ctx context.Context) ([]byte, error) {
	var r NonceResponse
	mt := c.mediaType()
	var in any = struct{}{}
	if err := c.do(ctx, "POST", PathNonce, in, mt, &r); err != nil {
		return nil, err
	}
	if len(r.Nonce) == 0 {
		return nil, errors.New("api: the verifier sent an empty nonce")
	}
	return r.Nonce, nil
}

// Attest sends evidence (and optionally the IDevID chain and a CSR) and
// returns the verifier's answer. A refusal of the evidence is an answer
// (Status contraindicated), not an error; a refused request is an *Error.
func (c *Client) Attest(ctx context.Context, req *AttestRequest) (*AttestResponse, error) {
	var r AttestResponse
	if err := c.do(ctx, "POST", PathAttest, req, c.mediaType(), &r); err != nil {
		return nil, err
	}
	if r.Status == "" || r.EAR == "" {
		return nil, errors.New("api: the verifier's answer has no status or EAR")
	}
	return &r, nil
}

// Verdicts returns a page of the device's verdicts, newest first, before
// the verdict ID before (0: from the newest); limit 0 means DefaultPage.
// It needs an operator certificate.
func (c *Client) Verdicts(ctx context.Context, ueid []byte, before int64, limit int) (*VerdictsResponse, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/devices/" + hex.EncodeToString(ueid) + "/verdicts"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var r VerdictsResponse
	if err := c.do(ctx, "GET", path, nil, MediaJSON, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// UpdateEndorsements replaces one product's reference values on the
// verifier. It needs an operator certificate.
func (c *Client) UpdateEndorsements(ctx context.Context, p *attest.ProductEndorsements) (*EndorsementsResponse, error) {
	var r EndorsementsResponse
	if err := c.do(ctx, "PUT", "/v1/endorsements/"+url.PathEscape(p.Product), p, MediaJSON, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// JWKS returns the verifier's EAR key set (RFC 7517), as served.
func (c *Client) JWKS(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+PathJWKS, nil)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: GET %s: %w", PathJWKS, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("api: GET %s: %w", PathJWKS, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{StatusCode: resp.StatusCode, Problem: ProblemInternal, Message: string(b[:min(len(b), 256)])}
	}
	return b, nil
}
