package factoryport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/rootline/rootline/device"
)

// Server answers a station's requests for one chip.
type Server struct {
	dev *device.Device
	log *slog.Logger
	// mu serialises the chip's operations: a chip has one factory link,
	// and a Device is for one goroutine at a time.
	mu sync.Mutex
	// IdleTimeout closes a connection with no request for this long;
	// 0 means 5 minutes.
	IdleTimeout time.Duration
}

// NewServer returns a server for dev. log may be nil.
func NewServer(dev *device.Device, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{dev: dev, log: log}
}

// Serve accepts connections on ln and answers them until ctx is done; it
// then closes ln and the connections and waits for them to end. Several
// connections may be open (a station that reconnects after a crash while
// its old link lingers), but the chip runs one request at a time.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("factoryport: %w", err)
		}
		wg.Go(func() { s.ServeConn(ctx, conn) })
	}
}

// ServeConn answers the requests on conn until the station closes it, ctx
// is done, or the station breaks the protocol; then it closes conn.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	for {
		conn.SetReadDeadline(time.Now().Add(idle))
		var req request
		err := readFrame(conn, &req)
		switch {
		case errors.Is(err, io.EOF):
			return
		case errors.Is(err, ErrProtocol):
			// Answer once, then drop the link: framing may be lost.
			s.log.Warn("factoryport: malformed request", "err", err)
			writeFrame(conn, &response{Version: Version, Error: &wireError{Code: CodeBadRequest, Message: err.Error()}})
			return
		case err != nil:
			return
		}
		resp := s.handle(ctx, &req)
		conn.SetWriteDeadline(time.Now().Add(time.Minute))
		if err := writeFrame(conn, resp); err != nil {
			return
		}
	}
}

func (s *Server) handle(ctx context.Context, req *request) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(err error) *response {
		code := errorCode(err)
		s.log.Info("factoryport: request refused", "op", req.Op, "code", code, "err", err)
		return &response{Version: Version, Error: &wireError{Code: code, Message: err.Error()}}
	}
	bad := func(format string, args ...any) *response {
		return &response{Version: Version, Error: &wireError{Code: CodeBadRequest, Message: fmt.Sprintf(format, args...)}}
	}
	// Each operation takes the fields it names and no other.
	extra := func(nonce, chain, key bool) bool {
		return (!nonce && req.Nonce != nil) || (!chain && req.Chain != nil) ||
			(!key && (req.Key != nil || req.Secrets != nil))
	}
	switch req.Op {
	case OpInfo:
		if extra(false, false, false) {
			return bad("info takes no argument")
		}
		// A device on a TPM has no emulated chip: its UEID and lifecycle
		// come from the TPM, and it has no fused product.
		ueid, err := s.dev.UEID(ctx)
		if err != nil {
			return fail(err)
		}
		lc, err := s.dev.Lifecycle(ctx)
		if err != nil {
			return fail(err)
		}
		var product string
		if chip := s.dev.Chip(); chip != nil {
			if product, err = chip.ProductID(ctx); err != nil {
				return fail(err)
			}
		}
		return &response{Version: Version, UEID: ueid, Product: product, Lifecycle: lc.String()}
	case OpFactoryRequest:
		if extra(true, false, false) {
			return bad("factory-request takes a nonce only")
		}
		fr, err := s.dev.FactoryRequest(ctx, req.Nonce)
		if err != nil {
			return fail(err)
		}
		return &response{Version: Version, UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence}
	case OpInstallIdentity:
		if extra(false, true, false) {
			return bad("install-identity takes certificates only")
		}
		if err := s.dev.InstallIdentity(ctx, req.Chain); err != nil {
			return fail(err)
		}
		if err := s.dev.Flush(); err != nil {
			return fail(err)
		}
		return &response{Version: Version}
	case OpTransportRequest:
		if extra(true, false, false) {
			return bad("transport-request takes a nonce only")
		}
		if s.dev.Chip() == nil {
			return &response{Version: Version, Error: &wireError{Code: CodeUnsupported, Message: "a device on a TPM has no transport key"}}
		}
		tr, err := s.dev.TransportRequest(ctx, req.Nonce)
		if err != nil {
			return fail(err)
		}
		return &response{Version: Version, UEID: tr.UEID, Evidence: tr.Evidence,
			TransportStatement: tr.TransportStatement, TransportSignature: tr.TransportSignature}
	case OpInstallInjected:
		if extra(false, true, true) {
			return bad("install-injected takes a key blob, secret blobs and certificates only")
		}
		if s.dev.Chip() == nil {
			return &response{Version: Version, Error: &wireError{Code: CodeUnsupported, Message: "a device on a TPM takes no injected key"}}
		}
		if err := s.dev.InstallInjected(ctx, req.Key, req.Secrets, req.Chain); err != nil {
			return fail(err)
		}
		if err := s.dev.Flush(); err != nil {
			return fail(err)
		}
		return &response{Version: Version}
	case OpTPMFactoryRequest:
		if extra(true, false, false) {
			return bad("tpm-factory-request takes a nonce only")
		}
		fr, err := s.dev.FactoryRequestTPM(ctx, req.Nonce)
		if err != nil {
			return fail(err)
		}
		return &response{Version: Version, UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence,
			IAKPublic: fr.IAKPublic, IDevIDPublic: fr.IDevIDPublic,
			CertifyAttest: fr.CertifyAttest, CertifySignature: fr.CertifySignature}
	}
	return bad("unknown operation %d", req.Op)
}
