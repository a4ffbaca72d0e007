package factoryport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
)

// Info is what a chip tells about itself on its factory port.
type Info struct {
	UEID      []byte
	Product   string
	Lifecycle pluton.Lifecycle
}

// Client is a station's end of a chip's factory port. Its methods may be
// called from several goroutines; they take turns on the link.
type Client struct {
	mu   sync.Mutex
	conn net.Conn
}

// Dial connects to a chip's factory port: addr is "unix:PATH" for a Unix
// socket, or "HOST:PORT" for TCP.
func Dial(ctx context.Context, addr string) (*Client, error) {
	network, address := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("factoryport: %w", err)
	}
	return &Client{conn: conn}, nil
}

// NewClient uses conn, already connected to a factory port.
func NewClient(conn net.Conn) *Client { return &Client{conn: conn} }

// Close closes the link.
func (c *Client) Close() error { return c.conn.Close() }

// call sends req and reads the answer, within ctx's deadline (one minute
// without one).
func (c *Client) call(ctx context.Context, req *request) (*response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	c.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req.Version = Version
	if err := writeFrame(c.conn, req); err != nil {
		return nil, c.wrap(ctx, err)
	}
	var resp response
	if err := readFrame(c.conn, &resp); err != nil {
		return nil, c.wrap(ctx, err)
	}
	if resp.Error != nil {
		return nil, &RemoteError{Code: resp.Error.Code, Message: resp.Error.Message}
	}
	return &resp, nil
}

func (c *Client) wrap(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("factoryport: %w", ctx.Err())
	}
	if errors.Is(err, ErrProtocol) {
		return err
	}
	return fmt.Errorf("factoryport: %w", err)
}

// Info asks the chip for its UEID, product and lifecycle state.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	resp, err := c.call(ctx, &request{Op: OpInfo})
	if err != nil {
		return nil, err
	}
	lc, err := pluton.ParseLifecycle(resp.Lifecycle)
	if err != nil {
		return nil, fmt.Errorf("%w: lifecycle %q", ErrProtocol, resp.Lifecycle)
	}
	return &Info{UEID: resp.UEID, Product: resp.Product, Lifecycle: lc}, nil
}

// FactoryRequest asks the chip for its UEID, CSR and evidence over nonce,
// as device.Device.FactoryRequest.
func (c *Client) FactoryRequest(ctx context.Context, nonce []byte) (*device.FactoryRequest, error) {
	resp, err := c.call(ctx, &request{Op: OpFactoryRequest, Nonce: bytes.Clone(nonce)})
	if err != nil {
		return nil, err
	}
	if len(resp.UEID) == 0 || len(resp.CSR) == 0 || len(resp.Evidence) == 0 {
		return nil, fmt.Errorf("%w: a factory request without UEID, CSR or evidence", ErrProtocol)
	}
	return &device.FactoryRequest{UEID: resp.UEID, CSR: resp.CSR, Evidence: resp.Evidence}, nil
}

// InstallIdentity writes the IDevID chain into the chip, as
// device.Device.InstallIdentity.
func (c *Client) InstallIdentity(ctx context.Context, chain [][]byte) error {
	_, err := c.call(ctx, &request{Op: OpInstallIdentity, Chain: chain})
	return err
}

// TransportRequest asks a chip of an injected identity for its UEID, its
// evidence over nonce and its transport key statement over the same
// nonce, as device.Device.TransportRequest.
func (c *Client) TransportRequest(ctx context.Context, nonce []byte) (*device.TransportRequest, error) {
	resp, err := c.call(ctx, &request{Op: OpTransportRequest, Nonce: bytes.Clone(nonce)})
	if err != nil {
		return nil, err
	}
	if len(resp.UEID) == 0 || len(resp.Evidence) == 0 || len(resp.TransportStatement) == 0 || len(resp.TransportSignature) == 0 {
		return nil, fmt.Errorf("%w: a transport request without UEID, evidence or transport key statement", ErrProtocol)
	}
	return &device.TransportRequest{UEID: resp.UEID, Evidence: resp.Evidence,
		TransportStatement: resp.TransportStatement, TransportSignature: resp.TransportSignature}, nil
}

// InstallInjected writes the wrapped device key, the wrapped secrets and
// the IDevID chain into the chip, as device.Device.InstallInjected.
func (c *Client) InstallInjected(ctx context.Context, blob []byte, secrets [][]byte, chain [][]byte) error {
	if len(blob) == 0 {
		return fmt.Errorf("%w: no key blob", ErrBadRequest)
	}
	if len(secrets) == 0 {
		secrets = nil
	}
	_, err := c.call(ctx, &request{Op: OpInstallInjected, Key: blob, Secrets: secrets, Chain: chain})
	return err
}

// FactoryRequestTPM asks a device on a TPM for its factory request over
// nonce, as device.Device.FactoryRequestTPM.
func (c *Client) FactoryRequestTPM(ctx context.Context, nonce []byte) (*device.TPMFactoryRequest, error) {
	resp, err := c.call(ctx, &request{Op: OpTPMFactoryRequest, Nonce: bytes.Clone(nonce)})
	if err != nil {
		return nil, err
	}
	if len(resp.UEID) == 0 || len(resp.CSR) == 0 || len(resp.Evidence) == 0 || len(resp.IAKPublic) == 0 ||
		len(resp.IDevIDPublic) == 0 || len(resp.CertifyAttest) == 0 || len(resp.CertifySignature) == 0 {
		return nil, fmt.Errorf("%w: a TPM factory request with a field missing", ErrProtocol)
	}
	return &device.TPMFactoryRequest{
		FactoryRequest: device.FactoryRequest{UEID: resp.UEID, CSR: resp.CSR, Evidence: resp.Evidence},
		IAKPublic:      resp.IAKPublic, IDevIDPublic: resp.IDevIDPublic,
		CertifyAttest: resp.CertifyAttest, CertifySignature: resp.CertifySignature,
	}, nil
}
