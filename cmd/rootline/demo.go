package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
)

func newDemoCommand(g *globals) *cobra.Command {
	var dir string
	var keep bool
	var chips int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Walk through rootline: the chip, boot and evidence, the CA, the factory, the field",
		Long: `Walk through the security subsystem on an emulated chip, printing each
step with the command that does the same by hand:

  1. fuse a blank chip (UDS, UEID, DICE DeviceID key)
  2. restart it and show the DeviceID is the same (derived from the UDS)
  3. generate keys in two compartments (the OS and an app)
  4. sign with the app's key, and show the OS is refused that key
  5. move a counter forward, and show it refuses to go back
  6. advance the lifecycle, and show it refuses to go back
  7. sign three boot images (one hybrid ECDSA + ML-DSA-65) under a
     root-signed trust policy, fuse a chip for the product and boot it
  8. print its measurement registers, write and replay the event log
  9. attest over a nonce and verify the evidence
 10. show a rolled-back OS image refused
 11. the device CA, keys in SoftHSM2: a root ceremony, an IDevID issued
     to a chip's CSR and checked by openssl, a forged CSR refused
 12. the factory: the provisioning service on 127.0.0.1 over mutual TLS
     (CA in SoftHSM2, SQLite registry, issuance log); a station
     provisions --chips chips (1,000); a retry, a clone and a station of another
     product; a chip of a second product whose identity is injected (the
     key made in the token and wrapped to the chip, a per-device join key);
     an inclusion proof from the issuance log
 13. the field: the registry export, endorsements and the CA feed the
     attestation verifier (serve verify, EAR key in SoftHSM2); chip 1's
     agent attests and gets an EAR and a 24-hour operational
     certificate, updates its OS and attests again, and, restored from
     a backup, boots the old OS and is refused for rollback

Each refusal is checked to be the typed error the API promises; the demo
exits non-zero if anything behaves otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if chips < 2 || chips > 100000 {
				return fmt.Errorf("--chips %d: want 2 to 100000", chips)
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "rootline-demo-")
				if err != nil {
					return err
				}
				dir = d
				if !keep {
					defer os.RemoveAll(d)
				}
			}
			log, err := g.logger(cmd)
			if err != nil {
				return err
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), dir, &soft.Options{Logger: log}, chips)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the chip's state (default: a temporary one, removed after)")
	cmd.Flags().IntVar(&chips, "chips", 1000, "how many chips the factory part provisions (2 to 100000)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary directory")
	return cmd
}

// demoStep prints a numbered heading and the equivalent command.
type demo struct {
	w    io.Writer
	n    int
	path string
	dir  string
}

func (d *demo) step(title, command string) {
	d.n++
	fmt.Fprintf(d.w, "\n== %d. %s\n", d.n, title)
	if command != "" {
		fmt.Fprintf(d.w, "   $ rootline %s\n", command)
	}
}

func (d *demo) say(format string, a ...any) { fmt.Fprintf(d.w, "   "+format+"\n", a...) }

// refused checks that err is the promised refusal.
func (d *demo) refused(err, want error) error {
	if err == nil {
		return fmt.Errorf("demo: expected a refusal (%v), got success", want)
	}
	if !errors.Is(err, want) {
		return fmt.Errorf("demo: expected %v, got: %w", want, err)
	}
	d.say("refused, as it must be: %v", err)
	return nil
}

func runDemo(ctx context.Context, w io.Writer, dir string, opts *soft.Options, chips int) error {
	if opts == nil {
		opts = &soft.Options{}
	}
	d := &demo{w: w, dir: dir, path: filepath.Join(dir, chipFile)}
	fmt.Fprintf(w, "rootline demo: an emulated security subsystem, state in %s\n", dir)

	d.step("Fuse a blank chip", "device init --state "+dir)
	chip, err := soft.Create(d.path, opts)
	if err != nil {
		return err
	}
	if err := chip.FuseIdentity(ctx); err != nil {
		chip.Close()
		return err
	}
	if err := printInfo(ctx, indent(w), chip); err != nil {
		chip.Close()
		return err
	}
	err = d.refused(chip.FuseIdentity(ctx), pluton.ErrFuseWritten)
	id1, _ := chip.Identity(ctx)
	chip.Close()
	if err != nil {
		return err
	}

	d.step("Restart the chip: the DeviceID key is derived again from the UDS", "device info --state "+dir)
	chip, err = soft.Open(d.path, opts)
	if err != nil {
		return err
	}
	defer chip.Close()
	id2, err := chip.Identity(ctx)
	if err != nil {
		return err
	}
	a, _ := pluton.MarshalPublicKey(id1.DeviceID)
	b, _ := pluton.MarshalPublicKey(id2.DeviceID)
	if !bytes.Equal(a, b) || !bytes.Equal(id1.UEID, id2.UEID) {
		return errors.New("demo: identity changed across a restart")
	}
	d.say("same UEID %x and same DeviceID key after restart", id2.UEID)

	app := pluton.App("weather")
	d.step("Generate keys in two compartments", "device keygen --state "+dir+" --compartment os --alg p256")
	osKey, err := chip.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign, Label: "os-tls"})
	if err != nil {
		return err
	}
	d.say("os           → handle %d (%s)", osKey.Handle, osKey.Algorithm)
	fmt.Fprintf(w, "   $ rootline device keygen --state %s --compartment %s --alg mldsa65\n", dir, app)
	appKey, err := chip.GenerateKey(ctx, &pluton.KeyRequest{Compartment: app, Algorithm: pluton.MLDSA65, Usage: pluton.UsageSign, Label: "telemetry"})
	if err != nil {
		return err
	}
	d.say("%-12s → handle %d (%s)", app, appKey.Handle, appKey.Algorithm)

	msg := []byte("temperature=21.5C")
	d.step("The app signs with its own key", fmt.Sprintf("device sign --state %s --compartment %s --handle %d --in reading.txt", dir, app, appKey.Handle))
	s, err := chip.Signer(ctx, app, appKey.Handle)
	if err != nil {
		return err
	}
	sig, err := s.Sign(nil, msg, appKey.Algorithm.SignerOpts())
	if err != nil {
		return err
	}
	if err := pluton.Verify(appKey.Public, appKey.Algorithm, msg, sig); err != nil {
		return err
	}
	d.say("%d-byte ML-DSA-65 signature, verified with pluton.Verify", len(sig))

	d.step("The OS asks for the app's key", fmt.Sprintf("device sign --state %s --compartment os --handle %d --in reading.txt", dir, appKey.Handle))
	_, err = chip.Signer(ctx, pluton.OS, appKey.Handle)
	if err := d.refused(err, pluton.ErrCompartment); err != nil {
		return err
	}
	fmt.Fprintf(w, "   $ rootline device sign --state %s --compartment os --handle %d   # the DeviceID\n", dir, pluton.DeviceIDHandle)
	_, err = chip.Signer(ctx, pluton.OS, pluton.DeviceIDHandle)
	if err := d.refused(err, pluton.ErrCompartment); err != nil {
		return err
	}

	d.step("Monotonic counters move forward only", "device counter --state "+dir+" --compartment os --name svn/os --advance 3")
	if err := chip.AdvanceCounter(ctx, pluton.OS, "svn/os", 3); err != nil {
		return err
	}
	v, _ := chip.Counter(ctx, pluton.OS, "svn/os")
	d.say("os/svn/os = %d", v)
	fmt.Fprintf(w, "   $ rootline device counter --state %s --compartment os --name svn/os --advance 2\n", dir)
	if err := d.refused(chip.AdvanceCounter(ctx, pluton.OS, "svn/os", 2), pluton.ErrCounterBackward); err != nil {
		return err
	}
	fmt.Fprintf(w, "   $ rootline device counter --state %s --compartment %s --name svn/os --increment\n", dir, app)
	_, err = chip.IncrementCounter(ctx, app, "svn/os")
	if err := d.refused(err, pluton.ErrCompartment); err != nil {
		return err
	}

	d.step("The lifecycle is one-way", "device lifecycle --state "+dir+" --to provisioned")
	if err := chip.Transition(ctx, pluton.Provisioned); err != nil {
		return err
	}
	d.say("lifecycle: %s", pluton.Provisioned)
	fmt.Fprintf(w, "   $ rootline device lifecycle --state %s --to manufacturing\n", dir)
	if err := d.refused(chip.Transition(ctx, pluton.Manufacturing), pluton.ErrWrongLifecycle); err != nil {
		return err
	}

	chip.Close()
	if err := runBootDemo(ctx, d, &device.Options{Chip: *opts}); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n--- Part 3: the device CA, keys in SoftHSM2 (in %s)\n", filepath.Join(dir, "ca-demo"))
	caDemo := &demo{w: w, n: d.n, dir: filepath.Join(dir, "ca-demo")}
	if err := runCADemoSteps(ctx, caDemo, opts.Logger); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n--- Part 4: the factory (in %s)\n", filepath.Join(dir, "factory"))
	factory := &demo{w: w, n: caDemo.n, dir: filepath.Join(dir, "factory")}
	var made factoryDemoResult
	if err := runFactoryDemo(ctx, factory,
		&factoryDemoOptions{HSMDir: caDemo.dir, Logger: opts.Logger, Chips: chips, Result: &made}); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n--- Part 5: the field (in %s)\n", filepath.Join(dir, "field"))
	if err := runFieldDemo(ctx, &demo{w: w, n: factory.n, dir: filepath.Join(dir, "field")}, &made, opts.Logger); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nDone: every operation behaved as the subsystem's API promises.\n")
	return nil
}

// indent prefixes every line written through it with three spaces.
func indent(w io.Writer) io.Writer { return &indentWriter{w: w, bol: true} }

type indentWriter struct {
	w   io.Writer
	bol bool
}

func (iw *indentWriter) Write(p []byte) (int, error) {
	var buf bytes.Buffer
	for _, c := range p {
		if iw.bol {
			buf.WriteString("   ")
		}
		buf.WriteByte(c)
		iw.bol = c == '\n'
	}
	if _, err := iw.w.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
