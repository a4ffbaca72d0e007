package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/attest/api"
	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
)

// verifyConfig is the attestation verifier's configuration file. Relative
// paths are relative to the file's directory.
type verifyConfig struct {
	Version int    `json:"version"`
	Listen  string `json:"listen"`
	TLS     struct {
		Certificate string `json:"certificate"` // PEM chain of the server
		Key         string `json:"key"`         // PEM private key of the server
		// OperatorCA, optional, is the PEM CA of operators' client
		// certificates (verdicts, endorsement updates); without it those
		// endpoints are disabled.
		OperatorCA string `json:"operatorCA,omitempty"`
	} `json:"tls"`
	// Registry is the registry export file (rootline registry export,
	// provision/export).
	Registry string `json:"registry"`
	// Roots are PEM files of the factory roots every IDevID must chain to.
	Roots []string `json:"roots"`
	// CRLs are the factory issuing CAs' CRLs (DER or PEM), optional: but
	// without a current CRL of its issuer a device is refused
	// (revocation-unknown), so every product's issuing CA needs one.
	CRLs []string `json:"crls,omitempty"`
	// Endorsements is the reference values file (attest.ReadEndorsements).
	Endorsements string `json:"endorsements"`
	// EAR is the key that signs attestation results, ECDSA P-256: exactly
	// one of HSMKey (a PKCS#11 URI with its pin-source) and KeyFile (a PEM
	// private key file, for development).
	EAR struct {
		HSMKey  string `json:"hsmKey,omitempty"`
		KeyFile string `json:"keyFile,omitempty"`
	} `json:"ear"`
	// OperationalCA, optional, issues devices' 24-hour operational
	// certificates: the CA directory (rootline ca init) and the products
	// whose issuing CA keys to open. Without it no certificate is issued
	// (a request with a CSR is contraindicated, reason csr).
	OperationalCA *struct {
		CADir    string   `json:"caDir"`
		Products []string `json:"products"`
	} `json:"operationalCA,omitempty"`
	// Store is the SQLite file of verdicts and devices' accepted states.
	Store string `json:"store"`
	// NonceKey is a file holding the nonces' HMAC key, hex, at least 32
	// bytes; replicas share it.
	NonceKey string `json:"nonceKey"`
	// NonceLifetime, optional, is how long a nonce is accepted: one to two
	// lifetimes ("5m", the default).
	NonceLifetime string `json:"nonceLifetime,omitempty"`
	// MaxNonces, optional, bounds the replay cache, which holds the nonces
	// spent in two lifetimes: at least the attestations per second times
	// twice the lifetime (default 1048576: 1,700/s with 5-minute nonces).
	MaxNonces int `json:"maxNonces,omitempty"`
}

// Validate reports whether c names everything the verifier needs.
func (c *verifyConfig) Validate() error {
	if c.Version != 1 {
		return fmt.Errorf("version %d, want 1", c.Version)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for _, f := range []struct{ name, v string }{
		{"tls.certificate", c.TLS.Certificate}, {"tls.key", c.TLS.Key}, {"registry", c.Registry},
		{"endorsements", c.Endorsements}, {"store", c.Store}, {"nonceKey", c.NonceKey},
	} {
		if f.v == "" {
			return fmt.Errorf("%s is required", f.name)
		}
	}
	if len(c.Roots) == 0 {
		return errors.New("roots: at least one factory root is required")
	}
	for i, r := range c.Roots {
		if r == "" {
			return fmt.Errorf("roots[%d] is empty", i)
		}
	}
	for i, r := range c.CRLs {
		if r == "" {
			return fmt.Errorf("crls[%d] is empty", i)
		}
	}
	if len(c.Roots) > 64 || len(c.CRLs) > attest.MaxCRLs {
		return errors.New("too many roots or CRLs")
	}
	switch {
	case (c.EAR.HSMKey == "") == (c.EAR.KeyFile == ""):
		return errors.New("ear: give exactly one of hsmKey (a PKCS#11 URI) and keyFile (a PEM file)")
	case c.EAR.HSMKey != "":
		if _, err := hsm.ParseURI(c.EAR.HSMKey); err != nil {
			return fmt.Errorf("ear.hsmKey: %w", err)
		}
	}
	if c.NonceLifetime != "" {
		if d, err := time.ParseDuration(c.NonceLifetime); err != nil || d < 10*time.Second || d > time.Hour {
			return fmt.Errorf("nonceLifetime %q: want a duration of 10s to 1h", c.NonceLifetime)
		}
	}
	if c.MaxNonces < 0 || c.MaxNonces > 1<<26 {
		return fmt.Errorf("maxNonces %d: want 0 (the default) to %d", c.MaxNonces, 1<<26)
	}
	if o := c.OperationalCA; o != nil {
		if o.CADir == "" || len(o.Products) == 0 {
			return errors.New("operationalCA: caDir and products are required")
		}
		for _, p := range o.Products {
			if !validName(p) {
				return fmt.Errorf("operationalCA: product %q: bad name", p)
			}
		}
	}
	return nil
}

// resolve makes c's relative paths relative to dir.
func (c *verifyConfig) resolve(dir string) {
	paths := []*string{&c.TLS.Certificate, &c.TLS.Key, &c.TLS.OperatorCA, &c.Registry, &c.Endorsements,
		&c.EAR.KeyFile, &c.Store, &c.NonceKey}
	for i := range c.Roots {
		paths = append(paths, &c.Roots[i])
	}
	for i := range c.CRLs {
		paths = append(paths, &c.CRLs[i])
	}
	if c.OperationalCA != nil {
		paths = append(paths, &c.OperationalCA.CADir)
	}
	resolvePaths(dir, paths...)
}

func loadVerifyConfig(path string) (*verifyConfig, error) { return loadConfig[verifyConfig](path) }

// readCertificates reads the PEM certificates of a file (at least one).
func readCertificates(path string) ([]*x509.Certificate, error) {
	b, err := readFileLimited(path, maxConfigFile)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var p *pem.Block
		p, b = pem.Decode(b)
		if p == nil {
			break
		}
		if p.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(p.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}

// readCRLs reads DER or PEM CRL files.
func readCRLs(paths []string) ([][]byte, error) {
	var out [][]byte
	for _, path := range paths {
		b, err := readFileLimited(path, attest.MaxCRLSize)
		if err != nil {
			return nil, err
		}
		if p, _ := pem.Decode(b); p != nil {
			if p.Type != "X509 CRL" {
				return nil, fmt.Errorf("%s: PEM block %q is not an X509 CRL", path, p.Type)
			}
			b = p.Bytes
		}
		out = append(out, b)
	}
	return out, nil
}

func readEndorsementsFile(path string) (*attest.Endorsements, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e, err := attest.ReadEndorsements(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// readRegistryExport reads the registry export into the verifier's view
// of the registry. Issued and complete devices are both active: an
// "issued" device's station did not confirm writing its chain, but a
// device that attests proves it holds the IDevID's key. Each device's
// identity kind (DICE, injected, TPM), registered DeviceID key and TPM IAK
// go to the verifier, which checks each kind's evidence its own way.
func readRegistryExport(path string, roots []*x509.Certificate, log *slog.Logger) (*attest.MemoryDevices, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	ex, err := export.Read(f)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	devs := &attest.MemoryDevices{}
	untrusted := 0
	for _, d := range ex.Devices {
		trusted := false
		for _, r := range roots {
			if bytes.Equal(d.Root().Raw, r.Raw) {
				trusted = true
			}
		}
		if !trusted {
			// Kept: the verifier refuses it with unknown-root, and says so.
			untrusted++
		}
		state := attest.RegistryActive
		if d.State != registry.Issued && d.State != registry.Complete {
			state = attest.RegistrySuspended
		}
		chain := make([][]byte, len(d.Chain))
		for i, c := range d.Chain {
			chain[i] = c.Raw
		}
		devs.Put(&attest.DeviceRecord{UEID: d.UEID, Product: d.Product, State: state, IDevIDChain: chain,
			Kind: attest.IdentityKind(d.Kind), DeviceIDKey: d.DeviceIDKey, IAK: d.IAK})
	}
	if untrusted > 0 {
		log.Warn("verify: devices of the export chain to no configured root", "devices", untrusted)
	}
	return devs, len(ex.Devices), nil
}

// readEARKey reads a PEM ECDSA P-256 private key (PKCS#8 or SEC 1).
func readEARKey(path string) (crypto.Signer, error) {
	b, err := readFileLimited(path, 16<<10)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	defer clear(p.Bytes)
	var k any
	switch p.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(p.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(p.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, p.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: the EAR key must be ECDSA P-256 (ES256)", path)
	}
	return ek, nil
}

func newServeVerifyCommand(g *globals) *cobra.Command {
	var configPath, addrFile string
	cmd := &cobra.Command{
		Use:   "verify --config FILE",
		Short: "Serve the attestation verifier to devices over HTTPS",
		Long: `Serve the attestation verifier (package attest) over HTTPS (TLS 1.3) until
interrupted:

  POST /v1/nonce                          a nonce to attest over
  POST /v1/attest                         evidence (+ CSR) → status, reasons, EAR, certificate
  GET  /v1/devices/{ueid}/verdicts        a device's verdicts, paged (operators)
  PUT  /v1/endorsements/{product}         replace a product's reference values (operators)
  GET  /v1/jwks, /.well-known/jwks.json   the EAR key (JWK Set)
  GET  /healthz, /metrics                 health and Prometheus metrics

Devices need no client certificate: their evidence authenticates them.
Nonce and attest speak JSON or CBOR (Content-Type application/json or
application/cbor). Operators present a client certificate of the operator CA.

FILE is JSON (relative paths are relative to it):

  {"version": 1, "listen": "0.0.0.0:8444",
   "tls": {"certificate": "verifier.pem", "key": "verifier.key", "operatorCA": "operators.pem"},
   "registry": "devices.json",
   "roots": ["ca/root.pem"],
   "crls": ["sku-a.crl"],
   "endorsements": "endorsements.json",
   "ear": {"hsmKey": "pkcs11:token=verifier;object=ear?pin-source=file:/run/verifier.pin"},
   "operationalCA": {"caDir": "ca", "products": ["sku-a"]},
   "store": "verdicts.db",
   "nonceKey": "nonce.key", "nonceLifetime": "5m", "maxNonces": 4194304}

"registry" is the factory's registry export (rootline registry export);
"roots" the factory root(s) every IDevID must chain to; "crls" the CRLs of
the factory's issuing CAs (rootline ca crl): a device whose issuer has no
current CRL is refused, so give one per product. "endorsements" are the
reference values (see "go doc github.com/rootline/rootline/attest",
Endorsements). "ear" is the ECDSA P-256 key that signs attestation results:
a PKCS#11 URI ("hsmKey") or, for development, a PEM file ("keyFile").
"operationalCA", optional, names a CA directory (rootline ca init) and the
products whose issuing keys sign operational certificates; without it no
certificates are issued. "store" is a SQLite file of verdicts (created if
missing; one verifier process per file). "nonceKey" is a file of at least
32 bytes in hex; replicas share it. A nonce is accepted for one to two
"nonceLifetime"s (optional, default 5m), once: the spent ones are kept, up to
"maxNonces" (optional, default 1048576), and nonces are refused (503, busy)
while that many are outstanding, so give at least twice the lifetime times
the attestations per second.

SIGHUP reloads the registry export, the CRLs and the endorsements files.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log, err := g.logger(cmd)
			if err != nil {
				return err
			}
			cfg, err := loadVerifyConfig(configPath)
			if err != nil {
				return err
			}
			return runServeVerify(ctx, cfg, log, addrFile)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (required)")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the address listened on to this file (for port 0)")
	return cmd
}

func runServeVerify(ctx context.Context, cfg *verifyConfig, log *slog.Logger, addrFile string) error {
	var roots []*x509.Certificate
	for _, r := range cfg.Roots {
		cs, err := readCertificates(r)
		if err != nil {
			return fmt.Errorf("roots: %w", err)
		}
		roots = append(roots, cs...)
	}
	crls, err := readCRLs(cfg.CRLs)
	if err != nil {
		return fmt.Errorf("crls: %w", err)
	}
	refs, err := readEndorsementsFile(cfg.Endorsements)
	if err != nil {
		return fmt.Errorf("endorsements: %w", err)
	}
	mem, n, err := readRegistryExport(cfg.Registry, roots, log)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	devices := &reloadableDevices{}
	devices.cur.Store(mem)
	kr := newKeyring(log)
	defer kr.Close()
	var earKey crypto.Signer
	if cfg.EAR.HSMKey != "" {
		earKey, err = kr.signer(ctx, "EAR", cfg.EAR.HSMKey)
	} else {
		earKey, err = readEARKey(cfg.EAR.KeyFile)
	}
	if err != nil {
		return fmt.Errorf("ear: %w", err)
	}
	var issuer ca.Issuer
	if o := cfg.OperationalCA; o != nil {
		caCfg, err := loadCAConfig(o.CADir)
		if err != nil {
			return fmt.Errorf("operationalCA: %w", err)
		}
		local, err := openLocal(ctx, o.CADir, caCfg, kr, log, o.Products...)
		if err != nil {
			return fmt.Errorf("operationalCA: %w", err)
		}
		issuer = local
	}
	store, err := attest.OpenSQLite(ctx, &attest.SQLiteConfig{Path: cfg.Store})
	if err != nil {
		return err
	}
	defer store.Close()
	nonceKey, err := readNonceKey(cfg.NonceKey)
	if err != nil {
		return err
	}
	var lifetime time.Duration
	if cfg.NonceLifetime != "" {
		lifetime, _ = time.ParseDuration(cfg.NonceLifetime) // checked by Validate
	}
	metrics := api.NewMetrics()
	v, err := attest.New(&attest.Config{
		Roots: roots, CRLs: crls, Devices: devices, Store: store, Endorsements: refs,
		Signer: metrics.Signer(earKey), Issuer: issuer, NonceKey: nonceKey, Logger: log,
		NonceLifetime: lifetime, MaxNonces: cfg.MaxNonces,
		VerifierID: attest.VerifierID{Developer: "rootline", Build: version},
	})
	clear(nonceKey)
	if err != nil {
		return err
	}
	defer v.Close()

	cert, err := tls.LoadX509KeyPair(cfg.TLS.Certificate, cfg.TLS.Key)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	var operators *x509.CertPool
	if cfg.TLS.OperatorCA != "" {
		if operators, err = readCertPool(cfg.TLS.OperatorCA); err != nil {
			return fmt.Errorf("tls.operatorCA: %w", err)
		}
	}
	h, err := api.NewHandler(&api.HandlerConfig{Verifier: v, Store: store, OperatorCA: operators, Metrics: metrics, Logger: log})
	if err != nil {
		return err
	}

	// SIGHUP reloads the registry export, the CRLs and the endorsements; a
	// bad file changes nothing.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if mem, n, err := readRegistryExport(cfg.Registry, roots, log); err != nil {
				log.Error("verify: reloading the registry export", "err", err)
			} else {
				devices.cur.Store(mem)
				log.Info("verify: registry export reloaded", "devices", n)
			}
			crls, err := readCRLs(cfg.CRLs)
			if err == nil {
				err = v.SetCRLs(crls)
			}
			if err != nil {
				log.Error("verify: reloading the CRLs", "err", err)
			}
			refs, err := readEndorsementsFile(cfg.Endorsements)
			if err == nil {
				err = v.SetEndorsements(refs)
			}
			if err != nil {
				log.Error("verify: reloading the endorsements", "err", err)
			}
			log.Info("verify: reloaded")
		}
	}()

	return api.Serve(ctx, &api.ServerConfig{
		Listen: cfg.Listen, Certificate: cert, OperatorCA: operators, Logger: log,
		Ready: func(a net.Addr) {
			log.Info("verify: serving", "addr", a.String(), "devices", n, "operational_certificates", issuer != nil, "ear_kid", v.KeyID())
			if addrFile != "" {
				if err := atomicfile.Write(addrFile, []byte(a.String()+"\n"), 0o644); err != nil {
					log.Error("verify: --addr-file", "err", err)
				}
			}
		},
	}, h)
}

// reloadableDevices is the verifier's view of the registry: the devices of
// the export last read, swapped whole when SIGHUP reloads it.
type reloadableDevices struct {
	cur atomic.Pointer[attest.MemoryDevices]
}

func (r *reloadableDevices) Lookup(ctx context.Context, ueid []byte) (*attest.DeviceRecord, error) {
	return r.cur.Load().Lookup(ctx, ueid)
}
