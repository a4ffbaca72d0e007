package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServerConfig configures Serve.
type ServerConfig struct {
	// Listen is the TCP address ("host:port").
	Listen string
	// Certificate is the server's certificate chain and key.
	Certificate tls.Certificate
	// OperatorCA, if set, is asked for in the handshake: a client may
	// present an operator certificate (HandlerConfig.OperatorCA checks it
	// per request). Devices present none.
	OperatorCA *x509.CertPool
	// Logger: default discard.
	Logger *slog.Logger
	// Ready, if set, receives the listener's address once it listens.
	Ready func(net.Addr)
}

// Validate checks that the configuration is complete.
func (c *ServerConfig) Validate() error {
	if c == nil || len(c.Certificate.Certificate) == 0 {
		return errors.New("api: a server certificate is required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("api: listen: %w", err)
	}
	return nil
}

// TLSConfig returns the server's TLS configuration: TLS 1.3, HTTP/2 or
// HTTP/1.1, a client certificate optional but, if given, verified against
// operatorCA (for client authentication).
func TLSConfig(cert tls.Certificate, operatorCA *x509.CertPool) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if operatorCA != nil {
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = operatorCA
	}
	return c
}

// Timeouts of Serve's server.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 16 << 10
	ShutdownTimeout   = 10 * time.Second
)

// Serve serves h (normally NewHandler's) over TLS at cfg.Listen until ctx
// is done, then shuts the server down, giving calls in flight up to
// ShutdownTimeout.
func Serve(ctx context.Context, cfg *ServerConfig, h http.Handler) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	return ServeListener(ctx, ln, cfg, h)
}

// ServeListener is Serve on a listener already open; it closes ln.
func ServeListener(ctx context.Context, ln net.Listener, cfg *ServerConfig, h http.Handler) error {
	if cfg == nil || len(cfg.Certificate.Certificate) == 0 {
		ln.Close()
		return errors.New("api: a server certificate is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         TLSConfig(cfg.Certificate, cfg.OperatorCA),
		Protocols:         protocols,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
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
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	<-errc
	return nil
}
