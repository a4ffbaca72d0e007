package factoryport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/boot/boottest"
	"github.com/rootline/rootline/pluton/evidence"
)

// bootedChip returns an emulated chip in Manufacturing, booted with signed
// factory firmware.
func bootedChip(t *testing.T) *device.Device {
	t.Helper()
	ctx := context.Background()
	v := boottest.NewVendor(t, "sku-a", pluton.ECDSAP256)
	d, err := device.Init(ctx, t.TempDir(), &device.InitRequest{Product: v.Product, RootKeyHash: v.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(ctx, &device.Images{Policy: v.Policy,
		Bootloader: v.Image(t, boot.Bootloader, "1.0.0", 1, "bootloader"),
		OS:         v.Image(t, boot.OS, "1.0.0", 1, "os"),
		App:        v.Image(t, boot.App, "1.0.0", 1, "factory test app")}); err != nil {
		t.Fatal(err)
	}
	return d
}

// serve serves d on a Unix socket and returns a connected client.
func serve(t *testing.T, d *device.Device) (*Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "chip.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(d, nil).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c, err := Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, sock
}

func issue(t *testing.T, l *ca.Local, fr *device.FactoryRequest) [][]byte {
	t.Helper()
	iss, err := l.Issue(context.Background(), &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: fr.UEID, CSR: fr.CSR})
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{iss.Certificate.Raw}
	for _, c := range iss.Chain {
		chain = append(chain, c.Raw)
	}
	return chain
}

// A station provisions a chip through its factory port as it would a chip
// in its own process: info, factory request, identity installed; refusals
// come back as the device package's errors and change nothing.
func TestProvisionOverThePort(t *testing.T) {
	ctx := context.Background()
	d := bootedChip(t)
	c, _ := serve(t, d)

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := d.Chip().Identity(ctx)
	if !bytes.Equal(info.UEID, id.UEID) || info.Product != "sku-a" || info.Lifecycle != pluton.Manufacturing {
		t.Fatalf("info %+v", info)
	}
	nonce := []byte("a nonce from the service 0123456789")
	fr, err := c.FactoryRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.Verify(fr.Evidence, &evidence.VerifyOptions{Nonce: nonce}); err != nil {
		t.Fatalf("evidence from the port: %v", err)
	}

	h := catest.NewHierarchy(t, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		t.Fatal(err)
	}
	// Another chip's chain: refused as device.ErrIdentity, nothing written.
	other := bootedChip(t)
	ofr, err := other.FactoryRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	statePath := d.Chip().Path()
	before, _ := os.ReadFile(statePath)
	if err := c.InstallIdentity(ctx, issue(t, l, ofr)); !errors.Is(err, device.ErrIdentity) {
		t.Fatalf("another chip's chain: %v, want device.ErrIdentity", err)
	}
	if after, _ := os.ReadFile(statePath); !bytes.Equal(before, after) {
		t.Fatal("a refused chain changed the chip's state")
	}
	chain := issue(t, l, fr)
	for range 2 { // the second is a station's retry
		if err := c.InstallIdentity(ctx, chain); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := c.Info(ctx); err != nil || info.Lifecycle != pluton.Provisioned {
		t.Fatalf("after install: %+v, %v", info, err)
	}
	// A different chain once provisioned.
	if err := c.InstallIdentity(ctx, issue(t, l, fr)); !errors.Is(err, device.ErrIdentityInstalled) {
		t.Fatalf("a second identity: %v, want device.ErrIdentityInstalled", err)
	}
}

// Malformed frames get bad-request and the link is dropped; requests with
// wrong arguments get bad-request and the link stays up.
func TestBadRequests(t *testing.T) {
	ctx := context.Background()
	d := bootedChip(t)
	c, sock := serve(t, d)
	for name, req := range map[string]*request{
		"unknown op":        {Op: 99},
		"info with a nonce": {Op: OpInfo, Nonce: []byte("x")},
		"install + nonce":   {Op: OpInstallIdentity, Nonce: []byte("x"), Chain: [][]byte{{1}}},
		"short nonce":       {Op: OpFactoryRequest, Nonce: []byte("x")},
	} {
		if _, err := c.call(ctx, req); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadRequest", name, err)
		}
	}
	if _, err := c.Info(ctx); err != nil {
		t.Fatalf("the link is down after refused requests: %v", err)
	}

	raw := func(b []byte) *response {
		t.Helper()
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(b)
		var resp response
		if err := readFrame(conn, &resp); err != nil {
			t.Fatalf("no answer to %x: %v", b, err)
		}
		// The server drops the link after a protocol error.
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("link still up after a protocol error (%v)", err)
		}
		return &resp
	}
	frame := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	for name, b := range map[string][]byte{
		"too long":       binary.BigEndian.AppendUint32(nil, MaxFrame+1),
		"empty":          {0, 0, 0, 0},
		"not CBOR":       frame([]byte{0xff, 0xff}),
		"wrong version":  frame([]byte{0xa2, 0x01, 0x02, 0x02, 0x01}),
		"unknown field":  frame([]byte{0xa3, 0x01, 0x01, 0x02, 0x01, 0x09, 0x00}),
		"duplicate keys": frame([]byte{0xa2, 0x01, 0x01, 0x01, 0x01}),
		"unsorted keys":  frame([]byte{0xa2, 0x02, 0x01, 0x01, 0x01}),
		"long integer":   frame([]byte{0xa2, 0x01, 0x18, 0x01, 0x02, 0x01}),
	} {
		if r := raw(b); r.Error == nil || r.Error.Code != CodeBadRequest {
			t.Errorf("%s: answer %+v, want bad-request", name, r)
		}
	}
	if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Manufacturing {
		t.Fatalf("lifecycle %v after bad requests", lc)
	}
}

// FuzzDecodeFrame: frames from the link never panic, and one that decodes
// re-encodes to the same bytes (one encoding per message).
func FuzzDecodeFrame(f *testing.F) {
	for _, v := range []any{
		&request{Version: 1, Op: OpInfo},
		&request{Version: 1, Op: OpFactoryRequest, Nonce: bytes.Repeat([]byte{7}, 56)},
		&request{Version: 1, Op: OpInstallIdentity, Chain: [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}, {0x30, 0x00}}},
		&response{Version: 1, UEID: []byte{1, 2, 3}, CSR: []byte{4}, Evidence: []byte{5}},
		&response{Version: 1, Error: &wireError{Code: CodeIdentity, Message: "no"}},
		&request{Version: 1, Op: OpTransportRequest, Nonce: bytes.Repeat([]byte{7}, 32)},
		&request{Version: 1, Op: OpInstallInjected, Key: []byte{0x84, 1, 2, 3}, Secrets: [][]byte{{5}, {6}}, Chain: [][]byte{{0x30, 0x00}, {0x30, 0x00}}},
		&request{Version: 1, Op: OpTPMFactoryRequest, Nonce: bytes.Repeat([]byte{9}, 32)},
		&response{Version: 1, UEID: []byte{1}, Evidence: []byte{5}, TransportStatement: []byte{8}, TransportSignature: []byte{9}},
		&response{Version: 1, UEID: []byte{1}, CSR: []byte{4}, Evidence: []byte{5}, IAKPublic: []byte{10}, IDevIDPublic: []byte{11},
			CertifyAttest: []byte{12}, CertifySignature: []byte{13}},
		&response{Version: 1, UEID: []byte{1}, Lifecycle: "manufacturing"},
		&response{Version: 1, Error: &wireError{Code: CodeUnwrap, Message: "no"}},
	} {
		b, _ := encMode.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req request
		if decodeFrame(b, &req) == nil {
			if again, err := encMode.Marshal(&req); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("request %x re-encodes as %x (%v)", b, again, err)
			}
		}
		var resp response
		if decodeFrame(b, &resp) == nil {
			if again, err := encMode.Marshal(&resp); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("response %x re-encodes as %x (%v)", b, again, err)
			}
		}
	})
}
