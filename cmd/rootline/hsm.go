package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/hsm"
)

type hsmFlags struct {
	*globals
	softhsmConf string
	pinSource   string
}

// defaultSoftHSMDir is where init-token keeps a development token when
// --dir is not given: $XDG_DATA_HOME/rootline/softhsm, or
// ~/.local/share/rootline/softhsm.
func defaultSoftHSMDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "rootline", "softhsm"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --dir given and no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "rootline", "softhsm"), nil
}

// useSoftHSMConf points SoftHSM2 (which reads SOFTHSM2_CONF when the module
// is first loaded) at --softhsm-conf, or else at init-token's default
// configuration if there is one and SOFTHSM2_CONF is unset. Other modules
// ignore it.
func (f *hsmFlags) useSoftHSMConf() error {
	conf := f.softhsmConf
	if conf == "" {
		if os.Getenv("SOFTHSM2_CONF") != "" {
			return nil
		}
		dir, err := defaultSoftHSMDir()
		if err != nil {
			return nil
		}
		if _, err := os.Stat(filepath.Join(dir, "softhsm2.conf")); err != nil {
			return nil
		}
		conf = filepath.Join(dir, "softhsm2.conf")
	}
	abs, err := filepath.Abs(conf)
	if err != nil {
		return err
	}
	return os.Setenv("SOFTHSM2_CONF", abs)
}

// absPINSource makes a file pin-source given on the command line absolute,
// so that the URIs printed work from any directory. A bare path (no
// scheme) is a file.
func absPINSource(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	path, isFile := strings.CutPrefix(s, "file:")
	if !isFile && !strings.Contains(s, ":") {
		path, isFile = s, true
	}
	if !isFile || strings.HasPrefix(path, "//") {
		return s, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return "file:" + abs, nil
}

// open opens the token of --uri, with --pin-source when the URI has none.
func (f *hsmFlags) open(cmd *cobra.Command, uri string) (*hsm.Module, error) {
	if uri == "" {
		return nil, errors.New("--uri is required")
	}
	if err := f.useSoftHSMConf(); err != nil {
		return nil, err
	}
	log, err := f.logger(cmd)
	if err != nil {
		return nil, err
	}
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("--uri: %w", err)
	}
	opts := &hsm.Options{Logger: log}
	if u.PINSource == "" && f.pinSource != "" {
		ps, err := absPINSource(f.pinSource)
		if err != nil {
			return nil, err
		}
		// Checked here so that a bad --pin-source is reported as such.
		if _, err := hsm.ResolvePINSource(ps, opts); err != nil {
			return nil, fmt.Errorf("--pin-source: %w", err)
		}
		u.PINSource = ps
	}
	return hsm.Open(cmd.Context(), u.String(), opts)
}

func newHSMCommand(g *globals) *cobra.Command {
	f := &hsmFlags{globals: g}
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Keep factory keys in a PKCS#11 token (an HSM, or SoftHSM2)",
		Long: `Keep factory keys in a PKCS#11 token: an HSM in production, SoftHSM2 for
development. Keys are generated inside the token, marked sensitive and
never extractable, and used there; no private key ever leaves it.

Tokens and keys are named by PKCS#11 URIs (RFC 7512):

  pkcs11:token=factory;object=sku-a-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/factory.pin

Without module-path (or module-name), SoftHSM2 is loaded. The PIN comes from
pin-source (or --pin-source): file:/PATH, or env:NAME. A PIN is never
accepted on the command line or in a URI (pin-value is refused), and never
logged.

SoftHSM2 finds its tokens through its configuration file, named by the
SOFTHSM2_CONF variable; --softhsm-conf sets it for one command.`,
		Example: `  rootline hsm init-token --label factory --pin-source file:factory.pin
  rootline hsm keygen --uri 'pkcs11:token=factory;object=sku-a-ca' --pin-source file:factory.pin --alg p256
  rootline hsm list --uri pkcs11:token=factory --pin-source file:factory.pin`,
	}
	cmd.PersistentFlags().StringVar(&f.softhsmConf, "softhsm-conf", "", "SoftHSM2 configuration file (default: $SOFTHSM2_CONF, else init-token's default)")
	cmd.PersistentFlags().StringVar(&f.pinSource, "pin-source", "", "where the user PIN is, when the URI has no pin-source: file:PATH or env:NAME")
	cmd.AddCommand(
		newHSMInitTokenCommand(f),
		newHSMKeygenCommand(f),
		newHSMListCommand(f),
	)
	return cmd
}

func newHSMInitTokenCommand(f *hsmFlags) *cobra.Command {
	var label, dir, module, soPINSource string
	cmd := &cobra.Command{
		Use:   "init-token --label LABEL --pin-source SOURCE [--dir DIR]",
		Short: "Create a SoftHSM2 token for development",
		Long: `Create a SoftHSM2 token for development and tests. The token lives in
DIR/tokens, and DIR/softhsm2.conf points SoftHSM2 at it: other commands
(and other PKCS#11 tools) use it with SOFTHSM2_CONF=DIR/softhsm2.conf,
which rootline also picks up by itself when DIR is the default.

The user PIN is read from --pin-source and handed to SoftHSM2 through the
PKCS#11 API (C_InitToken, C_InitPIN), never through a command line. The
Security Officer PIN comes from --so-pin-source, or is random and
forgotten: a development token needs no SO (make a new token instead).

Only SoftHSM2 is accepted: a production HSM is initialised by its own
ceremony.`,
		Example: `  rootline hsm init-token --label factory --pin-source file:factory.pin
  FACTORY_PIN=… rootline hsm init-token --label factory --pin-source env:FACTORY_PIN --dir ./softhsm`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if label == "" {
				return errors.New("--label is required")
			}
			if f.pinSource == "" {
				return errors.New("--pin-source is required (file:PATH or env:NAME)")
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			if dir == "" {
				if dir, err = defaultSoftHSMDir(); err != nil {
					return err
				}
			}
			if dir, err = filepath.Abs(dir); err != nil {
				return err
			}
			tokens := filepath.Join(dir, "tokens")
			if err := os.MkdirAll(tokens, 0o700); err != nil {
				return err
			}
			conf := filepath.Join(dir, "softhsm2.conf")
			if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
				if err := os.WriteFile(conf, []byte(softHSMConfig(tokens)), 0o600); err != nil {
					return err
				}
			}
			if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
				return err
			}
			opts := &hsm.Options{Logger: log}
			ps, err := absPINSource(f.pinSource)
			if err != nil {
				return err
			}
			pin, err := hsm.ResolvePINSource(ps, opts)
			if err != nil {
				return fmt.Errorf("--pin-source: %w", err)
			}
			req := &hsm.InitTokenRequest{ModulePath: module, Label: label, PIN: pin, Logger: log}
			if soPINSource != "" {
				so, err := absPINSource(soPINSource)
				if err != nil {
					return err
				}
				if req.SOPIN, err = hsm.ResolvePINSource(so, opts); err != nil {
					return fmt.Errorf("--so-pin-source: %w", err)
				}
			}
			u, err := hsm.InitToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			u.PINSource = ps
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "token:  %s\nserial: %s\nmodule: %s\nconfig: %s\nuri:    %s\n", u.Token, u.Serial, u.ModulePath, conf, u)
			fmt.Fprintf(cmd.ErrOrStderr(), "Other PKCS#11 tools find this token with:\n  export SOFTHSM2_CONF=%s\n", conf)
			return nil
		},
	}
	cmd.Flags().StringVar(&label, "label", "", "token label, 1 to 32 bytes (required)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the token and its softhsm2.conf (default $XDG_DATA_HOME/rootline/softhsm)")
	cmd.Flags().StringVar(&module, "module", "", "path of SoftHSM2's PKCS#11 module (default: found)")
	cmd.Flags().StringVar(&soPINSource, "so-pin-source", "", "where the Security Officer PIN is (default: random, forgotten)")
	return cmd
}

func softHSMConfig(tokenDir string) string {
	return "# Written by rootline hsm init-token.\n" +
		"directories.tokendir = " + tokenDir + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n"
}

func newHSMKeygenCommand(f *hsmFlags) *cobra.Command {
	var uri, alg string
	cmd := &cobra.Command{
		Use:   "keygen --uri URI --alg ALG",
		Short: "Generate a key pair inside the token",
		Long: `Generate a key pair inside the token named by --uri, labelled with the
URI's object attribute. The private key is created sensitive and never
extractable, with a random 128-bit CKA_ID; a label the token has already is
refused. The command prints the key's URI (with id=, which names it for
good) and its public key (PEM).`,
		Example: `  rootline hsm keygen --uri 'pkcs11:token=factory;object=sku-a-ca' --pin-source file:factory.pin --alg p256`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := hsm.ParseAlgorithm(alg)
			if err != nil {
				return fmt.Errorf("--alg: %w", err)
			}
			u, err := hsm.ParseURI(uri)
			if err != nil {
				return fmt.Errorf("--uri: %w", err)
			}
			if u.Object == "" {
				return errors.New("--uri: give the new key's label as object=LABEL")
			}
			if len(u.ID) > 0 || (u.Type != "" && u.Type != "private") {
				return errors.New("--uri: id= and type= are chosen by keygen; give only object=")
			}
			m, err := f.open(cmd, uri)
			if err != nil {
				return err
			}
			defer m.Close()
			pub, ku, err := m.CreateKey(cmd.Context(), &hsm.CreateKeyRequest{Label: u.Object, Algorithm: a})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "uri:       %s\nalgorithm: %s\nid:        %s\n", ku, a, hex.EncodeToString(ku.ID))
			return writePublicPEM(w, pub)
		},
	}
	cmd.Flags().StringVar(&uri, "uri", "", "PKCS#11 URI of the token, with object=LABEL (required)")
	cmd.Flags().StringVar(&alg, "alg", "p256", "algorithm: p256, p384 or ed25519")
	return cmd
}

func newHSMListCommand(f *hsmFlags) *cobra.Command {
	var uri string
	cmd := &cobra.Command{
		Use:   "list --uri URI",
		Short: "List the private keys of a token",
		Long: `List the private keys of the token named by --uri, with their algorithm,
CKA_ID and protection as the token reports it: "sensitive" (the token will
not reveal the key), "always-sensitive", "never-extractable" (it was never
allowed out, even wrapped). A key lacking any of these is shown with
"EXTRACTABLE" or "NOT-SENSITIVE".`,
		Example: `  rootline hsm list --uri pkcs11:token=factory --pin-source file:factory.pin`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := f.open(cmd, uri)
			if err != nil {
				return err
			}
			defer m.Close()
			keys, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%-24s %-8s %-32s %s\n", "LABEL", "ALG", "ID", "ACCESS")
			for _, k := range keys {
				alg := k.Algorithm.String()
				if k.Algorithm == hsm.AlgorithmUnknown {
					alg = "other"
				}
				fmt.Fprintf(w, "%-24s %-8s %-32s %s\n", k.Label, alg, hex.EncodeToString(k.ID), access(k))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&uri, "uri", "", "PKCS#11 URI of the token (required)")
	return cmd
}

func access(k hsm.KeyInfo) string {
	var a []string
	if k.Sensitive {
		a = append(a, "sensitive")
	} else {
		a = append(a, "NOT-SENSITIVE")
	}
	if k.AlwaysSensitive {
		a = append(a, "always-sensitive")
	}
	if k.Extractable {
		a = append(a, "EXTRACTABLE")
	}
	if k.NeverExtractable {
		a = append(a, "never-extractable")
	}
	return strings.Join(a, ",")
}
