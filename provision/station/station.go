// Package station is a factory station's client of the provisioning API
// (package provision/api: rootline.provision.v1.ProvisionService), and the
// station's side of the factory flow for one chip (DESIGN.md, "The factory
// flow").
//
// The client speaks the gRPC protocol (binary protobuf) over HTTP/2 and TLS
// 1.3: it is the protocol every gRPC server, proxy and tool knows, so a
// station can reach the service through any gRPC-aware load balancer, and
// HTTP/2 keeps one connection per station for all its chips.
//
// The station authenticates with its station certificate (TLS client
// certificate, profile ca.ProfileStation): the server knows the station's
// name and products from it alone. Every call is safe to retry: the service
// answers the same chip and key with the same certificate, and a confirmed
// chip stays confirmed.
package station

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	pb "github.com/rootline/rootline/provision/api/provisionv1"
	"github.com/rootline/rootline/provision/api/provisionv1/provisionv1connect"
)

// MaxResponse bounds an answer's message the client reads.
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
	// configuration, and its HTTP/2, are then the caller's.
	Transport http.RoundTripper
}

// Client calls the provisioning API. It is safe for concurrent use.
type Client struct {
	hc  *http.Client
	rpc provisionv1connect.ProvisionServiceClient
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
		// gRPC needs HTTP/2: HTTP/1.1 is not offered.
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP2(true)
		rt = t
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	hc := &http.Client{Transport: rt, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{hc: hc, rpc: provisionv1connect.NewProvisionServiceClient(hc, u.String(),
		connect.WithGRPC(), connect.WithReadMaxBytes(MaxResponse))}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// callError returns the error of a call: an *api.Error for a refusal of
// the server (api.FromConnect), else the transport's error.
func callError(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		if e, ok := api.FromConnect(ce); ok {
			return e
		}
	}
	return fmt.Errorf("station: %w", err)
}

// Nonce asks the service for a fresh nonce for this station.
func (c *Client) Nonce(ctx context.Context) ([]byte, error) {
	r, err := c.rpc.Nonce(ctx, connect.NewRequest(&pb.NonceRequest{}))
	if err != nil {
		return nil, callError(err)
	}
	if n := len(r.Msg.GetNonce()); n != provision.NonceSize {
		return nil, fmt.Errorf("station: nonce of %d bytes, want %d", n, provision.NonceSize)
	}
	return r.Msg.GetNonce(), nil
}

// Provision sends a chip's request and returns its certificate chain
// (untrusted: the chip checks it when installing it).
func (c *Client) Provision(ctx context.Context, req *provision.Request) (*provision.Result, error) {
	if req == nil {
		return nil, errors.New("station: no request")
	}
	r, err := c.rpc.Provision(ctx, connect.NewRequest(&pb.ProvisionRequest{
		Ueid: req.UEID, Csr: req.CSR, Evidence: req.Evidence, Product: req.Product, Lot: req.Lot,
	}))
	if err != nil {
		return nil, callError(err)
	}
	chain := r.Msg.GetChain()
	if n := len(chain); n < 2 || n > api.MaxChainCerts {
		return nil, fmt.Errorf("station: chain of %d certificates", n)
	}
	return &provision.Result{Chain: chain, LogIndex: r.Msg.GetLogIndex()}, nil
}

// Confirm tells the service that the chip installed its identity.
func (c *Client) Confirm(ctx context.Context, ueid []byte) error {
	if _, err := c.rpc.Confirm(ctx, connect.NewRequest(&pb.ConfirmRequest{Ueid: ueid})); err != nil {
		return callError(err)
	}
	return nil
}

// Chip is a chip as a station drives it: an emulated chip in this process
// (*device.Device), or one behind its factory port
// (*factoryport.Client).
type Chip interface {
	// FactoryRequest returns the chip's UEID, CSR and evidence over nonce.
	FactoryRequest(ctx context.Context, nonce []byte) (*device.FactoryRequest, error)
	// InstallIdentity writes the IDevID chain into the chip, which checks
	// it and moves to Provisioned.
	InstallIdentity(ctx context.Context, chain [][]byte) error
}

// ProvisionChip runs the station's flow for one chip, booted with the
// factory test firmware: a nonce from the service, the chip's request over
// it (dev.FactoryRequest), the service's chain, installed into the chip
// (dev.InstallIdentity, which checks that it certifies the chip's key), and
// the confirmation. A flow interrupted at any step is completed by running
// it again: the service returns the chip's certificate again, and the chip
// accepts the chain it already holds.
func ProvisionChip(ctx context.Context, c *Client, dev Chip, product, lot string) (*provision.Result, error) {
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
