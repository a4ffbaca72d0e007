package main

import (
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton/boot"
)

func (f *deviceFlags) openDevice(cmd *cobra.Command) (*device.Device, error) {
	if f.state == "" {
		return nil, errors.New("--state DIR is required")
	}
	if f.onTPM() {
		o, err := f.tpmOptions(cmd)
		if err != nil {
			return nil, err
		}
		return device.OpenTPM(cmd.Context(), f.state, o)
	}
	log, err := f.logger(cmd)
	if err != nil {
		return nil, err
	}
	return device.Open(f.state, &device.Options{Logger: log})
}

func readFileLimited(path string, max int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", path, fi.Size(), max)
	}
	return os.ReadFile(path)
}

func newDeviceBootCommand(f *deviceFlags) *cobra.Command {
	var policy, bl, osImg, app string
	cmd := &cobra.Command{
		Use:   "boot --state DIR --policy F --bootloader F --os F --app F",
		Short: "Verify, measure and derive each boot layer",
		Long: `Boot the emulated chip the way its boot ROM would:

  - the trust policy must be signed by the root key whose hash is fused in
    the chip, for this product, with a version not below the policy counter;
  - each layer (bootloader, OS, app) must be signed by a key the policy
    authorizes for that layer and has not revoked, for this product, with
    an SVN not below the chip's counter for that layer;
  - each verified layer is measured into its register and the event log,
    and gets its DICE CDIs and Alias key from the layer below.

A refused chain prints the reason and exits with status 2; no counter or
fuse changes. Counters move only with "rootline device confirm".`,
		Example: `  rootline device boot --state ./chip --policy policy.cbor \
      --bootloader bl.img --os os.img --app app.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			im := &device.Images{}
			for _, x := range []struct {
				flag, path string
				dst        *[]byte
				max        int64
			}{
				{"--policy", policy, &im.Policy, boot.MaxPolicySize},
				{"--bootloader", bl, &im.Bootloader, boot.MaxImageSize},
				{"--os", osImg, &im.OS, boot.MaxImageSize},
				{"--app", app, &im.App, boot.MaxImageSize},
			} {
				if x.path == "" {
					return fmt.Errorf("%s is required", x.flag)
				}
				b, err := readFileLimited(x.path, x.max)
				if err != nil {
					return fmt.Errorf("%s: %w", x.flag, err)
				}
				*x.dst = b
			}
			d, err := f.openDevice(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			res, err := d.Boot(cmd.Context(), im)
			if err != nil {
				var be *device.BootError
				if errors.As(err, &be) {
					return &exitError{code: 2, err: err}
				}
				return err
			}
			if err := d.Flush(); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "trust policy v%d\n", res.PolicyVersion)
			for _, m := range res.Layers {
				fmt.Fprintf(w, "%-10s %-8s %-12s svn %-4d %x\n", m.Layer, m.Product, m.Version, m.SVN, m.Digest)
			}
			fmt.Fprintln(w, "booted (run \"rootline device confirm\" once the images prove good)")
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "trust policy signed by the root key (rootline image policy)")
	cmd.Flags().StringVar(&bl, "bootloader", "", "bootloader image")
	cmd.Flags().StringVar(&osImg, "os", "", "OS image")
	cmd.Flags().StringVar(&app, "app", "", "application image")
	return cmd
}

func newDevicePCRsCommand(f *deviceFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "pcrs --state DIR",
		Short: "Print the measurement registers of the current boot",
		Long: `Print the measurement registers of the current boot, in both banks.
Register 0 holds the trust policy; 1, 2 and 3 the bootloader, OS and app.
The values are replayed from the event log, and match what tpm2_eventlog
computes from "rootline device eventlog".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := f.openDevice(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			regs, err := d.Registers(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, bank := range regs.Banks() {
				fmt.Fprintf(w, "%s:\n", bankName(bank))
				for _, r := range usedRegisters() {
					v, err := regs.Value(bank, r)
					if err != nil {
						return err
					}
					fmt.Fprintf(w, "  %2d: %x\n", r, v)
				}
			}
			return nil
		},
	}
}

func usedRegisters() []int {
	out := []int{device.PolicyRegister}
	for _, l := range boot.Layers() {
		out = append(out, device.LayerRegister(l))
	}
	return out
}

func bankName(h crypto.Hash) string {
	switch h {
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	}
	return h.String()
}

func newDeviceEventLogCommand(f *deviceFlags) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "eventlog --state DIR --out log.bin",
		Short: "Write the TCG event log of the current boot",
		Long: `Write the event log of the current boot in the TCG PC Client crypto-agile
format, which standard tools read:

  tpm2_eventlog log.bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			d, err := f.openDevice(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			b, err := d.EventLog(cmd.Context())
			if err != nil {
				return err
			}
			return os.WriteFile(out, b, 0o644)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output file")
	return cmd
}

func newDeviceAttestCommand(f *deviceFlags) *cobra.Command {
	var nonce, out, certOut string
	cmd := &cobra.Command{
		Use:   "attest --state DIR --nonce HEX --out evidence.cbor",
		Short: "Produce attestation evidence over a verifier's nonce",
		Long: `Produce evidence: an EAT (RFC 9711) CWT in a COSE_Sign1 signed by the app
layer's DICE Alias key, carrying the nonce, the UEID, lifecycle, counters,
each layer's measurement, the registers and the event log, with the DICE
certificate chain (app Alias … DeviceID) in its x5chain header.

--deviceid-cert writes the chip's self-signed DeviceID certificate, the
trust anchor for "rootline evidence verify" before the chip is provisioned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := hex.DecodeString(nonce)
			if err != nil || len(n) < 8 || len(n) > 64 {
				return errors.New("--nonce: want 16 to 128 hex digits (8 to 64 bytes)")
			}
			if out == "" {
				return errors.New("--out is required")
			}
			d, err := f.openDevice(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			ev, err := d.Attest(cmd.Context(), n)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, ev, 0o644); err != nil {
				return err
			}
			if certOut != "" {
				certs, err := d.Certificates(cmd.Context())
				if err != nil {
					return err
				}
				if err := writeCertPEM(certOut, certs[len(certs)-1].Raw); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "evidence: %s (%d bytes)\n", out, len(ev))
			return nil
		},
	}
	cmd.Flags().StringVar(&nonce, "nonce", "", "the verifier's nonce, hex")
	cmd.Flags().StringVar(&out, "out", "", "evidence output file")
	cmd.Flags().StringVar(&certOut, "deviceid-cert", "", "also write the DeviceID certificate (PEM) here")
	return cmd
}

func newDeviceConfirmCommand(f *deviceFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "confirm --state DIR",
		Short: "Mark the running images good: raise the anti-rollback counters",
		Long: `Mark the running images good. Each layer's counter rises to the SVN of the
image it runs, and the policy counter to the policy's version; from then
on older images (lower SVN) and older policies are refused at boot. Run it
only once the new images have proved themselves: until then the previous
images still boot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := f.openDevice(cmd)
			if err != nil {
				return err
			}
			defer d.Close()
			if err := d.Confirm(cmd.Context()); err != nil {
				return err
			}
			if err := d.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "confirmed")
			return nil
		},
	}
}
