package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/hsminject"
	"github.com/rootline/rootline/provision/translog"
)

// serveConfig is the provisioning service's configuration file. Relative
// paths are relative to the file's directory.
type serveConfig struct {
	Version int    `json:"version"`
	Listen  string `json:"listen"`
	TLS     struct {
		Certificate string `json:"certificate"` // PEM chain of the server
		Key         string `json:"key"`         // PEM private key of the server
		// StationCA is the PEM certificate of the stations' issuing CA
		// (not the root).
		StationCA string `json:"stationCA"`
		// VerifierCA, optional, is the PEM certificate of the CA whose
		// client certificates may read the registry export
		// (GET /v1/registry/export): the attestation verifiers'.
		VerifierCA string `json:"verifierCA,omitempty"`
		// StationCRL and VerifierCRL, optional, are the CRL files of the
		// stations CA and the verifiers CA ("rootline ca crl --issuer
		// stations"): read again when they change, and checked on every
		// request, so a revoked station loses access at its next call.
		// Past its nextUpdate a CRL refuses everyone of its CA.
		StationCRL  string `json:"stationCRL,omitempty"`
		VerifierCRL string `json:"verifierCRL,omitempty"`
	} `json:"tls"`
	// Registry is the SQLite database file, or a PostgreSQL URL
	// (postgres://user@host/db?sslmode=verify-full) that several replicas
	// or sites share.
	Registry string `json:"registry"`
	CADir    string `json:"caDir"` // directory of rootline ca init
	Log      struct {
		Dir string `json:"dir"` // directory of the issuance log
		// Exactly one of SigningKey (a note private key file from rootline
		// log keygen, for development) and HSMKey (the PKCS#11 URI of an
		// Ed25519 key, with its pin-source; Name then names the log).
		SigningKey string `json:"signingKey,omitempty"`
		HSMKey     string `json:"hsmKey,omitempty"`
		Name       string `json:"name,omitempty"`
	} `json:"log"`
	// NonceKey is a file holding the nonces' HMAC key, hex, at least 32
	// bytes; replicas share it.
	NonceKey string `json:"nonceKey"`
	// ReferenceValues is the products' reference values file
	// (referenceValues): the service provisions these products.
	ReferenceValues string `json:"referenceValues"`
	// Products, optional, says how the products of the reference values
	// file get their identity; a product not named here is on-chip.
	Products map[string]*productConfig `json:"products,omitempty"`
}

// productConfig is a product's identity settings.
type productConfig struct {
	// Identity is "on-chip" (the chip makes its key; chips on a TPM too)
	// or "injected" (the factory HSM makes it: Injection is required).
	Identity  string           `json:"identity"`
	Injection *injectionConfig `json:"injection,omitempty"`
}

// injectionConfig configures an injected product (provision.InjectionPolicy).
type injectionConfig struct {
	// HSM is the PKCS#11 URI of the token that makes, wraps and destroys
	// the device keys, with its pin-source:
	// pkcs11:token=factory?module-path=...&pin-source=file:/run/factory.pin
	HSM string `json:"hsm"`
	// KeyAlgorithm of the device keys: "p256" (default) or "p384".
	KeyAlgorithm string `json:"keyAlgorithm,omitempty"`
	// KeyName is the key's slot label on the chip (default "idevid").
	KeyName string `json:"keyName,omitempty"`
	// SecretMaster is the PKCS#11 URI of the product master secret (an
	// AES-256 key on the same token); required with Secrets.
	SecretMaster string `json:"secretMaster,omitempty"`
	// Secrets are the names of the per-device secrets derived from
	// SecretMaster and each chip's UEID.
	Secrets []string `json:"secrets,omitempty"`
	// WrapWithTrusted sets CKA_WRAP_WITH_TRUSTED on the device keys, for
	// tokens that can mark a derived key trusted (not SoftHSM2).
	WrapWithTrusted bool `json:"wrapWithTrusted,omitempty"`
}

// maxConfigProducts bounds the products of the configuration file.
const maxConfigProducts = 256

// Validate checks a product's identity settings as far as they can be
// without the HSM; provision.New checks the rest (names of keys and
// secrets).
func (p *productConfig) Validate() error {
	if p == nil {
		return errors.New("null")
	}
	mode, err := provision.ParseIdentityMode(p.Identity)
	if err != nil || p.Identity == "" || p.Identity == "onchip" {
		return fmt.Errorf("identity %q: want on-chip or injected", p.Identity)
	}
	in := p.Injection
	switch {
	case mode == provision.OnChip && in != nil:
		return errors.New("an on-chip identity takes no injection settings")
	case mode == provision.OnChip:
		return nil
	case in == nil:
		return errors.New("an injected identity needs injection settings")
	case in.HSM == "":
		return errors.New("injection.hsm (the PKCS#11 URI of the token) is required")
	}
	if _, err := hsm.ParseURI(in.HSM); err != nil {
		return fmt.Errorf("injection.hsm: %w", err)
	}
	if _, err := injectionAlgorithm(in.KeyAlgorithm); err != nil {
		return err
	}
	if in.SecretMaster != "" {
		if _, err := hsm.ParseURI(in.SecretMaster); err != nil {
			return fmt.Errorf("injection.secretMaster: %w", err)
		}
	}
	if len(in.Secrets) > 0 && in.SecretMaster == "" {
		return errors.New("injection.secrets need injection.secretMaster")
	}
	return nil
}

func injectionAlgorithm(s string) (pluton.Algorithm, error) {
	switch s {
	case "", "p256":
		return pluton.ECDSAP256, nil
	case "p384":
		return pluton.ECDSAP384, nil
	}
	return 0, fmt.Errorf("injection.keyAlgorithm %q: want p256 or p384", s)
}

// applyIdentities sets the identity of the products configured in c:
// every product named must be one of products (those of the reference
// values file); an injected one gets its Injector on the HSM token of its
// settings, opened through kr.
func (c *serveConfig) applyIdentities(ctx context.Context, products map[string]*provision.ProductPolicy, kr *keyring) error {
	for _, name := range slices.Sorted(maps.Keys(c.Products)) {
		pc := c.Products[name]
		policy := products[name]
		if policy == nil {
			return fmt.Errorf("products: %q is not a product of the reference values file", name)
		}
		if pc.Injection == nil {
			continue
		}
		in := pc.Injection
		m, _, err := kr.module(ctx, in.HSM)
		if err != nil {
			return fmt.Errorf("products: %q: injection.hsm: %w", name, err)
		}
		alg, _ := injectionAlgorithm(in.KeyAlgorithm) // checked by Validate
		policy.Identity = provision.Injected
		policy.Injection = &provision.InjectionPolicy{
			Injector:     hsminject.New(m, &hsminject.Options{WrapWithTrusted: in.WrapWithTrusted}),
			KeyAlgorithm: alg, KeyName: in.KeyName, SecretMaster: in.SecretMaster, Secrets: slices.Clone(in.Secrets),
		}
	}
	return nil
}

// Validate reports whether c names everything the service needs.
func (c *serveConfig) Validate() error {
	if c.Version != 1 {
		return fmt.Errorf("version %d, want 1", c.Version)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for _, f := range []struct{ name, v string }{
		{"tls.certificate", c.TLS.Certificate}, {"tls.key", c.TLS.Key}, {"tls.stationCA", c.TLS.StationCA},
		{"registry", c.Registry}, {"caDir", c.CADir}, {"log.dir", c.Log.Dir},
		{"nonceKey", c.NonceKey}, {"referenceValues", c.ReferenceValues},
	} {
		if f.v == "" {
			return fmt.Errorf("%s is required", f.name)
		}
	}
	switch {
	case c.TLS.VerifierCRL != "" && c.TLS.VerifierCA == "":
		return errors.New("tls.verifierCRL needs tls.verifierCA")
	case (c.Log.SigningKey == "") == (c.Log.HSMKey == ""):
		return errors.New("log: give exactly one of signingKey (a file) and hsmKey (a PKCS#11 URI)")
	case c.Log.HSMKey != "" && c.Log.Name == "":
		return errors.New("log.name is required with log.hsmKey")
	case c.Log.HSMKey != "":
		if _, err := hsm.ParseURI(c.Log.HSMKey); err != nil {
			return fmt.Errorf("log.hsmKey: %w", err)
		}
	}
	if len(c.Products) > maxConfigProducts {
		return fmt.Errorf("products: %d, at most %d", len(c.Products), maxConfigProducts)
	}
	for name, p := range c.Products {
		if !validName(name) {
			return fmt.Errorf("products: bad name %q", name)
		}
		if err := p.Validate(); err != nil {
			return fmt.Errorf("products: %q: %w", name, err)
		}
	}
	return nil
}

// resolve makes c's relative paths relative to dir.
func (c *serveConfig) resolve(dir string) {
	paths := []*string{&c.TLS.Certificate, &c.TLS.Key, &c.TLS.StationCA, &c.TLS.VerifierCA, &c.TLS.StationCRL, &c.TLS.VerifierCRL, &c.CADir,
		&c.Log.Dir, &c.Log.SigningKey, &c.NonceKey, &c.ReferenceValues}
	if !isPostgresDSN(c.Registry) {
		paths = append(paths, &c.Registry)
	}
	resolvePaths(dir, paths...)
}

// maxConfigFile bounds the configuration and reference values files.
const maxConfigFile = 1 << 20

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// configFile is a service's configuration file type: strict JSON,
// validated, then its relative paths made relative to its directory.
type configFile[T any] interface {
	*T
	Validate() error
	resolve(dir string)
}

// loadConfig reads, decodes (strictly), validates and resolves a
// configuration file.
func loadConfig[T any, P configFile[T]](path string) (*T, error) {
	if path == "" {
		return nil, errors.New("--config FILE is required")
	}
	b, err := readFileLimited(path, maxConfigFile)
	if err != nil {
		return nil, err
	}
	c := P(new(T))
	if err := decodeStrict(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.resolve(filepath.Dir(path))
	return c, nil
}

// resolvePaths makes the relative paths among paths relative to dir.
func resolvePaths(dir string, paths ...*string) {
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

func loadServeConfig(path string) (*serveConfig, error) { return loadConfig[serveConfig](path) }

// referenceValues is the reference values file: by product, by layer
// ("bootloader", "os", "app"), the accepted digests (hex) and minimum SVN
// of the factory test firmware.
type referenceValues struct {
	Version  int                                  `json:"version"`
	Products map[string]map[string]layerReference `json:"products"`
}

type layerReference struct {
	Digests []string `json:"digests"`
	MinSVN  uint64   `json:"minSVN"`
}

// maxDigests bounds the digests of one layer.
const maxDigests = 64

// parseReferenceValues parses an untrusted reference values file.
func parseReferenceValues(b []byte) (map[string]map[string]provision.LayerReference, error) {
	var rv referenceValues
	if err := decodeStrict(b, &rv); err != nil {
		return nil, err
	}
	if rv.Version != 1 {
		return nil, fmt.Errorf("version %d, want 1", rv.Version)
	}
	if len(rv.Products) == 0 {
		return nil, errors.New("no product")
	}
	out := map[string]map[string]provision.LayerReference{}
	for p, layers := range rv.Products {
		if !validName(p) {
			return nil, fmt.Errorf("product %q: bad name", p)
		}
		if len(layers) == 0 {
			return nil, fmt.Errorf("product %q: no layer", p)
		}
		out[p] = map[string]provision.LayerReference{}
		for l, ref := range layers {
			if !slices.Contains([]string{"bootloader", "os", "app"}, l) {
				return nil, fmt.Errorf("product %q: unknown layer %q", p, l)
			}
			if len(ref.Digests) == 0 || len(ref.Digests) > maxDigests {
				return nil, fmt.Errorf("product %q layer %q: %d digests, want 1 to %d", p, l, len(ref.Digests), maxDigests)
			}
			var lr provision.LayerReference
			lr.MinSVN = ref.MinSVN
			for _, d := range ref.Digests {
				db, err := hex.DecodeString(d)
				if err != nil || len(db) < 32 || len(db) > 64 {
					return nil, fmt.Errorf("product %q layer %q: digest %q is not 32 to 64 bytes of hex", p, l, d)
				}
				lr.Digests = append(lr.Digests, db)
			}
			out[p][l] = lr
		}
	}
	return out, nil
}

func readNonceKey(path string) ([]byte, error) {
	b, err := readFileLimited(path, 1024)
	if err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	clear(b)
	if err != nil || len(k) < 32 {
		clear(k)
		return nil, fmt.Errorf("%s: want at least 32 bytes in hex", path)
	}
	return k, nil
}

func newServeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run rootline's services",
	}
	cmd.AddCommand(newServeProvisionCommand(g), newServeVerifyCommand(g))
	return cmd
}

func newServeProvisionCommand(g *globals) *cobra.Command {
	var configPath, addrFile, registryFlag string
	cmd := &cobra.Command{
		Use:   "provision --config FILE",
		Short: "Serve the factory provisioning API to stations over mutual TLS",
		Long: `Serve the provisioning API until interrupted: TLS 1.3, HTTP/2, client
certificates required. The station API is rootline.provision.v1.ProvisionService
(proto/rootline/provision/v1/provision.proto) served with Connect, so gRPC,
gRPC-Web and Connect clients all work, in binary protobuf or JSON:

  /rootline.provision.v1.ProvisionService/{Nonce,Provision,ProvisionInjected,
                                           ProvisionTPM,Confirm}
                            stations (certificates of tls.stationCA)
  GET /v1/registry/export   the attestation verifiers (certificates of
                            tls.verifierCA, if set): every provisioned device
  GET /healthz, /metrics    health and Prometheus counters

FILE is JSON (relative paths are relative to it):

  {"version": 1, "listen": "0.0.0.0:8443",
   "tls": {"certificate": "server.pem", "key": "server.key", "stationCA": "ca/stations.pem",
           "stationCRL": "stations.crl", "verifierCA": "verifiers-ca.pem"},
   "registry": "registry.db", "caDir": "ca",
   "log": {"dir": "log", "hsmKey": "pkcs11:token=factory;object=log?pin-source=file:/run/factory.pin",
           "name": "log.factory.example"},
   "nonceKey": "nonce.key", "referenceValues": "refs.json",
   "products": {"sku-b": {"identity": "injected", "injection": {
       "hsm": "pkcs11:token=factory?pin-source=file:/run/factory.pin",
       "keyAlgorithm": "p256", "keyName": "idevid",
       "secretMaster": "pkcs11:token=factory;object=sku-b-master;type=secret-key?pin-source=file:/run/factory.pin",
       "secrets": ["join-key"]}}}}

"products" is optional: it sets a product's identity, "on-chip" (the
default, also for chips on a TPM) or "injected": the factory HSM of
injection.hsm (a PKCS#11 token URI) makes each chip's device key, wraps it
for the chip's transport key (keyAlgorithm p256 or p384; keyName is its
slot label on the chip, default idevid) with the per-device secrets named
in "secrets", derived from the AES master key "secretMaster" and the UEID;
the HSM's copy of a key is destroyed once its chip confirms. Each product
named must be one of the reference values file's; stations then use
"rootline station provision --identity injected" for it.

The reference values file names the products served and, per layer, the
factory test firmware's digests (hex) and minimum SVN:

  {"version": 1, "products": {"sku-a": {"bootloader": {"digests": ["..."], "minSVN": 1},
                                        "os": {...}, "app": {...}}}}

"registry" is a SQLite file (created if missing; one service process) or a
PostgreSQL URL, postgres://user@host/db?sslmode=verify-full, for several
replicas or sites sharing one registry (--registry overrides it; a password
belongs in PGPASSFILE or ~/.pgpass, not the URL). The issuance log has one
writer: replicas sharing a registry each keep their own log directory.

The CA's keys are opened from their PKCS#11 URIs in caDir/ca.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log, err := g.logger(cmd)
			if err != nil {
				return err
			}
			cfg, err := loadServeConfig(configPath)
			if err != nil {
				return err
			}
			// The products served are those of the reference values file;
			// only their CA keys are opened.
			products, err := loadProductPolicies(cfg)
			if err != nil {
				return err
			}
			kr := newKeyring(log)
			defer kr.Close()
			if err := cfg.applyIdentities(ctx, products, kr); err != nil {
				return err
			}
			names := slices.Sorted(maps.Keys(products))
			caCfg, err := loadCAConfig(cfg.CADir)
			if err != nil {
				return err
			}
			local, err := openLocal(ctx, cfg.CADir, caCfg, kr, log, names...)
			if err != nil {
				return err
			}

			var signer note.Signer
			if cfg.Log.HSMKey != "" {
				key, err := kr.signer(ctx, "issuance log", cfg.Log.HSMKey)
				if err != nil {
					return err
				}
				ts, err := translog.NewSigner(cfg.Log.Name, key)
				if err != nil {
					return fmt.Errorf("log.hsmKey: %w", err)
				}
				log.Info("issuance log key in the HSM", "verifier_key", ts.VerifierKey())
				signer = ts
			} else {
				kb, err := readFileLimited(cfg.Log.SigningKey, 1024)
				if err != nil {
					return fmt.Errorf("log.signingKey: %w", err)
				}
				s, err := note.NewSigner(strings.TrimSpace(string(kb)))
				clear(kb)
				if err != nil {
					return fmt.Errorf("log.signingKey: %w", err)
				}
				signer = s
			}
			st, err := openLogStore(cfg.Log.Dir)
			if err != nil {
				return err
			}
			defer st.Close()
			tl, err := translog.New(st, signer)
			if err != nil {
				return err
			}
			if registryFlag != "" {
				cfg.Registry = registryFlag
			}
			reg, err := openServiceRegistry(ctx, cfg.Registry)
			if err != nil {
				return err
			}
			defer reg.Close()
			nonceKey, err := readNonceKey(cfg.NonceKey)
			if err != nil {
				return err
			}
			svc, err := provision.New(&provision.Config{
				Registry: reg, Issuer: local, Log: tl, Products: products, NonceKey: nonceKey, Logger: log,
			})
			clear(nonceKey)
			if err != nil {
				return err
			}

			cert, err := tls.LoadX509KeyPair(cfg.TLS.Certificate, cfg.TLS.Key)
			if err != nil {
				return fmt.Errorf("tls: %w", err)
			}
			pool, err := readCertPool(cfg.TLS.StationCA)
			if err != nil {
				return fmt.Errorf("tls.stationCA: %w", err)
			}
			sc := &api.ServerConfig{
				Listen: cfg.Listen, Certificate: cert, StationCA: pool, Logger: log,
				Ready: func(a net.Addr) {
					log.Info("provision: serving", "addr", a.String(), "products", names)
					if addrFile != "" {
						if err := atomicfile.Write(addrFile, []byte(a.String()+"\n"), 0o644); err != nil {
							log.Error("provision: --addr-file", "err", err)
						}
					}
				},
			}
			if cfg.TLS.VerifierCA != "" {
				if sc.VerifierCA, err = readCertPool(cfg.TLS.VerifierCA); err != nil {
					return fmt.Errorf("tls.verifierCA: %w", err)
				}
				sc.Export = export.Handler(reg, products, log)
			}
			crls := map[string]*x509.Certificate{}
			for _, c := range []struct{ name, crl, ca string }{
				{"tls.stationCRL", cfg.TLS.StationCRL, cfg.TLS.StationCA},
				{"tls.verifierCRL", cfg.TLS.VerifierCRL, cfg.TLS.VerifierCA},
			} {
				if c.crl == "" {
					continue
				}
				certs, err := readCertificates(c.ca)
				if err != nil || len(certs) != 1 {
					return fmt.Errorf("%s: its CA file must hold exactly the one CA certificate that signs it (%v)", c.name, err)
				}
				crls[c.crl] = certs[0]
			}
			if len(crls) > 0 {
				if sc.Revocation, err = api.NewCRLFile(nil, crls); err != nil {
					return err
				}
			}
			return api.Serve(ctx, sc, api.NewHandler(svc, log))
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (required)")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the address listened on to this file (for port 0)")
	cmd.Flags().StringVar(&registryFlag, "registry", "", "registry: a SQLite file or a postgres:// URL (overrides the configuration file's)")
	return cmd
}
