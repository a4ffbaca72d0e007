package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/device/factoryport"
	"github.com/rootline/rootline/provision"
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
	var server, certFile, keyFile, caFile, chip, chipPort, product, lot, identity, tpmAddr string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "provision --server URL --cert F --key F --ca F (--chip DIR [--tpm ADDR] | --chip-port ADDR) --product P --lot L [--identity on-chip|injected|tpm]",
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

--identity chooses the flow, which must be the product's:

  on-chip   (the default) the chip makes its identity key (its DICE
            DeviceID) and sends a CSR.
  injected  the product's identity is injected: the chip shows an ECDH
            transport key signed by its DeviceID, the service's HSM makes
            the device key and wraps it, with the product's per-device
            secrets, for this chip alone; the chip unwraps and installs
            them, and once confirmed the HSM's copy is destroyed.
  tpm       the chip is a device on a TPM 2.0 ("rootline device init
            --backend tpm"): the TPM's IDevID key signs the CSR and the
            evidence, and its IAK certifies the IDevID. With --chip, give
            the TPM with --tpm host:port (swtpm) or /dev/tpmrm0.

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
			switch identity {
			case "on-chip", "injected", "tpm":
			default:
				return fmt.Errorf("--identity %q: want on-chip, injected or tpm", identity)
			}
			if tpmAddr != "" && chip == "" {
				return errors.New("--tpm goes with --chip DIR (a device on a TPM)")
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
			// dev is a *factoryport.Client or a *device.Device: each does
			// every flow, and the chip refuses one that is not its own.
			var dev interface {
				station.Chip
				station.InjectedChip
				station.TPMChip
			}
			var local *device.Device
			if chipPort != "" {
				fc, err := factoryport.Dial(cmd.Context(), chipPort)
				if err != nil {
					return err
				}
				defer fc.Close()
				dev = fc
			} else {
				df := &deviceFlags{globals: g, state: chip, tpm: tpmAddr}
				switch onTPM := device.IsTPM(chip); {
				case onTPM && identity != "tpm":
					return fmt.Errorf("--chip %s is a device on a TPM: use --identity tpm", chip)
				case !onTPM && identity == "tpm":
					return fmt.Errorf("--chip %s is not a device on a TPM (--identity tpm)", chip)
				}
				if local, err = df.openDevice(cmd); err != nil {
					return err
				}
				defer local.Close()
				dev = local
			}
			log.Debug("station: provisioning", "identity", identity, "product", product, "lot", lot)
			var res *provision.Result
			var injected *provision.InjectedResult
			switch identity {
			case "injected":
				if injected, err = station.ProvisionInjectedChip(cmd.Context(), c, dev, product, lot); err == nil {
					res = &injected.Result
				}
			case "tpm":
				res, err = station.ProvisionTPMChip(cmd.Context(), c, dev, product, lot)
			default:
				res, err = station.ProvisionChip(cmd.Context(), c, dev, product, lot)
			}
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
			if injected != nil {
				if injected.Key != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "injected: device key and %d secrets installed\n", len(injected.Secrets))
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), "injected: already confirmed (the chip holds its key)")
				}
			}
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
	f.StringVar(&identity, "identity", "on-chip", "the product's identity flow: on-chip, injected or tpm")
	f.StringVar(&tpmAddr, "tpm", "", "with --chip and --identity tpm: host:port of a TCP TPM (swtpm) or a TPM device (/dev/tpmrm0)")
	f.DurationVar(&timeout, "timeout", time.Minute, "timeout of each call")
	return cmd
}
