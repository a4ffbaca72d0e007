package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/soft"
)

// caConfigFile is the CA's configuration inside its --dir.
const caConfigFile = "ca.json"

// caConfig is DIR/ca.json: the CA's certificates (PEM files in DIR) and
// the PKCS#11 URIs of its keys. It never holds a PIN: each URI's
// pin-source says where the PIN is.
type caConfig struct {
	Version      int         `json:"version"`
	Organization string      `json:"organization,omitempty"`
	Root         caKeyCert   `json:"root"`
	Products     []caProduct `json:"products"`
	Stations     *caKeyCert  `json:"stations,omitempty"`
	// Revocations is the revocation store's file (ca.FileStore).
	Revocations string `json:"revocations"`
	// CRLValidity is nextUpdate - thisUpdate of the CRLs ("168h").
	CRLValidity string `json:"crlValidity,omitempty"`
}

type caKeyCert struct {
	Certificate string `json:"certificate"` // PEM file, relative to DIR
	Key         string `json:"key"`         // pkcs11: URI
}

type caProduct struct {
	Name   string `json:"name"`
	HWType string `json:"hwType"` // dotted OID
	caKeyCert
}

// Validate reports whether c is usable: a version this program reads, key
// URIs that parse and name a key, file names inside DIR, products with
// names and hwTypes, a CRL validity of an hour or more.
func (c *caConfig) Validate() error {
	if c.Version != 1 {
		return fmt.Errorf("%s: version %d, want 1", caConfigFile, c.Version)
	}
	check := func(what string, kc *caKeyCert) error {
		if err := checkLocalFile(kc.Certificate); err != nil {
			return fmt.Errorf("%s: %s certificate: %w", caConfigFile, what, err)
		}
		u, err := hsm.ParseURI(kc.Key)
		if err != nil {
			return fmt.Errorf("%s: %s key: %w", caConfigFile, what, err)
		}
		if u.Object == "" && len(u.ID) == 0 {
			return fmt.Errorf("%s: %s key URI names no object or id", caConfigFile, what)
		}
		return nil
	}
	if err := check("root", &c.Root); err != nil {
		return err
	}
	if len(c.Products) == 0 {
		return fmt.Errorf("%s: no products", caConfigFile)
	}
	for i := range c.Products {
		p := &c.Products[i]
		if !validName(p.Name) || p.Name == ca.StationsIssuer {
			return fmt.Errorf("%s: product name %q: use 1 to %d letters, digits, '.', '-', '_' (and not %q)", caConfigFile, p.Name, ca.MaxNameLen, ca.StationsIssuer)
		}
		if slices.ContainsFunc(c.Products[:i], func(q caProduct) bool { return q.Name == p.Name }) {
			return fmt.Errorf("%s: product %s listed twice", caConfigFile, p.Name)
		}
		if _, err := parseOID(p.HWType); err != nil {
			return fmt.Errorf("%s: product %s: %w", caConfigFile, p.Name, err)
		}
		if err := check("product "+p.Name, &p.caKeyCert); err != nil {
			return err
		}
	}
	if c.Stations != nil {
		if err := check("stations", c.Stations); err != nil {
			return err
		}
	}
	if err := checkLocalFile(c.Revocations); err != nil {
		return fmt.Errorf("%s: revocations: %w", caConfigFile, err)
	}
	if c.CRLValidity != "" {
		d, err := time.ParseDuration(c.CRLValidity)
		if err != nil || d < time.Hour {
			return fmt.Errorf("%s: crlValidity %q: want a duration of an hour or more", caConfigFile, c.CRLValidity)
		}
	}
	return nil
}

// checkLocalFile accepts a plain file name, which stays inside DIR.
func checkLocalFile(name string) error {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return fmt.Errorf("%q is not a file name inside the CA directory", name)
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > ca.MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || i > 0 && strings.IndexByte(".-_", c) >= 0) {
			return false
		}
	}
	return true
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 64 {
		return nil, fmt.Errorf("hwType %q is not a dotted OID", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 31)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("hwType %q is not a dotted OID", s)
		}
		oid[i] = int(n)
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("hwType %q is not an OID (X.660: the first arc is 0, 1 or 2)", s)
	}
	return oid, nil
}

// maxCAFile bounds what is read of the CA's files and of a CSR.
const maxCAFile = 1 << 20

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCAFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxCAFile)
	}
	return b, nil
}

func loadCAConfig(dir string) (*caConfig, error) {
	if dir == "" {
		return nil, errors.New("--dir DIR is required")
	}
	b, err := readBounded(filepath.Join(dir, caConfigFile))
	if err != nil {
		return nil, fmt.Errorf("no CA in %s: %w", dir, err)
	}
	var c caConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, caConfigFile), err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *caConfig) save(dir string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, caConfigFile), append(b, '\n'), 0o600)
}

func readCert(dir, name string) (*x509.Certificate, error) {
	b, err := readBounded(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(b)
	if p == nil || p.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", name)
	}
	return x509.ParseCertificate(p.Bytes)
}

func writeCert(dir, name string, c *x509.Certificate) error {
	return atomicfile.Write(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644)
}

// keyring opens PKCS#11 tokens once each and hands out signers.
type keyring struct {
	log     *slog.Logger
	modules map[string]*hsm.Module // by the URI of the token
}

func newKeyring(log *slog.Logger) *keyring {
	return &keyring{log: log, modules: map[string]*hsm.Module{}}
}

func (k *keyring) Close() {
	for _, m := range k.modules {
		m.Close()
	}
}

func (k *keyring) module(ctx context.Context, uri string) (*hsm.Module, *hsm.URI, error) {
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return nil, nil, err
	}
	t := u.Clone()
	t.Object, t.ID, t.Type = "", nil, ""
	key := t.String()
	if m := k.modules[key]; m != nil {
		return m, u, nil
	}
	m, err := hsm.Open(ctx, uri, &hsm.Options{Logger: k.log})
	if err != nil {
		return nil, nil, err
	}
	k.modules[key] = m
	return m, u, nil
}

// signer returns the signer of the key uri names.
func (k *keyring) signer(ctx context.Context, what, uri string) (crypto.Signer, error) {
	m, _, err := k.module(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("the %s key (%s): %w", what, uri, err)
	}
	s, err := m.Signer(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("the %s key (%s): %w", what, uri, err)
	}
	return s, nil
}

// create generates a key labelled as uri's object, and returns its signer
// and its URI (with the id the token gave it, and uri's query).
func (k *keyring) create(ctx context.Context, what, uri string, alg hsm.Algorithm) (crypto.Signer, string, error) {
	m, u, err := k.module(ctx, uri)
	if err != nil {
		return nil, "", fmt.Errorf("the %s key (%s): %w", what, uri, err)
	}
	if u.Object == "" {
		return nil, "", fmt.Errorf("the %s key URI %s has no object= label for the new key", what, uri)
	}
	_, ku, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: u.Object, Algorithm: alg})
	if err != nil {
		return nil, "", fmt.Errorf("creating the %s key (%s): %w", what, uri, err)
	}
	ku.ModulePath, ku.ModuleName, ku.PINSource, ku.MaxSessions = u.ModulePath, u.ModuleName, u.PINSource, u.MaxSessions
	s, err := m.Signer(ctx, ku.String())
	if err != nil {
		return nil, "", fmt.Errorf("the new %s key: %w", what, err)
	}
	return s, ku.String(), nil
}

// caFlags are the flags of every ca subcommand.
type caFlags struct {
	*globals
}

func newCACommand(g *globals) *cobra.Command {
	f := &caFlags{globals: g}
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Run the device certificate authority: ceremony, issuance, revocation, CRLs",
		Long: `Run rootline's device certificate authority (package ca): an offline root,
one online intermediate per product, and the certificate profiles of the
factory (IEEE 802.1AR IDevID), the verifier (24-hour operational
certificates) and the factory stations.

Keys live in PKCS#11 tokens and are named by RFC 7512 URIs, with the PIN's
location in pin-source (never the PIN itself):

  pkcs11:token=factory;object=root-ca?pin-source=file:/run/factory.pin

The CA's state lives in one directory: ca.json (the key URIs), the
certificates as PEM, and revocations.json.`,
	}
	cmd.AddCommand(
		newCAInitCommand(f),
		newCAAddProductCommand(f),
		newCAIssueCommand(f),
		newCARevokeCommand(f),
		newCACRLCommand(f),
		newCADemoCommand(f),
	)
	return cmd
}

// ceremonyFlags are the flags of the commands that sign with the root.
type ceremonyFlags struct {
	rootKey, interKey, product, hwType string
	generate                           bool
	rootAlg, interAlg                  string
}

func (c *ceremonyFlags) addIntermediateFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.rootKey, "root-key", "", "PKCS#11 URI of the root key (required)")
	cmd.Flags().StringVar(&c.product, "product", "", "name of the product (required)")
	cmd.Flags().StringVar(&c.hwType, "hwtype", "", "the product's hardware type OID, under an arc you own (required)")
	cmd.Flags().StringVar(&c.interKey, "intermediate-key", "", "PKCS#11 URI of the product's intermediate key (required)")
	cmd.Flags().BoolVar(&c.generate, "generate", false, "generate the keys in the tokens first, labelled with the URIs' object=")
	cmd.Flags().StringVar(&c.interAlg, "alg", "p256", "algorithm of generated intermediate keys: p256, p384 or ed25519")
}

func (c *ceremonyFlags) check() (asn1.ObjectIdentifier, error) {
	switch {
	case c.rootKey == "":
		return nil, errors.New("--root-key URI is required")
	case c.interKey == "":
		return nil, errors.New("--intermediate-key URI is required")
	case !validName(c.product) || c.product == ca.StationsIssuer:
		return nil, fmt.Errorf("--product %q: use 1 to %d letters, digits, '.', '-', '_'", c.product, ca.MaxNameLen)
	case c.hwType == "":
		return nil, errors.New("--hwtype OID is required (for tests and demos, 1.3.6.1.4.1.32473.x is the documentation arc of RFC 5612)")
	}
	return parseOID(c.hwType)
}

// intermediate makes (or opens) an intermediate key and has the root sign
// its certificate.
func intermediate(ctx context.Context, kr *keyring, root *x509.Certificate, rootKey crypto.Signer, what, uri string, generate bool, alg hsm.Algorithm, subject pkix.Name) (*x509.Certificate, string, error) {
	var s crypto.Signer
	var err error
	if generate {
		s, uri, err = kr.create(ctx, what, uri, alg)
	} else {
		s, err = kr.signer(ctx, what, uri)
	}
	if err != nil {
		return nil, "", err
	}
	c, err := ca.NewIntermediate(ctx, root, rootKey, s.Public(), subject, nil)
	if err != nil {
		return nil, "", err
	}
	return c, uri, nil
}

func fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

func printCert(w io.Writer, role string, c *x509.Certificate, keyURI string) {
	fmt.Fprintf(w, "%s:\n  subject:     %s\n  serial:      %s\n  not after:   %s\n  sha256:      %s\n  key:         %s\n",
		role, c.Subject, ca.Hex(c.SerialNumber), c.NotAfter.UTC().Format(time.RFC3339), fingerprint(c), keyURI)
}

// initParams are what "ca init" needs.
type initParams struct {
	out, org, rootName            string
	rootKey, interKey, stationKey string // PKCS#11 URIs
	product                       string
	hwType                        asn1.ObjectIdentifier
	generate                      bool
	rootAlg, interAlg             hsm.Algorithm
}

type initResult struct {
	cfg                   *caConfig
	root, inter, stations *x509.Certificate
}

func (r *initResult) print(w io.Writer) {
	printCert(w, "root", r.root, r.cfg.Root.Key)
	printCert(w, "intermediate "+r.cfg.Products[0].Name, r.inter, r.cfg.Products[0].Key)
	if r.stations != nil {
		printCert(w, "intermediate stations", r.stations, r.cfg.Stations.Key)
	}
}

// caInit is the root ceremony of "ca init": keys, root, intermediates, and
// the CA directory, written only once everything is signed.
func caInit(ctx context.Context, kr *keyring, p *initParams) (*initResult, error) {
	if p.out == "" {
		return nil, errors.New("--out DIR is required")
	}
	if _, err := os.Stat(filepath.Join(p.out, caConfigFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a CA (%s)", p.out, caConfigFile)
	}
	var rootKey crypto.Signer
	var err error
	rootURI := p.rootKey
	if p.generate {
		rootKey, rootURI, err = kr.create(ctx, "root", p.rootKey, p.rootAlg)
	} else {
		rootKey, err = kr.signer(ctx, "root", p.rootKey)
	}
	if err != nil {
		return nil, err
	}
	name := func(cn string) pkix.Name {
		n := pkix.Name{CommonName: cn}
		if p.org != "" {
			n.Organization = []string{p.org}
		}
		return n
	}
	rootName := p.rootName
	if rootName == "" {
		rootName = strings.TrimSpace(p.org + " Device Root CA")
	}
	r := &initResult{}
	if r.root, err = ca.NewRoot(ctx, rootKey, name(rootName), nil); err != nil {
		return nil, err
	}
	inter, interURI, err := intermediate(ctx, kr, r.root, rootKey, "intermediate", p.interKey, p.generate, p.interAlg, name(p.product+" Issuing CA"))
	if err != nil {
		return nil, err
	}
	r.inter = inter
	r.cfg = &caConfig{
		Version:      1,
		Organization: p.org,
		Root:         caKeyCert{Certificate: "root.pem", Key: rootURI},
		Products:     []caProduct{{Name: p.product, HWType: p.hwType.String(), caKeyCert: caKeyCert{Certificate: p.product + ".pem", Key: interURI}}},
		Revocations:  "revocations.json",
	}
	if p.stationKey != "" {
		var uri string
		r.stations, uri, err = intermediate(ctx, kr, r.root, rootKey, "stations", p.stationKey, p.generate, p.interAlg, name("Stations Issuing CA"))
		if err != nil {
			return nil, err
		}
		r.cfg.Stations = &caKeyCert{Certificate: "stations.pem", Key: uri}
	}
	if err := r.cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.out, 0o700); err != nil {
		return nil, err
	}
	if err := writeCert(p.out, "root.pem", r.root); err != nil {
		return nil, err
	}
	if err := writeCert(p.out, r.cfg.Products[0].Certificate, inter); err != nil {
		return nil, err
	}
	if r.stations != nil {
		if err := writeCert(p.out, "stations.pem", r.stations); err != nil {
			return nil, err
		}
	}
	if _, err := ca.OpenFileStore(filepath.Join(p.out, r.cfg.Revocations)); err != nil {
		return nil, err
	}
	// ca.json last: a directory without it holds no CA, and init may run
	// again.
	if err := r.cfg.save(p.out); err != nil {
		return nil, err
	}
	return r, nil
}

func newCAInitCommand(f *caFlags) *cobra.Command {
	var (
		out, org, rootName, stationKey string
		c                              ceremonyFlags
	)
	cmd := &cobra.Command{
		Use:   "init --out DIR --root-key URI --product NAME --hwtype OID --intermediate-key URI",
		Short: "The root ceremony: a self-signed root and a product's intermediate, signed in the HSM",
		Long: `Make the CA hierarchy in a new directory: the self-signed root certificate
(CA, pathLenConstraint 1, notAfter 99991231235959Z) and the first product's
intermediate (CA, pathLenConstraint 0), both signed by the root key inside
its token, and optionally the intermediate of the factory stations.

With --generate the keys are created in the tokens first (non-extractable,
labelled with the URIs' object=; the root is P-384 unless --root-alg says
otherwise); without it the URIs must name existing keys. The root key is
used only here and in "ca add-product": keep its token offline.

Nothing is written until every certificate is signed. Keys generated
before a failure stay in their tokens: run again without --generate.`,
		Example: `  rootline ca init --out ./ca --generate \
    --root-key 'pkcs11:token=offline;object=root?pin-source=file:/run/offline.pin' \
    --product sku-a --hwtype 1.3.6.1.4.1.32473.1.1 \
    --intermediate-key 'pkcs11:token=factory;object=sku-a?pin-source=file:/run/factory.pin'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hwType, err := c.check()
			if err != nil {
				return err
			}
			p := &initParams{out: out, org: org, rootName: rootName, rootKey: c.rootKey, interKey: c.interKey,
				stationKey: stationKey, product: c.product, hwType: hwType, generate: c.generate}
			if p.rootAlg, err = hsm.ParseAlgorithm(c.rootAlg); err != nil {
				return err
			}
			if p.interAlg, err = hsm.ParseAlgorithm(c.interAlg); err != nil {
				return err
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			kr := newKeyring(log)
			defer kr.Close()
			res, err := caInit(cmd.Context(), kr, p)
			if err != nil {
				return err
			}
			res.print(cmd.OutOrStdout())
			fmt.Fprintf(cmd.OutOrStdout(), "CA written to %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory of the new CA (required)")
	cmd.Flags().StringVar(&org, "organization", "", "organizationName of the CA certificates and of every subject")
	cmd.Flags().StringVar(&rootName, "root-name", "", `commonName of the root (default "<organization> Device Root CA")`)
	cmd.Flags().StringVar(&stationKey, "station-key", "", "PKCS#11 URI of the factory stations' intermediate key (optional)")
	cmd.Flags().StringVar(&c.rootAlg, "root-alg", "p384", "algorithm of a generated root key: p256, p384 or ed25519")
	c.addIntermediateFlags(cmd)
	return cmd
}

func newCAAddProductCommand(f *caFlags) *cobra.Command {
	var (
		dir string
		c   ceremonyFlags
	)
	cmd := &cobra.Command{
		Use:   "add-product --dir DIR --root-key URI --product NAME --hwtype OID --intermediate-key URI",
		Short: "A ceremony with the root: the intermediate of one more product",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := loadCAConfig(dir)
			if err != nil {
				return err
			}
			hwType, err := c.check()
			if err != nil {
				return err
			}
			if slices.ContainsFunc(cfg.Products, func(p caProduct) bool { return p.Name == c.product }) {
				return fmt.Errorf("product %s is in the CA already", c.product)
			}
			interAlg, err := hsm.ParseAlgorithm(c.interAlg)
			if err != nil {
				return err
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			root, err := readCert(dir, cfg.Root.Certificate)
			if err != nil {
				return err
			}
			kr := newKeyring(log)
			defer kr.Close()
			rootKey, err := kr.signer(ctx, "root", c.rootKey)
			if err != nil {
				return err
			}
			var org []string
			if cfg.Organization != "" {
				org = []string{cfg.Organization}
			}
			inter, uri, err := intermediate(ctx, kr, root, rootKey, "intermediate", c.interKey, c.generate, interAlg,
				pkix.Name{Organization: org, CommonName: c.product + " Issuing CA"})
			if err != nil {
				return err
			}
			p := caProduct{Name: c.product, HWType: hwType.String(), caKeyCert: caKeyCert{Certificate: c.product + ".pem", Key: uri}}
			if err := writeCert(dir, p.Certificate, inter); err != nil {
				return err
			}
			cfg.Products = append(cfg.Products, p)
			if err := cfg.save(dir); err != nil {
				return err
			}
			printCert(cmd.OutOrStdout(), "intermediate "+c.product, inter, uri)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the CA (required)")
	c.addIntermediateFlags(cmd)
	return cmd
}

// openLocal builds the local CA of dir, with the keys of the issuing CAs
// named in need only (the others are known, keyless).
func openLocal(ctx context.Context, dir string, cfg *caConfig, kr *keyring, log *slog.Logger, need ...string) (*ca.Local, error) {
	root, err := readCert(dir, cfg.Root.Certificate)
	if err != nil {
		return nil, err
	}
	store, err := ca.OpenFileStore(filepath.Join(dir, cfg.Revocations))
	if err != nil {
		return nil, err
	}
	opts := &ca.LocalOptions{Root: root, Revocations: store, Organization: cfg.Organization, Logger: log}
	if cfg.CRLValidity != "" {
		opts.CRLValidity, _ = time.ParseDuration(cfg.CRLValidity) // checked by Validate
	}
	authority := func(name string, kc *caKeyCert) (ca.Authority, error) {
		c, err := readCert(dir, kc.Certificate)
		if err != nil {
			return ca.Authority{}, err
		}
		a := ca.Authority{Certificate: c}
		if slices.Contains(need, name) {
			if a.Signer, err = kr.signer(ctx, name+" intermediate", kc.Key); err != nil {
				return ca.Authority{}, err
			}
		}
		return a, nil
	}
	for i := range cfg.Products {
		p := &cfg.Products[i]
		a, err := authority(p.Name, &p.caKeyCert)
		if err != nil {
			return nil, err
		}
		hw, _ := parseOID(p.HWType) // checked by Validate
		opts.Products = append(opts.Products, ca.Product{Name: p.Name, HWType: hw, Authority: a})
	}
	if cfg.Stations != nil {
		a, err := authority(ca.StationsIssuer, cfg.Stations)
		if err != nil {
			return nil, err
		}
		opts.Stations = &a
	}
	return ca.NewLocal(opts)
}

// readCSR reads a DER or PEM PKCS#10 request.
func readCSR(path string) ([]byte, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	if p, _ := pem.Decode(b); p != nil {
		if p.Type != "CERTIFICATE REQUEST" && p.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%s: PEM block %q is not a CERTIFICATE REQUEST", path, p.Type)
		}
		return p.Bytes, nil
	}
	return b, nil
}

func newCAIssueCommand(f *caFlags) *cobra.Command {
	var (
		dir, csrPath, profile, product, ueidHex, station, out string
		stationProducts                                       []string
		validity                                              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue --dir DIR --csr FILE --profile idevid|operational|station ...",
		Short: "Issue a certificate from a PKCS#10 request",
		Long: `Check a PKCS#10 request (DER or PEM) against a profile and issue the
certificate with the issuing CA's key: the product's intermediate for
idevid and operational, the stations' intermediate for station. The
request's signature (proof of possession), key type and size, and the
extensions it asks for are checked first; a refused request issues
nothing.

The certificate, then its issuing CA's, are written as PEM to --out (or
standard output); the serial number goes to standard error.`,
		Example: `  rootline ca issue --dir ./ca --csr chip.csr --profile idevid --product sku-a --ueid 01b2c3…
  rootline ca issue --dir ./ca --csr station.csr --profile station --station line-1 --station-product sku-a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := loadCAConfig(dir)
			if err != nil {
				return err
			}
			if csrPath == "" {
				return errors.New("--csr FILE is required")
			}
			csr, err := readCSR(csrPath)
			if err != nil {
				return err
			}
			req := &ca.IssueRequest{CSR: csr, Profile: ca.Profile(profile), Product: product,
				Station: station, Products: stationProducts, Validity: validity}
			if ueidHex != "" {
				if req.UEID, err = hex.DecodeString(ueidHex); err != nil {
					return fmt.Errorf("--ueid: %w", err)
				}
			}
			need := product
			if req.Profile == ca.ProfileStation {
				need = ca.StationsIssuer
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			kr := newKeyring(log)
			defer kr.Close()
			// Check the request before the HSM is opened: a bad request
			// never costs a login.
			hw := ca.Products{}
			for _, p := range cfg.Products {
				hw[p.Name], _ = parseOID(p.HWType)
			}
			if _, err := ca.Check(req, hw); err != nil {
				return err
			}
			l, err := openLocal(ctx, dir, cfg, kr, log, need)
			if err != nil {
				return err
			}
			iss, err := l.Issue(ctx, req)
			if err != nil {
				return err
			}
			var b bytes.Buffer
			for _, c := range append([]*x509.Certificate{iss.Certificate}, iss.Chain[:len(iss.Chain)-1]...) {
				pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
			}
			if out == "" {
				if _, err := cmd.OutOrStdout().Write(b.Bytes()); err != nil {
					return err
				}
			} else if err := atomicfile.Write(out, b.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "issued %s certificate, serial %s\n", req.Profile, ca.Hex(iss.Certificate.SerialNumber))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the CA (required)")
	cmd.Flags().StringVar(&csrPath, "csr", "", "PKCS#10 request, DER or PEM (required)")
	cmd.Flags().StringVar(&profile, "profile", "idevid", "profile: idevid, operational or station")
	cmd.Flags().StringVar(&product, "product", "", "product (idevid, operational)")
	cmd.Flags().StringVar(&ueidHex, "ueid", "", "the device's UEID in hex (idevid, operational)")
	cmd.Flags().StringVar(&station, "station", "", "the station's name (station)")
	cmd.Flags().StringSliceVar(&stationProducts, "station-product", nil, "a product the station may provision (station; repeat or comma-separate)")
	cmd.Flags().DurationVar(&validity, "validity", 0, "lifetime (operational: default 24h, at most 168h; station: default 720h, at most 9528h)")
	cmd.Flags().StringVar(&out, "out", "", "write the PEM chain here instead of standard output")
	return cmd
}

func newCARevokeCommand(f *caFlags) *cobra.Command {
	var (
		dir, serial string
		reason      int
	)
	cmd := &cobra.Command{
		Use:   "revoke --dir DIR --serial HEX [--reason N]",
		Short: "Revoke a certificate by serial number",
		Long: `Record the revocation of a certificate in the CA's revocation store; the next
CRL of every issuing CA lists it. Reasons (RFC 5280, 5.3.1): 0 unspecified,
1 keyCompromise, 3 affiliationChanged, 4 superseded, 5 cessationOfOperation,
9 privilegeWithdrawn. No key is needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadCAConfig(dir)
			if err != nil {
				return err
			}
			n, err := ca.ParseHex(serial)
			if err != nil {
				return fmt.Errorf("--serial: %w", err)
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			kr := newKeyring(log)
			defer kr.Close()
			l, err := openLocal(cmd.Context(), dir, cfg, kr, log)
			if err != nil {
				return err
			}
			if err := l.Revoke(cmd.Context(), n, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (reason %d)\n", ca.Hex(n), reason)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the CA (required)")
	cmd.Flags().StringVar(&serial, "serial", "", "serial number in hex (required)")
	cmd.Flags().IntVar(&reason, "reason", 0, "CRLReason code")
	return cmd
}

func newCACRLCommand(f *caFlags) *cobra.Command {
	var (
		dir, issuer, out string
		asPEM            bool
	)
	cmd := &cobra.Command{
		Use:   "crl --dir DIR [--issuer NAME] --out FILE",
		Short: "Sign a new CRL of an issuing CA",
		Long: `Sign a new CRL (RFC 5280, version 2, with the next CRL number) of an issuing
CA with its key: a product's intermediate, or "stations". --issuer may be
left out when the CA has one product and no stations CA.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadCAConfig(dir)
			if err != nil {
				return err
			}
			if out == "" {
				return errors.New("--out FILE is required")
			}
			if issuer == "" {
				if len(cfg.Products) != 1 || cfg.Stations != nil {
					return fmt.Errorf("--issuer NAME is required: the CA has several issuing CAs")
				}
				issuer = cfg.Products[0].Name
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			kr := newKeyring(log)
			defer kr.Close()
			l, err := openLocal(cmd.Context(), dir, cfg, kr, log, issuer)
			if err != nil {
				return err
			}
			der, err := l.CRLFor(cmd.Context(), issuer)
			if err != nil {
				return err
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				return err
			}
			if asPEM {
				der = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
			}
			if err := atomicfile.Write(out, der, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CRL %s of %s: %d revoked, next update %s\n",
				crl.Number, issuer, len(crl.RevokedCertificateEntries), crl.NextUpdate.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the CA (required)")
	cmd.Flags().StringVar(&issuer, "issuer", "", `issuing CA: a product, or "stations"`)
	cmd.Flags().StringVar(&out, "out", "", "file to write the CRL to (required)")
	cmd.Flags().BoolVar(&asPEM, "pem", false, "write PEM instead of DER")
	return cmd
}

func newCADemoCommand(f *caFlags) *cobra.Command {
	var (
		dir  string
		keep bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Walk through a CA ceremony with SoftHSM2 and the IDevID of an emulated chip",
		Long: `Walk through the device CA, printing each step with the command that does
the same by hand:

  1. a SoftHSM2 token for the factory's keys
  2. the root ceremony: root and product intermediate, keys generated and
     signed inside the token
  3. an emulated chip's CSR, signed by its DICE DeviceID key, with the
     DiceTcbInfo of its firmware
  4. the IDevID, issued with the intermediate key in the token
  5. openssl verify of the IDevID against the root
  6. a forged request, refused

It needs SoftHSM2 and openssl ("make deps" installs them). It runs in a
process of its own: SoftHSM2 reads its configuration once per process.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				d, err := os.MkdirTemp("", "rootline-ca-demo-")
				if err != nil {
					return err
				}
				dir = d
				if !keep {
					defer os.RemoveAll(d)
				}
			}
			log, err := f.logger(cmd)
			if err != nil {
				return err
			}
			return runCADemo(cmd.Context(), cmd.OutOrStdout(), dir, log)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the token, the CA and the chip (default: a temporary one, removed after)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary directory")
	return cmd
}

// runCADemo is the CA walkthrough. It points SOFTHSM2_CONF at a
// configuration in dir (os.Setenv), so it must run before anything else
// in the process loads SoftHSM2.
func runCADemo(ctx context.Context, w io.Writer, dir string, log *slog.Logger) error {
	fmt.Fprintf(w, "rootline CA demo: a device CA with its keys in SoftHSM2, state in %s\n", dir)
	return runCADemoSteps(ctx, &demo{w: w, dir: dir}, log)
}

// runCADemoSteps runs the CA walkthrough's steps, numbered after d's.
func runCADemoSteps(ctx context.Context, d *demo, log *slog.Logger) error {
	w := d.w
	dir, err := filepath.Abs(d.dir) // pin-source and SoftHSM2 want absolute paths
	if err != nil {
		return err
	}
	d.dir = dir
	module, err := hsm.FindSoftHSM()
	if err != nil {
		return fmt.Errorf("the CA demo needs SoftHSM2 (make deps installs it): %w", err)
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		return fmt.Errorf("the CA demo needs openssl (make deps installs it): %w", err)
	}

	const label = "rootline-demo"
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		return err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	var pin [12]byte
	if _, err := rand.Read(pin[:]); err != nil {
		return err
	}
	pinFile := filepath.Join(dir, "user.pin")
	if err := os.WriteFile(pinFile, []byte(hex.EncodeToString(pin[:])+"\n"), 0o600); err != nil {
		return err
	}
	clear(pin[:])
	d.step("A SoftHSM2 token for the factory's keys", "")
	d.say("$ SOFTHSM2_CONF=%s softhsm2-util --init-token --free --label %s --pin $(cat %s)", conf, label, pinFile)
	if _, err := hsm.InitToken(ctx, &hsm.InitTokenRequest{ModulePath: module, Label: label, PIN: &hsm.FilePIN{Path: pinFile}, Logger: log}); err != nil {
		return err
	}
	d.say("token %q in %s, user PIN in %s (mode 0600)", label, tokens, pinFile)

	uri := func(object string) string {
		return "pkcs11:token=" + label + ";object=" + object + "?pin-source=file:" + pinFile
	}
	caDir := filepath.Join(dir, "ca")
	hwType := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1} // RFC 5612's documentation arc
	d.step("The root ceremony: keys made and certificates signed inside the token",
		fmt.Sprintf("ca init --out %s --generate --organization 'Rootline Demo' --product sku-a --hwtype %s --root-key '%s' --intermediate-key '%s'",
			caDir, hwType, uri("root"), uri("sku-a")))
	kr := newKeyring(log)
	defer kr.Close()
	res, err := caInit(ctx, kr, &initParams{out: caDir, org: "Rootline Demo", rootKey: uri("root"), interKey: uri("sku-a"),
		product: "sku-a", hwType: hwType, generate: true, rootAlg: hsm.P384, interAlg: hsm.P256})
	if err != nil {
		return err
	}
	res.print(indent(w))

	chipPath := filepath.Join(dir, chipFile)
	d.step("A chip asks for its IDevID: a CSR signed by its DICE DeviceID key", "device init --state "+dir)
	chip, err := soft.Create(chipPath, &soft.Options{Logger: log})
	if err != nil {
		return err
	}
	defer chip.Close()
	if err := chip.FuseIdentity(ctx); err != nil {
		return err
	}
	id, err := chip.Identity(ctx)
	if err != nil {
		return err
	}
	deviceID, err := chip.Signer(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle)
	if err != nil {
		return err
	}
	fw := sha256.Sum256([]byte("rootline demo test firmware 1.0.0"))
	tcb, err := (&dice.TcbInfo{Vendor: "Rootline", Model: "sku-a", Version: "1.0.0", SVN: 1, HasSVN: true,
		FWIDs: []dice.FWID{{Hash: crypto.SHA256, Digest: fw[:]}}}).Marshal()
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "sku-a chip"},
		ExtraExtensions: []pkix.Extension{{Id: ca.OIDDiceTcbInfo, Value: tcb}},
	}, deviceID)
	if err != nil {
		return err
	}
	csrPath := filepath.Join(dir, "chip.csr")
	if err := os.WriteFile(csrPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), 0o644); err != nil {
		return err
	}
	d.say("UEID %x, DeviceID %s, CSR with its DiceTcbInfo in %s", id.UEID, id.Algorithm, csrPath)

	out := filepath.Join(dir, "idevid.pem")
	d.step("The CA issues the IDevID with the intermediate key in the token",
		fmt.Sprintf("ca issue --dir %s --csr %s --profile idevid --product sku-a --ueid %x --out %s", caDir, csrPath, id.UEID, out))
	cfg, err := loadCAConfig(caDir)
	if err != nil {
		return err
	}
	l, err := openLocal(ctx, caDir, cfg, kr, log, "sku-a")
	if err != nil {
		return err
	}
	req := &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: id.UEID, CSR: csr}
	iss, err := l.Issue(ctx, req)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.Certificate.Raw}), 0o644); err != nil {
		return err
	}
	c := iss.Certificate
	hw, sn, err := ca.HardwareModuleName(c)
	if err != nil {
		return err
	}
	d.say("subject     %s", c.Subject)
	d.say("serial      %s", ca.Hex(c.SerialNumber))
	d.say("not after   %s", c.NotAfter.UTC().Format(time.RFC3339))
	d.say("hw module   hwType %s, hwSerialNum %x", hw, sn)
	d.say("issuer      %s", c.Issuer)

	d.step("openssl verify accepts it, against the root alone", "")
	args := []string{"verify", "-x509_strict", "-CAfile", filepath.Join(caDir, "root.pem"), "-untrusted", filepath.Join(caDir, "sku-a.pem"), out}
	d.say("$ openssl %s", strings.Join(args, " "))
	vout, err := exec.CommandContext(ctx, openssl, args...).CombinedOutput()
	d.say("%s", strings.TrimSpace(string(vout)))
	if err != nil {
		return fmt.Errorf("demo: openssl verify refused the IDevID: %w", err)
	}

	d.step("A forged request (its signature altered) is refused", "ca issue … --csr forged.csr")
	forged := bytes.Clone(csr)
	forged[len(forged)-4] ^= 0x55
	_, err = l.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: id.UEID, CSR: forged})
	return d.refused(err, ca.ErrBadCSRSignature)
}
