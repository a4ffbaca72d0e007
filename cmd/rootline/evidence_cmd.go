package main

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/pluton/evidence"
)

func writeCertPEM(path string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func readCertPool(path string) (*x509.CertPool, error) {
	b, err := readFileLimited(path, 1<<20)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}

func newEvidenceCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Inspect and verify attestation evidence",
	}
	var nonce, roots string
	verify := &cobra.Command{
		Use:   "verify --roots CERTS.pem [--nonce HEX] evidence.cbor",
		Short: "Verify evidence: signature, certificate chain, nonce, claim types",
		Long: `Verify an evidence token as a verifier's first stage does: the COSE_Sign1
signature with the leaf (Alias) certificate's key, the certificate chain
link by link up to one of --roots (a DeviceID certificate, or the factory
root once chips are provisioned), the nonce, and every claim's type and
size. It then prints the verified claims. Appraisal against reference
values is the attestation verifier's job.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if roots == "" {
				return errors.New("--roots is required")
			}
			pool, err := readCertPool(roots)
			if err != nil {
				return err
			}
			opts := &evidence.VerifyOptions{Roots: pool}
			if nonce != "" {
				if opts.Nonce, err = hex.DecodeString(nonce); err != nil {
					return fmt.Errorf("--nonce: %w", err)
				}
			}
			b, err := readFileLimited(args[0], 1<<20)
			if err != nil {
				return err
			}
			tok, err := evidence.Verify(b, opts)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			c := tok.Claims
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "verified: %s signature, %d certificates\n", tok.Algorithm, len(tok.Chain))
			fmt.Fprintf(w, "ueid:      %x\nproduct:   %s\nlifecycle: %s\nnonce:     %x\n", c.UEID, c.Product, c.Lifecycle, c.Nonce)
			for name, v := range c.Counters {
				fmt.Fprintf(w, "counter:   %s = %d\n", name, v)
			}
			for _, m := range c.Layers {
				fmt.Fprintf(w, "layer:     %-10s %-12s svn %-4d %x\n", m.Layer, m.Version, m.SVN, m.Digest)
			}
			return nil
		},
	}
	verify.Flags().StringVar(&nonce, "nonce", "", "expected nonce, hex")
	verify.Flags().StringVar(&roots, "roots", "", "PEM file of trusted root certificates")
	cmd.AddCommand(verify)
	return cmd
}
