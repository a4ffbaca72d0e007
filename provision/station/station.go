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
//
// A chip gets its identity by one of three flows, the product's:
// ProvisionChip (the chip makes its identity key, its DICE DeviceID),
// ProvisionInjectedChip (the factory HSM makes the key and wraps it for the
// chip; DESIGN.md, "Injected identity") and ProvisionTPMChip (a chip whose
// root of trust is a TPM 2.0). Each drives the chip through a small
// interface (Chip, InjectedChip, TPMChip) that a chip in this process
// (*device.Device) and one behind its factory port (*factoryport.Client)
// both implement.
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

// ProvisionInjected sends the request of a chip of an injected identity
// and returns its certificate chain with its device key and secrets
// wrapped for it (all untrusted: the chip checks and unwraps them).
func (c *Client) ProvisionInjected(ctx context.Context, req *provision.InjectedRequest) (*provision.InjectedResult, error) {
	if req == nil {
		return nil, errors.New("station: no request")
	}
	r, err := c.rpc.ProvisionInjected(ctx, connect.NewRequest(&pb.ProvisionInjectedRequest{
		Ueid: req.UEID, Product: req.Product, Lot: req.Lot, Evidence: req.Evidence,
		TransportStatement: req.TransportStatement, TransportSignature: req.TransportSignature,
	}))
	if err != nil {
		return nil, callError(err)
	}
	chain := r.Msg.GetChain()
	if n := len(chain); n < 2 || n > api.MaxChainCerts {
		return nil, fmt.Errorf("station: chain of %d certificates", n)
	}
	key, secrets := r.Msg.GetKey(), r.Msg.GetSecrets()
	if n := len(secrets); n > api.MaxWrappedSecrets || (len(key) == 0 && n != 0) {
		return nil, fmt.Errorf("station: %d wrapped secrets with a key of %d bytes", n, len(key))
	}
	if len(key) == 0 {
		key, secrets = nil, nil
	}
	return &provision.InjectedResult{Result: provision.Result{Chain: chain, LogIndex: r.Msg.GetLogIndex()}, Key: key, Secrets: secrets}, nil
}

// ProvisionTPM sends the request of a chip on a TPM and returns its
// certificate chain (untrusted: the chip checks it when installing it).
func (c *Client) ProvisionTPM(ctx context.Context, req *provision.TPMRequest) (*provision.Result, error) {
	if req == nil {
		return nil, errors.New("station: no request")
	}
	r, err := c.rpc.ProvisionTPM(ctx, connect.NewRequest(&pb.ProvisionTPMRequest{
		Ueid: req.UEID, Csr: req.CSR, Evidence: req.Evidence, Product: req.Product, Lot: req.Lot,
		IakPublic: req.IAKPublic, IdevidPublic: req.IDevIDPublic,
		CertifyAttest: req.CertifyAttest, CertifySignature: req.CertifySignature,
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

// InjectedChip is a chip of a product whose identity is injected, as a
// station drives it: *device.Device, or *factoryport.Client.
type InjectedChip interface {
	// TransportRequest returns the chip's UEID, its evidence over nonce
	// and its DeviceID-signed transport key statement over the same nonce.
	TransportRequest(ctx context.Context, nonce []byte) (*device.TransportRequest, error)
	// InstallInjected unwraps the device key and secrets into the chip,
	// stores the IDevID chain, which must certify that key, and moves the
	// chip to Provisioned.
	InstallInjected(ctx context.Context, blob []byte, secrets [][]byte, chain [][]byte) error
}

// ProvisionInjectedChip runs the station's flow for one chip of a product
// whose identity is injected (DESIGN.md, "Injected identity"), booted with
// the factory test firmware: a nonce from the service, the chip's
// transport key and evidence over it (chip.TransportRequest), the service's
// chain with the device key and secrets wrapped for the chip, installed
// into it (chip.InstallInjected, which unwraps them inside the chip and
// checks that the chain certifies the key), and the confirmation, upon
// which the service destroys the HSM's copy of the key.
//
// Like ProvisionChip, it completes an interrupted flow when run again: the
// service wraps the same key again, and the chip keeps what it installed.
// Once the service has recorded the confirmation it returns no key: the
// chip installed it, and the flow only confirms again.
func ProvisionInjectedChip(ctx context.Context, c *Client, chip InjectedChip, product, lot string) (*provision.InjectedResult, error) {
	nonce, err := c.Nonce(ctx)
	if err != nil {
		return nil, err
	}
	tr, err := chip.TransportRequest(ctx, nonce)
	if err != nil {
		return nil, fmt.Errorf("station: chip request: %w", err)
	}
	res, err := c.ProvisionInjected(ctx, &provision.InjectedRequest{
		UEID: tr.UEID, Product: product, Lot: lot, Evidence: tr.Evidence,
		TransportStatement: tr.TransportStatement, TransportSignature: tr.TransportSignature,
	})
	if err != nil {
		return nil, err
	}
	if res.Key != nil {
		if err := chip.InstallInjected(ctx, res.Key, res.Secrets, res.Chain); err != nil {
			return nil, fmt.Errorf("station: installing the injected identity: %w", err)
		}
	}
	if err := c.Confirm(ctx, tr.UEID); err != nil {
		return nil, err
	}
	return res, nil
}

// TPMChip is a chip on a TPM 2.0, as a station drives it: *device.Device
// (made with device.InitTPM), or *factoryport.Client.
type TPMChip interface {
	// FactoryRequestTPM returns the chip's request over nonce, with the
	// TPM's proof that its IAK and IDevID keys live in one TPM.
	FactoryRequestTPM(ctx context.Context, nonce []byte) (*device.TPMFactoryRequest, error)
	// InstallIdentity writes the IDevID chain into the chip, which checks
	// it and moves to Provisioned.
	InstallIdentity(ctx context.Context, chain [][]byte) error
}

// ProvisionTPMChip runs the station's flow for one chip on a TPM, as
// ProvisionChip does for the emulated chip: a nonce, the chip's request
// (chip.FactoryRequestTPM), the service's chain, installed into the chip,
// and the confirmation. Run again, it completes an interrupted flow.
func ProvisionTPMChip(ctx context.Context, c *Client, chip TPMChip, product, lot string) (*provision.Result, error) {
	nonce, err := c.Nonce(ctx)
	if err != nil {
		return nil, err
	}
	fr, err := chip.FactoryRequestTPM(ctx, nonce)
	if err != nil {
		return nil, fmt.Errorf("station: chip request: %w", err)
	}
	res, err := c.ProvisionTPM(ctx, &provision.TPMRequest{
		Request:   provision.Request{UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: product, Lot: lot},
		IAKPublic: fr.IAKPublic, IDevIDPublic: fr.IDevIDPublic,
		CertifyAttest: fr.CertifyAttest, CertifySignature: fr.CertifySignature,
	})
	if err != nil {
		return nil, err
	}
	if err := chip.InstallIdentity(ctx, res.Chain); err != nil {
		return nil, fmt.Errorf("station: installing the identity: %w", err)
	}
	if err := c.Confirm(ctx, fr.UEID); err != nil {
		return nil, err
	}
	return res, nil
}

var (
	_ Chip         = (*device.Device)(nil)
	_ InjectedChip = (*device.Device)(nil)
	_ TPMChip      = (*device.Device)(nil)
)
