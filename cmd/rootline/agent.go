package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/attest/api"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/internal/atomicfile"
)

// Files the agent writes in the device's state directory.
const (
	agentEARFile  = "ear.jwt"         // the last attestation result (JWT)
	agentCertFile = "operational.pem" // the operational certificate chain, leaf first
)

// Renewal timing of the agent.
const (
	agentRenewAt      = 2.0 / 3 // of the certificate's lifetime
	agentJitter       = 0.05    // ± of the lifetime
	agentMinBackoff   = 5 * time.Second
	agentMaxBackoff   = 10 * time.Minute
	agentDefaultEvery = 16 * time.Hour // without a certificate: 2/3 of 24 h
)

// agentOptions configure runAgent.
type agentOptions struct {
	State string
	// Open opens the device for one attestation; default: the emulated
	// chip in State (device.Open). The command opens a device on a TPM
	// with --tpm through it.
	Open     func(ctx context.Context) (*device.Device, error)
	Verifier string
	CA       *x509.CertPool
	JSON     bool
	Once     bool
	Every    time.Duration // renewal without a certificate
	Out      io.Writer
	Logger   *slog.Logger
	Now      func() time.Time
	Rand     *rand.Rand

	// MinWait is the shortest wait before a renewal (default a minute);
	// MinBackoff and MaxBackoff bound the waits after failures (default
	// 5 s and 10 min).
	MinWait, MinBackoff, MaxBackoff time.Duration
}

func newDeviceAgentCommand(f *deviceFlags) *cobra.Command {
	var caFile string
	opts := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent --state DIR --verifier URL [--ca FILE] [--once]",
		Short: "Attest the device to the verifier and keep its operational certificate fresh",
		Long: `The device's field agent (DESIGN.md, "The field flow", steps 2 and 3):
with the device's current boot (DIR's boot record, as "rootline device boot"
left it), ask the verifier for a nonce, attest over it (evidence signed by
the app layer's Alias key, with the IDevID chain), and store the verifier's
answer in DIR, each file replaced atomically:

  DIR/ear.jwt           the attestation result (EAR, a JWT signed by the verifier)
  DIR/operational.pem   the 24-hour operational certificate chain, when issued

It prints the status (affirming, warning or contraindicated) and reasons.
With --once it stops there, exiting 0 if affirmed or warned, 2 if
contraindicated. Otherwise it attests again at 2/3 of the certificate's
lifetime (with ±5% jitter; --every without a certificate), backing off from
5 s up to 10 min after a failure, until interrupted.

The verifier's TLS certificate is checked against --ca (PEM), or the
system's roots. Requests are CBOR (--json for JSON).`,
		Example: `  rootline device agent --state ./chip --verifier https://verifier.example:8444 --ca tls-ca.pem --once
  rootline device agent --tpm 127.0.0.1:2321 --state ./tpmdev --verifier https://verifier.example:8444 --ca tls-ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.state == "" {
				return errors.New("--state DIR is required")
			}
			if opts.Verifier == "" {
				return errors.New("--verifier URL is required")
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			if caFile != "" {
				if opts.CA, err = readCertPool(caFile); err != nil {
					return fmt.Errorf("--ca: %w", err)
				}
			}
			if opts.Every < time.Minute {
				return errors.New("--every: at least 1m")
			}
			opts.State, opts.Out, opts.Logger = f.state, cmd.OutOrStdout(), log
			if f.onTPM() {
				opts.Open = func(context.Context) (*device.Device, error) { return f.openDevice(cmd) }
			}
			return runAgent(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Verifier, "verifier", "", "the verifier's URL, https://host:port (required)")
	cmd.Flags().StringVar(&caFile, "ca", "", "PEM CA of the verifier's TLS certificate (default: the system's roots)")
	cmd.Flags().BoolVar(&opts.Once, "once", false, "attest once and exit")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "speak JSON to the verifier instead of CBOR")
	cmd.Flags().DurationVar(&opts.Every, "every", agentDefaultEvery, "how often to attest when the verifier issues no certificate")
	return cmd
}

// runAgent attests once (opts.Once) or until ctx is done.
func runAgent(ctx context.Context, opts *agentOptions) error {
	log, now, rnd := opts.Logger, opts.Now, opts.Rand
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if opts.Every <= 0 {
		opts.Every = agentDefaultEvery
	}
	if opts.MinWait <= 0 {
		opts.MinWait = time.Minute
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = agentMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(agentMaxBackoff, opts.MinBackoff)
	}
	c, err := api.Dial(&api.ClientConfig{URL: opts.Verifier, ServerCA: opts.CA, JSON: opts.JSON, HTTP1: true})
	if err != nil {
		return err
	}
	defer c.Close()
	backoff := opts.MinBackoff
	for {
		res, leaf, err := agentAttest(ctx, c, opts, log)
		if opts.Once {
			if err != nil {
				return err
			}
			if res.Status == attest.StatusContraindicated {
				return &exitError{code: 2, err: fmt.Errorf("the verifier contraindicated the device: %s", reasonList(res.Reasons))}
			}
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil:
			log.Warn("agent: attestation failed; backing off", "err", err, "retry_in", backoff)
			wait = jitter(rnd, backoff, backoff/5)
			backoff = min(2*backoff, opts.MaxBackoff)
		case res.Status == attest.StatusContraindicated:
			// The device needs attention (an update, a reboot): retry at
			// the backoff's pace, not hammering the verifier.
			wait = jitter(rnd, backoff, backoff/5)
			backoff = min(2*backoff, opts.MaxBackoff)
		case leaf != nil:
			backoff = opts.MinBackoff
			wait = renewIn(leaf, now(), rnd, opts.MinWait)
		default:
			backoff = opts.MinBackoff
			wait = jitter(rnd, opts.Every, time.Duration(float64(opts.Every)*agentJitter))
		}
		log.Info("agent: next attestation", "in", wait.Round(time.Second))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// renewIn is when to renew a certificate: at agentRenewAt of its lifetime,
// ± agentJitter of it, and not before minWait from now.
func renewIn(leaf *x509.Certificate, now time.Time, rnd *rand.Rand, minWait time.Duration) time.Duration {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	at := leaf.NotBefore.Add(time.Duration(float64(life) * agentRenewAt))
	d := jitter(rnd, at.Sub(now), time.Duration(float64(life)*agentJitter))
	return max(d, minWait)
}

// jitter returns d ± up to j, at least 0.
func jitter(rnd *rand.Rand, d, j time.Duration) time.Duration {
	if j > 0 {
		d += time.Duration(rnd.Int64N(int64(2*j))) - j
	}
	return max(d, 0)
}

func reasonList(rs []api.Reason) string {
	var parts []string
	for _, r := range rs {
		s := string(r.Code)
		if r.Detail != "" {
			s += " (" + r.Detail + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// agentAttest runs one attestation and stores its results. The device is
// opened for it only, so that a boot by another process in between is
// seen, and the chip is not held.
func agentAttest(ctx context.Context, c *api.Client, opts *agentOptions, log *slog.Logger) (*api.AttestResponse, *x509.Certificate, error) {
	var d *device.Device
	var err error
	if opts.Open != nil {
		d, err = opts.Open(ctx)
	} else {
		d, err = device.Open(opts.State, &device.Options{Logger: log})
	}
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	req := &api.AttestRequest{}
	if ids, err := d.Identity(ctx); err == nil {
		for _, c := range ids {
			req.IDevIDChain = append(req.IDevIDChain, c.Raw)
		}
	} else {
		return nil, nil, fmt.Errorf("agent: the device holds no IDevID (is it provisioned?): %w", err)
	}
	// The operational certificate is for the top Alias key, the key that
	// signs the evidence (device.OperationalCSR). A device on a TPM signs
	// its evidence with the TPM's IDevID key and asks for none.
	if d.TPM() == nil {
		if req.CSR, err = d.OperationalCSR(ctx); err != nil {
			return nil, nil, fmt.Errorf("agent: CSR: %w", err)
		}
	} else {
		log.Debug("agent: a device on a TPM attests without a CSR")
	}
	n, err := c.Nonce(ctx)
	if err != nil {
		return nil, nil, err
	}
	if req.Evidence, err = d.Attest(ctx, n); err != nil {
		return nil, nil, err
	}
	res, err := c.Attest(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	if err := atomicfile.Write(filepath.Join(opts.State, agentEARFile), []byte(res.EAR+"\n"), 0o644); err != nil {
		return nil, nil, err
	}
	var leaf *x509.Certificate
	if len(res.Certificate) > 0 {
		var pemChain []byte
		for i, der := range res.Certificate {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, nil, fmt.Errorf("agent: the verifier's certificate %d: %w", i, err)
			}
			if i == 0 {
				leaf = cert
			}
			pemChain = append(pemChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		if err := atomicfile.Write(filepath.Join(opts.State, agentCertFile), pemChain, 0o644); err != nil {
			return nil, nil, err
		}
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	fmt.Fprintf(out, "status: %s\n", res.Status)
	for _, r := range res.Reasons {
		fmt.Fprintf(out, "reason: %s %s\n", r.Code, r.Detail)
	}
	if res.Release != "" {
		fmt.Fprintf(out, "release: %s\n", res.Release)
	}
	fmt.Fprintf(out, "ear: %s\n", filepath.Join(opts.State, agentEARFile))
	if leaf != nil {
		fmt.Fprintf(out, "certificate: %s (until %s)\n", filepath.Join(opts.State, agentCertFile), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return res, leaf, nil
}
