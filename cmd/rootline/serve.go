package main

import (
	"bytes"
	"crypto/tls"
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
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	"github.com/rootline/rootline/provision/export"
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
	case (c.Log.SigningKey == "") == (c.Log.HSMKey == ""):
		return errors.New("log: give exactly one of signingKey (a file) and hsmKey (a PKCS#11 URI)")
	case c.Log.HSMKey != "" && c.Log.Name == "":
		return errors.New("log.name is required with log.hsmKey")
	case c.Log.HSMKey != "":
		if _, err := hsm.ParseURI(c.Log.HSMKey); err != nil {
			return fmt.Errorf("log.hsmKey: %w", err)
		}
	}
	return nil
}

// resolve makes c's relative paths relative to dir.
func (c *serveConfig) resolve(dir string) {
	paths := []*string{&c.TLS.Certificate, &c.TLS.Key, &c.TLS.StationCA, &c.TLS.VerifierCA, &c.CADir,
		&c.Log.Dir, &c.Log.SigningKey, &c.NonceKey, &c.ReferenceValues}
	if !isPostgresDSN(c.Registry) {
		paths = append(paths, &c.Registry)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
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

func loadServeConfig(path string) (*serveConfig, error) {
	if path == "" {
		return nil, errors.New("--config FILE is required")
	}
	b, err := readFileLimited(path, maxConfigFile)
	if err != nil {
		return nil, err
	}
	var c serveConfig
	if err := decodeStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.resolve(filepath.Dir(path))
	return &c, nil
}

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

  /rootline.provision.v1.ProvisionService/{Nonce,Provision,Confirm}
                            stations (certificates of tls.stationCA)
  GET /v1/registry/export   the attestation verifiers (certificates of
                            tls.verifierCA, if set): every provisioned device
  GET /healthz, /metrics    health and Prometheus counters

FILE is JSON (relative paths are relative to it):

  {"version": 1, "listen": "0.0.0.0:8443",
   "tls": {"certificate": "server.pem", "key": "server.key", "stationCA": "ca/stations.pem",
           "verifierCA": "verifiers-ca.pem"},
   "registry": "registry.db", "caDir": "ca",
   "log": {"dir": "log", "hsmKey": "pkcs11:token=factory;object=log?pin-source=file:/run/factory.pin",
           "name": "log.factory.example"},
   "nonceKey": "nonce.key", "referenceValues": "refs.json"}

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
			names := slices.Sorted(maps.Keys(products))
			caCfg, err := loadCAConfig(cfg.CADir)
			if err != nil {
				return err
			}
			kr := newKeyring(log)
			defer kr.Close()
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
			return api.Serve(ctx, sc, api.NewHandler(svc, log))
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (required)")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the address listened on to this file (for port 0)")
	cmd.Flags().StringVar(&registryFlag, "registry", "", "registry: a SQLite file or a postgres:// URL (overrides the configuration file's)")
	return cmd
}
