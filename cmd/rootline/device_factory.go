package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/device/factoryport"
	"github.com/rootline/rootline/internal/atomicfile"
)

func newDeviceServeFactoryCommand(f *deviceFlags) *cobra.Command {
	var listen, addrFile string
	cmd := &cobra.Command{
		Use:   "serve-factory --state DIR --listen ADDR",
		Short: "Expose the chip's factory port on a socket for a station",
		Long: `Serve the chip's factory port until interrupted: the link a station uses
to read the chip's identity, get its CSR and evidence over the service's
nonce, and write its IDevID chain (package device/factoryport documents the
protocol). On a production line this is the fixture's debug or UART link.

ADDR is unix:PATH for a Unix socket (created mode 0600, removed on exit) or
HOST:PORT for TCP; use a loopback address: the port has no authentication,
as a debug link has none. The chip must be booted with the factory test
firmware (rootline device boot).

  rootline device serve-factory --state chip1 --listen unix:/run/fixture/slot1.sock
  rootline station provision --chip-port unix:/run/fixture/slot1.sock ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			if listen == "" {
				return errors.New("--listen ADDR is required")
			}
			dev, err := f.openDevice(cmd)
			if err != nil {
				return err
			}
			defer dev.Close()
			network, address := "tcp", listen
			if p, ok := strings.CutPrefix(listen, "unix:"); ok {
				network, address = "unix", p
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			ln, err := net.Listen(network, address)
			if err != nil {
				return err
			}
			if network == "unix" {
				defer os.Remove(address)
				if err := os.Chmod(address, 0o600); err != nil {
					ln.Close()
					return err
				}
			} else if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
				log.Warn("factory port on a non-loopback address: it has no authentication", "addr", tcp.String())
			}
			a := ln.Addr().String()
			if network == "unix" {
				a = "unix:" + a
			}
			if addrFile != "" {
				if err := atomicfile.Write(addrFile, []byte(a+"\n"), 0o644); err != nil {
					ln.Close()
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "factory port: %s\n", a)
			return factoryport.NewServer(dev, log).Serve(cmd.Context(), ln)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "unix:PATH or HOST:PORT (required)")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the address listened on to this file (for port 0)")
	return cmd
}
