// Package station is a factory station's client of the provisioning API
// (package provision/api), and the station's side of the factory flow for one
// chip (DESIGN.md, "The factory flow").
//
// The station authenticates with its station certificate (TLS client
// certificate, profile ca.ProfileStation): the server knows the station's
// name and products from it alone. Every call is safe to retry: the service
// answers the same chip and key with the same certificate, and a confirmed
// chip stays confirmed.
package station

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
)

// MaxResponse bounds the body of an answer the client reads.
const MaxResponse = 256 << 10

// Config configures Dial.
type Config struct {
	// URL is the service's base URL ("https://provision.example:8443").
	URL string
	// Certificate is the station's certificate chain and key.
	Certificate tls.Certificate
	// ServerCA holds the CA the server's certificate chains to.
	ServerCA *x509.CertPool
	// Timeout of each call; default one minute.
	Timeout time.Duration
	// Transport, if set, replaces the client's transport (tests). Its TLS
	// configuration is then the caller's.
	Transport http.RoundTripper
}

// Client calls the provisioning API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	hc   *http.Client
}

// Dial returns a Client for cfg. It does not connect: the first call does.
func Dial(cfg *Config) (*Client, error) {
	if cfg == nil {
		return nil, errors.New("station: no configuration")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("station: URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("station: URL %q: want https://host[:port][/path]", cfg.URL)
	}
	rt := cfg.Transport
	if rt == nil {
		if cfg.ServerCA == nil || len(cfg.Certificate.Certificate) == 0 {
			return nil, errors.New("station: the station certificate and the server CA are required")
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.TLSClientConfig = &tls.Config{
			MinVersion:   tls.VersionTLS13,
			RootCAs:      cfg.ServerCA,
			Certificates: []tls.Certificate{cfg.Certificate},
		}
		rt = t
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	return &Client{base: u, hc: &http.Client{Transport: rt, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// call posts in to path and decodes the answer into out. A refusal is an
// *api.Error.
func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("station: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("station: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("station: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return fmt.Errorf("station: reading answer: %w", err)
	}
	if len(b) > MaxResponse {
		return fmt.Errorf("station: answer over %d bytes", MaxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Reason == "" {
			return &api.Error{Status: resp.StatusCode, Reason: api.ReasonInternal, Message: fmt.Sprintf("answer without an error body (%s)", resp.Status)}
		}
		return &api.Error{Status: resp.StatusCode, Reason: eb.Error.Reason, Message: eb.Error.Message}
	}
	if err := api.DecodeBytes(b, out); err != nil {
		return fmt.Errorf("station: answer: %w", err)
	}
	return nil
}

// Nonce asks the service for a fresh nonce for this station.
func (c *Client) Nonce(ctx context.Context) ([]byte, error) {
	var r api.NonceResponse
	if err := c.call(ctx, api.PathNonce, &struct{}{}, &r); err != nil {
		return nil, err
	}
	if len(r.Nonce) != provision.NonceSize {
		return nil, fmt.Errorf("station: nonce of %d bytes, want %d", len(r.Nonce), provision.NonceSize)
	}
	return r.Nonce, nil
}

// Provision sends a chip's request and returns its certificate chain
// (untrusted: the chip checks it when installing it).
func (c *Client) Provision(ctx context.Context, req *provision.Request) (*provision.Result, error) {
	if req == nil {
		return nil, errors.New("station: no request")
	}
	var r api.ProvisionResponse
	if err := c.call(ctx, api.PathProvision, &api.ProvisionRequest{
		UEID: req.UEID, CSR: req.CSR, Evidence: req.Evidence, Product: req.Product, Lot: req.Lot,
	}, &r); err != nil {
		return nil, err
	}
	if n := len(r.Chain); n < 2 || n > api.MaxChainCerts {
		return nil, fmt.Errorf("station: chain of %d certificates", n)
	}
	return &provision.Result{Chain: r.Chain, LogIndex: r.LogIndex}, nil
}

// Confirm tells the service that the chip installed its identity.
func (c *Client) Confirm(ctx context.Context, ueid []byte) error {
	return c.call(ctx, api.PathConfirm, &api.ConfirmRequest{UEID: ueid}, &struct{}{})
}

// ProvisionChip runs the station's flow for one chip, booted with the
// factory test firmware: a nonce from the service, the chip's request over
// it (dev.FactoryRequest), the service's chain, installed into the chip
// (dev.InstallIdentity, which checks that it certifies the chip's key), and
// the confirmation. A flow interrupted at any step is completed by running
// it again: the service returns the chip's certificate again, and the chip
// accepts the chain it already holds.
func ProvisionChip(ctx context.Context, c *Client, dev *device.Device, product, lot string) (*provision.Result, error) {
	nonce, err := c.Nonce(ctx)
	if err != nil {
		return nil, err
	}
	fr, err := dev.FactoryRequest(ctx, nonce)
	if err != nil {
		return nil, fmt.Errorf("station: chip request: %w", err)
	}
	res, err := c.Provision(ctx, &provision.Request{
		UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: product, Lot: lot,
	})
	if err != nil {
		return nil, err
	}
	if err := dev.InstallIdentity(ctx, res.Chain); err != nil {
		return nil, fmt.Errorf("station: installing the identity: %w", err)
	}
	if err := c.Confirm(ctx, fr.UEID); err != nil {
		return nil, err
	}
	return res, nil
}
