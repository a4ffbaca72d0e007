package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"

	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
)

// serveInProcess serves svc's station API on 127.0.0.1 (a free port) over
// mutual TLS, accepting client certificates issued by stations. It returns
// once the listener is up, with the address and a stop function that shuts
// the server down and waits for it. The demo and the load tool use it.
func serveInProcess(ctx context.Context, svc *provision.Service, cert tls.Certificate, stations *x509.Certificate, log *slog.Logger) (net.Addr, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	pool := x509.NewCertPool()
	pool.AddCert(stations)
	addrc := make(chan net.Addr, 1)
	served := make(chan error, 1)
	go func() {
		served <- api.Serve(ctx, &api.ServerConfig{Listen: "127.0.0.1:0", Certificate: cert, StationCA: pool, Logger: log,
			Ready: func(a net.Addr) { addrc <- a }}, api.NewHandler(svc, log))
	}()
	stop := func() {
		cancel()
		<-served
	}
	select {
	case addr := <-addrc:
		return addr, stop, nil
	case err := <-served:
		cancel()
		return nil, nil, fmt.Errorf("the provisioning service stopped: %w", err)
	case <-ctx.Done():
		stop()
		return nil, nil, ctx.Err()
	}
}
