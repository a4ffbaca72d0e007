package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
)

// loadProductPolicies builds the products the service configured by cfg
// provisions, as serve provision does (the products of the reference values
// file, each with its intermediate and the root from the CA directory), but
// without opening any key: only certificates are read.
func loadProductPolicies(cfg *serveConfig) (map[string]*provision.ProductPolicy, error) {
	b, err := readFileLimited(cfg.ReferenceValues, maxConfigFile)
	if err != nil {
		return nil, err
	}
	refs, err := parseReferenceValues(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.ReferenceValues, err)
	}
	caCfg, err := loadCAConfig(cfg.CADir)
	if err != nil {
		return nil, err
	}
	root, err := readCert(cfg.CADir, caCfg.Root.Certificate)
	if err != nil {
		return nil, err
	}
	products := map[string]*provision.ProductPolicy{}
	for _, p := range caCfg.Products {
		if refs[p.Name] == nil {
			continue
		}
		c, err := readCert(cfg.CADir, p.Certificate)
		if err != nil {
			return nil, err
		}
		hw, _ := parseOID(p.HWType) // checked by Validate
		products[p.Name] = &provision.ProductPolicy{
			HWType: hw, Chain: []*x509.Certificate{c, root}, ReferenceValues: refs[p.Name],
		}
	}
	for n := range refs {
		if products[n] == nil {
			return nil, fmt.Errorf("%s: product %q is not one of the CA's", cfg.ReferenceValues, n)
		}
	}
	return products, nil
}

// isPostgresDSN reports whether a registry setting is a PostgreSQL URL
// rather than a SQLite file.
func isPostgresDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// openServiceRegistry opens the registry a setting names: a PostgreSQL URL
// (postgres://…, shared by replicas and sites) or a SQLite file, created if
// missing.
func openServiceRegistry(ctx context.Context, setting string) (registry.Registry, error) {
	if isPostgresDSN(setting) {
		return registry.OpenPostgres(ctx, &registry.PostgresConfig{DSN: setting})
	}
	return registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: setting})
}

// openRegistry opens the registry of cfg, which must exist: these commands
// read a service's registry, they never create one.
func openRegistry(cmd *cobra.Command, cfg *serveConfig) (registry.Registry, error) {
	if !isPostgresDSN(cfg.Registry) {
		if _, err := os.Stat(cfg.Registry); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	return openServiceRegistry(cmd.Context(), cfg.Registry)
}

func newRegistryCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Read the provisioning service's device registry",
	}
	cmd.AddCommand(newRegistryExportCommand(g), newRegistryIncidentsCommand(g))
	return cmd
}

func newRegistryExportCommand(g *globals) *cobra.Command {
	var configPath, out, product string
	var completeOnly bool
	cmd := &cobra.Command{
		Use:   "export --config FILE --out devices.json",
		Short: "Export the provisioned devices and reference values for the attestation verifier",
		Long: `Write the registry export of the provisioning service configured by FILE
(the configuration of rootline serve provision): every device whose IDevID
is issued, with its UEID, product, state and certificate chain (IDevID,
intermediate, root), and every product's reference values. The format is
described in package provision/export (version 1, JSON). No key is opened:
only the CA's certificates and the registry are read.

--out - writes to standard output; otherwise the file is replaced
atomically.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd)
			if err != nil {
				return err
			}
			if out == "" {
				return errors.New("--out FILE is required (- for standard output)")
			}
			cfg, err := loadServeConfig(configPath)
			if err != nil {
				return err
			}
			products, err := loadProductPolicies(cfg)
			if err != nil {
				return err
			}
			reg, err := openRegistry(cmd, cfg)
			if err != nil {
				return err
			}
			defer reg.Close()
			opts := &export.Options{Product: product, CompleteOnly: completeOnly}
			if out == "-" {
				return export.Write(cmd.Context(), cmd.OutOrStdout(), reg, products, opts)
			}
			if err := writeFileAtomic(out, 0o644, func(w io.Writer) error {
				return export.Write(cmd.Context(), w, reg, products, opts)
			}); err != nil {
				return err
			}
			log.Info("registry exported", "out", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the provisioning service's configuration file (required)")
	cmd.Flags().StringVar(&out, "out", "", "output file, - for standard output (required)")
	cmd.Flags().StringVar(&product, "product", "", "export only this product")
	cmd.Flags().BoolVar(&completeOnly, "complete-only", false, "leave out devices whose station has not confirmed")
	return cmd
}

// writeFileAtomic streams into a temporary file next to path, syncs it and
// renames it over path: a failure leaves path as it was.
func writeFileAtomic(path string, perm os.FileMode, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

func newRegistryIncidentsCommand(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "incidents --config FILE",
		Short: "List clone incidents: known UEIDs presented with another key",
		Long: `List the clone incidents the registry recorded, oldest first: each time a
station presented a known UEID with another DeviceID key. The keys are
shown as the first bytes of their SHA-256 (hex) of their DER
SubjectPublicKeyInfo.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.logger(cmd); err != nil {
				return err
			}
			cfg, err := loadServeConfig(configPath)
			if err != nil {
				return err
			}
			reg, err := openRegistry(cmd, cfg)
			if err != nil {
				return err
			}
			defer reg.Close()
			ins, err := reg.Incidents(cmd.Context())
			if err != nil {
				return err
			}
			return printIncidents(cmd.OutOrStdout(), ins)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the provisioning service's configuration file (required)")
	return cmd
}

func printIncidents(w io.Writer, ins []*registry.Incident) error {
	if len(ins) == 0 {
		_, err := fmt.Fprintln(w, "no clone incident")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tUEID\tPRODUCT\tLOT\tSTATION\tKNOWN KEY\tSEEN KEY")
	for _, in := range ins {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Time.UTC().Format(time.RFC3339),
			hex.EncodeToString(in.UEID), cell(in.Product), cell(in.Lot), cell(in.Station), keyID(in.KnownKey), keyID(in.SeenKey))
	}
	return tw.Flush()
}

// cell quotes an untrusted name (product and lot come from stations) that
// would break the table or the terminal.
func cell(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) || unicode.IsSpace(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// keyID is a short name of a DER public key: its SHA-256, 8 bytes, hex.
func keyID(spki []byte) string {
	h := sha256.Sum256(spki)
	return hex.EncodeToString(h[:8])
}
