package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/device/factoryport"
	"github.com/rootline/rootline/provision/api"
	"github.com/rootline/rootline/provision/station"
)

func newStationCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "station",
		Short: "A factory station: provision chips with the provisioning service",
	}
	cmd.AddCommand(newStationProvisionCommand(g))
	return cmd
}

func newStationProvisionCommand(g *globals) *cobra.Command {
	var server, certFile, keyFile, caFile, chip, chipPort, product, lot string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "provision --server URL --cert F --key F --ca F (--chip DIR | --chip-port ADDR) --product P --lot L",
		Short: "Provision one chip: nonce, request, certificate, install, confirm",
		Long: `Run the factory flow for one chip, booted with the factory test firmware
("rootline device boot"): the chip whose state is in --chip DIR, or the
chip behind the factory port --chip-port ADDR (unix:PATH or HOST:PORT, as
"rootline device serve-factory" listens): get a nonce from the service, have the
chip answer it with its evidence and a CSR, send both, install the chain
the service returns into the chip (which moves it to Provisioned), and
confirm. The station is who its certificate (--cert, --key) says. Running
it again for the same chip is harmless: the service returns the same
certificate.

A refusal by the service prints its reason and exits with status 2.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct{ flag, v string }{
				{"--server", server}, {"--cert", certFile}, {"--key", keyFile}, {"--ca", caFile},
				{"--product", product}, {"--lot", lot},
			} {
				if f.v == "" {
					return fmt.Errorf("%s is required", f.flag)
				}
			}
			if (chip == "") == (chipPort == "") {
				return errors.New("give exactly one of --chip DIR and --chip-port ADDR")
			}
			log, err := g.logger(cmd)
			if err != nil {
				return err
			}
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("--cert/--key: %w", err)
			}
			pool, err := readCertPool(caFile)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			c, err := station.Dial(&station.Config{URL: server, Certificate: cert, ServerCA: pool, Timeout: timeout})
			if err != nil {
				return err
			}
			defer c.Close()
			var dev station.Chip
			var local *device.Device
			if chipPort != "" {
				fc, err := factoryport.Dial(cmd.Context(), chipPort)
				if err != nil {
					return err
				}
				defer fc.Close()
				dev = fc
			} else {
				if local, err = device.Open(chip, &device.Options{Logger: log}); err != nil {
					return err
				}
				defer local.Close()
				dev = local
			}
			res, err := station.ProvisionChip(cmd.Context(), c, dev, product, lot)
			if err != nil {
				var ae *api.Error
				if errors.As(err, &ae) && ae.Status < 500 {
					return &exitError{code: 2, err: err}
				}
				return err
			}
			if local != nil {
				if err := local.Flush(); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "provisioned: %d certificates, issuance log index %d\n", len(res.Chain), res.LogIndex)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "base URL of the provisioning service (https://...)")
	f.StringVar(&certFile, "cert", "", "the station's certificate (PEM)")
	f.StringVar(&keyFile, "key", "", "the station's private key (PEM)")
	f.StringVar(&caFile, "ca", "", "CA certificate(s) of the service's TLS certificate (PEM)")
	f.StringVar(&chip, "chip", "", "state directory of the chip")
	f.StringVar(&chipPort, "chip-port", "", "the chip's factory port: unix:PATH or HOST:PORT")
	f.StringVar(&product, "product", "", "the chip's product")
	f.StringVar(&lot, "lot", "", "the production lot")
	f.DurationVar(&timeout, "timeout", time.Minute, "timeout of each call")
	return cmd
}
