package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
)

// chipFile is the state file inside a device's --state directory.
const chipFile = "chip.state"

type deviceFlags struct {
	*globals
	state   string
	backend string // "soft" (the emulated chip) or "tpm"
	tpm     string // the TPM: host:port (swtpm) or a device path
}

// tpmOptions says how to reach the TPM of --tpm.
func (f *deviceFlags) tpmOptions(cmd *cobra.Command) (*device.TPMOptions, error) {
	log, err := f.logger(cmd)
	if err != nil {
		return nil, err
	}
	o := &device.TPMOptions{Logger: log}
	switch {
	case f.tpm == "":
		return nil, errors.New("--tpm is required with --backend tpm: host:port of a TCP TPM (swtpm) or /dev/tpmrm0")
	case strings.HasPrefix(f.tpm, "/"):
		o.Device = f.tpm
	default:
		o.Address = f.tpm
	}
	return o, nil
}

// onTPM reports whether the device in --state runs on a TPM: --backend tpm,
// or a state directory made by init --backend tpm.
func (f *deviceFlags) onTPM() bool {
	return f.backend == "tpm" || (f.state != "" && device.IsTPM(f.state))
}

func (f *deviceFlags) open(cmd *cobra.Command) (*soft.Chip, error) {
	if f.state == "" {
		return nil, errors.New("--state DIR is required")
	}
	if f.onTPM() {
		return nil, fmt.Errorf("%q drives the emulated chip's key slots, fuses and counters directly; a TPM device takes init, info, boot, pcrs, eventlog, attest, confirm and serve-factory", cmd.Name())
	}
	log, err := f.logger(cmd)
	if err != nil {
		return nil, err
	}
	return soft.Open(filepath.Join(f.state, chipFile), &soft.Options{Logger: log})
}

func newDeviceCommand(g *globals) *cobra.Command {
	f := &deviceFlags{globals: g}
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Drive an emulated chip (pluton/soft) or a device on a TPM 2.0",
		Long: `Drive an emulated chip: a software security processor whose fuses and
key slots live in one state file, DIR/chip.state, rewritten atomically on
every change. The file holds the chip's secrets (its UDS and private keys),
as silicon would: keep it private (it is created mode 0600).

With --backend tpm --tpm ADDR the device runs on a TPM 2.0 instead (swtpm on
host:port, or /dev/tpmrm0): the same signed boot measured into the TPM's
PCRs with the same event log, anti-rollback and lifecycle in NV counters,
an IAK and an IDevID key made in the TPM (TPM2_Certify for the factory), and
evidence carrying a TPM2_Quote. DIR then holds the device's configuration
and boot record; --backend tpm is remembered in it, --tpm must be given each
time.

  rootline device init --backend tpm --tpm 127.0.0.1:2321 --state ./tpmdev --product sku-a --root-key-hash @root.hash
  rootline device boot --tpm 127.0.0.1:2321 --state ./tpmdev --policy policy.cbor --bootloader bl.img --os os.img --app app.img
  rootline device attest --tpm 127.0.0.1:2321 --state ./tpmdev --nonce <hex> --out ev.cbor`,
	}
	cmd.PersistentFlags().StringVar(&f.state, "state", "", "directory of the emulated chip's state (required)")
	cmd.PersistentFlags().StringVar(&f.backend, "backend", "soft", "soft (the emulated chip) or tpm (a TPM 2.0, see --tpm)")
	cmd.PersistentFlags().StringVar(&f.tpm, "tpm", "", "with --backend tpm: host:port of a TCP TPM (swtpm) or a TPM device (/dev/tpmrm0)")
	cmd.AddCommand(
		newDeviceInitCommand(f),
		newDeviceInfoCommand(f),
		newDeviceKeygenCommand(f),
		newDeviceKeysCommand(f),
		newDeviceSignCommand(f),
		newDeviceCounterCommand(f),
		newDeviceLifecycleCommand(f),
		newDeviceBootCommand(f),
		newDevicePCRsCommand(f),
		newDeviceEventLogCommand(f),
		newDeviceAttestCommand(f),
		newDeviceConfirmCommand(f),
		newDeviceServeFactoryCommand(f),
		newDeviceAgentCommand(f),
	)
	return cmd
}

func newDeviceInitCommand(f *deviceFlags) *cobra.Command {
	var (
		alg, product, rootHash, factoryRoot string
	)
	cmd := &cobra.Command{
		Use:   "init --state DIR",
		Short: "Fuse a new emulated chip: UDS, UEID and DeviceID",
		Long: `Create a blank chip in DIR and fuse its identity: a unique device secret
(UDS) and a UEID drawn from the chip's DRBG, and the DICE DeviceID key
derived from the UDS. The chip moves from Blank to Manufacturing.

Optionally fuse the product identifier and the hash of the product's root
image-signing key (both write-once). Refuses a directory that already
holds a chip.`,
		Example: `  rootline device init --state ./chip
  rootline device init --state ./chip --product sku-a --root-key-hash 3f1c…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := pluton.ParseAlgorithm(alg)
			if err != nil {
				return fmt.Errorf("--deviceid-alg: %w", err)
			}
			hash, err := readHashFlag("--root-key-hash", rootHash)
			if err != nil {
				return err
			}
			factoryHash, err := readHashFlag("--factory-root-hash", factoryRoot)
			if err != nil {
				return err
			}
			if f.state == "" {
				return errors.New("--state DIR is required")
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			switch f.backend {
			case "soft":
			case "tpm":
				o, err := f.tpmOptions(cmd)
				if err != nil {
					return err
				}
				d, err := device.InitTPM(ctx, f.state, &device.InitRequest{Product: product, RootKeyHash: hash, FactoryRootHash: factoryHash}, o)
				if err != nil {
					return err
				}
				defer d.Close()
				return printTPMInfo(ctx, cmd.OutOrStdout(), d)
			default:
				return fmt.Errorf("--backend %q: want soft or tpm", f.backend)
			}
			d, err := device.Init(ctx, f.state, &device.InitRequest{Product: product, RootKeyHash: hash, FactoryRootHash: factoryHash},
				&device.Options{Logger: log, Chip: soft.Options{DeviceIDAlgorithm: a}})
			if err != nil {
				return err
			}
			defer d.Close()
			chip := d.Chip()
			return printInfo(ctx, cmd.OutOrStdout(), chip)
		},
	}
	cmd.Flags().StringVar(&alg, "deviceid-alg", "p256", "DeviceID key algorithm: p256, p384, ed25519 or mldsa65")
	cmd.Flags().StringVar(&product, "product", "", "product identifier to fuse (optional)")
	cmd.Flags().StringVar(&rootHash, "root-key-hash", "", "hex SHA-256/384 of the product's root signing key, or @FILE (optional; see rootline image roothash)")
	cmd.Flags().StringVar(&factoryRoot, "factory-root-hash", "", "hex SHA-256/384 of the factory CA root's key, or @FILE: the chip then installs only an IDevID chain ending there (optional; rootline image roothash --cert ca/root.pem)")
	return cmd
}

func newDeviceInfoCommand(f *deviceFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "info --state DIR",
		Short: "Print the chip's UEID, lifecycle, fuses, counters and DeviceID key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.onTPM() {
				d, err := f.openDevice(cmd)
				if err != nil {
					return err
				}
				defer d.Close()
				return printTPMInfo(cmd.Context(), cmd.OutOrStdout(), d)
			}
			chip, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer chip.Close()
			return printInfo(cmd.Context(), cmd.OutOrStdout(), chip)
		},
	}
}

// printTPMInfo prints what a device on a TPM knows of itself: its UEID
// (derived from the IAK), lifecycle, and the IAK and IDevID public keys.
func printTPMInfo(ctx context.Context, w io.Writer, d *device.Device) error {
	ueid, err := d.UEID(ctx)
	if err != nil {
		return err
	}
	lc, err := d.Lifecycle(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "backend:        tpm\n")
	fmt.Fprintf(w, "lifecycle:      %s\n", lc)
	fmt.Fprintf(w, "ueid:           %x\n", ueid)
	idk, err := d.TPM().IdentityKeys(ctx, make([]byte, 16))
	if err != nil {
		return err
	}
	for _, k := range []struct {
		name string
		pub  crypto.PublicKey
	}{{"IAK", idk.IAK}, {"IDevID key", idk.IDevID}} {
		der, err := pluton.MarshalPublicKey(k.pub)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s:\n", k.name)
		if err := pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
			return err
		}
	}
	return nil
}

func printInfo(ctx context.Context, w io.Writer, chip *soft.Chip) error {
	lc, err := chip.Lifecycle(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "lifecycle:      %s\n", lc)
	if p, err := chip.ProductID(ctx); err == nil {
		fmt.Fprintf(w, "product:        %s\n", p)
	}
	if h, err := chip.RootKeyHash(ctx); err == nil {
		fmt.Fprintf(w, "root key hash:  %x\n", h)
	}
	if h, err := chip.FactoryRootHash(ctx); err == nil {
		fmt.Fprintf(w, "factory root:   %x\n", h)
	}
	id, err := chip.Identity(ctx)
	if errors.Is(err, pluton.ErrFuseNotWritten) {
		fmt.Fprintln(w, "identity:       not fused")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "ueid:           %x\n", id.UEID)
	counters, err := chip.AllCounters(ctx)
	if err != nil {
		return err
	}
	for _, c := range counters {
		fmt.Fprintf(w, "counter:        %s/%s = %d\n", c.Compartment, c.Name, c.Value)
	}
	fmt.Fprintf(w, "deviceid alg:   %s\n", id.Algorithm)
	return writePublicPEM(w, id.DeviceID)
}

func writePublicPEM(w io.Writer, pub crypto.PublicKey) error {
	der, err := pluton.MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	return pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func compartmentFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "compartment", "", "compartment acting: sm, os or app:NAME (required)")
}

func newDeviceKeygenCommand(f *deviceFlags) *cobra.Command {
	var comp, alg, usage, label string
	cmd := &cobra.Command{
		Use:   "keygen --state DIR --compartment C --alg ALG",
		Short: "Generate a key inside the chip, in a compartment's slot",
		Long: `Generate a key inside the chip from its DRBG. The private key never leaves
the chip: the command prints the new handle and the public key (PEM).
The key belongs to the compartment that made it; other compartments
cannot use it.`,
		Example: `  rootline device keygen --state ./chip --compartment app:weather --alg p256`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := pluton.ParseCompartment(comp)
			if err != nil {
				return fmt.Errorf("--compartment: %w", err)
			}
			a, err := pluton.ParseAlgorithm(alg)
			if err != nil {
				return fmt.Errorf("--alg: %w", err)
			}
			u, err := pluton.ParseUsage(usage)
			if err != nil {
				return fmt.Errorf("--usage: %w", err)
			}
			chip, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer chip.Close()
			info, err := chip.GenerateKey(cmd.Context(), &pluton.KeyRequest{Compartment: c, Algorithm: a, Usage: u, Label: label})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "handle: %d\ncompartment: %s\nalgorithm: %s\n", info.Handle, info.Compartment, info.Algorithm)
			return writePublicPEM(cmd.OutOrStdout(), info.Public)
		},
	}
	compartmentFlag(cmd, &comp)
	cmd.Flags().StringVar(&alg, "alg", "p256", "algorithm: p256, p384, ed25519 or mldsa65")
	cmd.Flags().StringVar(&usage, "usage", "sign", "usage: sign or attest (attest keys only sign what the chip builds)")
	cmd.Flags().StringVar(&label, "label", "", "a label for humans (at most 64 bytes)")
	return cmd
}

func newDeviceKeysCommand(f *deviceFlags) *cobra.Command {
	var comp string
	cmd := &cobra.Command{
		Use:   "keys --state DIR --compartment C",
		Short: "List a compartment's key slots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := pluton.ParseCompartment(comp)
			if err != nil {
				return fmt.Errorf("--compartment: %w", err)
			}
			chip, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer chip.Close()
			keys, err := chip.Keys(cmd.Context(), c)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%-7s %-12s %-8s %-7s %s\n", "HANDLE", "COMPARTMENT", "ALG", "USAGE", "LABEL")
			for _, k := range keys {
				fmt.Fprintf(w, "%-7d %-12s %-8s %-7s %s\n", k.Handle, k.Compartment, k.Algorithm, k.Usage, k.Label)
			}
			return nil
		},
	}
	compartmentFlag(cmd, &comp)
	return cmd
}

func newDeviceSignCommand(f *deviceFlags) *cobra.Command {
	var comp, in, out string
	var handle uint32
	cmd := &cobra.Command{
		Use:   "sign --state DIR --compartment C --handle N --in FILE [--out FILE]",
		Short: "Sign a file with a key slot, on behalf of a compartment",
		Long: `Sign a file with the key in slot N. ECDSA signatures are ASN.1 DER over
SHA-256 (P-256) or SHA-384 (P-384) of the file; Ed25519 and ML-DSA-65 sign
the file itself. The signature is written raw to --out, or hex to stdout.
A compartment that does not own the key is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := pluton.ParseCompartment(comp)
			if err != nil {
				return fmt.Errorf("--compartment: %w", err)
			}
			msg, err := readInput(cmd, in)
			if err != nil {
				return err
			}
			chip, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer chip.Close()
			ctx := cmd.Context()
			info, err := chip.Key(ctx, c, pluton.KeyHandle(handle))
			if err != nil {
				return err
			}
			s, err := chip.Signer(ctx, c, info.Handle)
			if err != nil {
				return err
			}
			sig, err := s.Sign(nil, info.Algorithm.Digest(msg), info.Algorithm.SignerOpts())
			if err != nil {
				return err
			}
			if err := pluton.Verify(info.Public, info.Algorithm, msg, sig); err != nil {
				return fmt.Errorf("signature does not verify: %w", err)
			}
			if out != "" {
				return os.WriteFile(out, sig, 0o644)
			}
			fmt.Fprintln(cmd.OutOrStdout(), hex.EncodeToString(sig))
			return nil
		},
	}
	compartmentFlag(cmd, &comp)
	cmd.Flags().Uint32Var(&handle, "handle", 0, "key handle (from keygen or keys)")
	cmd.Flags().StringVar(&in, "in", "-", "file to sign, - for stdin")
	cmd.Flags().StringVar(&out, "out", "", "signature output file (default: hex on stdout)")
	return cmd
}

func readInput(cmd *cobra.Command, path string) ([]byte, error) {
	const max = 64 << 20
	var r io.Reader
	if path == "-" || path == "" {
		r = cmd.InOrStdin()
	} else {
		fh, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		r = fh
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("input larger than %d bytes", max)
	}
	return buf.Bytes(), nil
}

func newDeviceCounterCommand(f *deviceFlags) *cobra.Command {
	var comp, name, advance string
	var increment bool
	cmd := &cobra.Command{
		Use:   "counter --state DIR --compartment C --name NAME [--increment | --advance N]",
		Short: "Read, increment or advance a monotonic counter",
		Long: `Monotonic counters live in fuses and only move forward. A counter belongs
to the compartment that first moved it. --advance N raises it to N (a
lower N is refused); --increment adds one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := pluton.ParseCompartment(comp)
			if err != nil {
				return fmt.Errorf("--compartment: %w", err)
			}
			if increment && advance != "" {
				return errors.New("--increment and --advance are exclusive")
			}
			chip, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer chip.Close()
			ctx := cmd.Context()
			switch {
			case increment:
				if _, err := chip.IncrementCounter(ctx, c, name); err != nil {
					return err
				}
			case advance != "":
				v, err := strconv.ParseUint(advance, 10, 64)
				if err != nil {
					return fmt.Errorf("--advance: %w", err)
				}
				if err := chip.AdvanceCounter(ctx, c, name, v); err != nil {
					return err
				}
			}
			v, err := chip.Counter(ctx, c, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s = %d\n", c, name, v)
			return nil
		},
	}
	compartmentFlag(cmd, &comp)
	cmd.Flags().StringVar(&name, "name", "", "counter name, 1-64 of [a-z0-9/._-]")
	cmd.Flags().BoolVar(&increment, "increment", false, "add one")
	cmd.Flags().StringVar(&advance, "advance", "", "raise to this value")
	return cmd
}

func newDeviceLifecycleCommand(f *deviceFlags) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "lifecycle --state DIR [--to STATE]",
		Short: "Show or advance the one-way lifecycle",
		Long: `Show the lifecycle state, or move it forward. Moves are one-way:
manufacturing → provisioned → locked, rma or decommissioned. Entering rma or
decommissioned erases every key slot; decommissioned also erases the UDS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			chip, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer chip.Close()
			ctx := cmd.Context()
			if to != "" {
				l, err := pluton.ParseLifecycle(to)
				if err != nil {
					return fmt.Errorf("--to: %w", err)
				}
				if err := chip.Transition(ctx, l); err != nil {
					return err
				}
			}
			l, err := chip.Lifecycle(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), l)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "target state: "+strings.Join([]string{"provisioned", "locked", "rma", "decommissioned"}, ", "))
	return cmd
}

// readHashFlag reads a fuse value given as hex or @FILE holding hex: 32
// or 48 bytes (SHA-256 or SHA-384). An empty flag is nil.
func readHashFlag(flag, v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	if name, ok := strings.CutPrefix(v, "@"); ok {
		b, err := readFileLimited(name, 1024)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		v = strings.TrimSpace(string(b))
	}
	h, err := hex.DecodeString(v)
	if err != nil || (len(h) != 32 && len(h) != 48) {
		return nil, fmt.Errorf("%s: want 64 or 96 hex digits (SHA-256 or SHA-384), or @FILE holding them", flag)
	}
	return h, nil
}
