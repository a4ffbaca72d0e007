// Package provision is the core of the factory provisioning service: it hands
// stations nonces, checks what a chip sends before anything is signed, has the
// product's CA issue the chip's IDevID, and keeps the registry and the
// issuance log in step (DESIGN.md, "The factory flow").
//
// # Checks, in order, before anything is signed
//
// Provision refuses a request at the first check it fails, and a refused
// request changes nothing but the nonce (spent) and, for a clone, the
// registry's incident table:
//
//  1. The nonce, read from the evidence's eat_nonce, is one this service
//     made for this station, less than NonceLifetime to 2×NonceLifetime old,
//     and not used before (ErrNonce).
//  2. The station may provision the product: it is one of the products its
//     certificate names, and a product this service knows
//     (ErrStationNotAllowed). The station's and lot's quotas are the
//     registry's, spent in the transaction that records the chip.
//  3. The evidence verifies (pluton/evidence: signature by the app layer's
//     Alias key, DICE chain structure, nonce, event log), and its UEID,
//     product and lifecycle are the request's and a factory chip's
//     (ErrEvidence).
//  4. The CSR parses and its signature verifies (ca.CheckCSR), and its key
//     is the key of a certificate of the evidence's chain: before
//     provisioning, the last one, the self-signed DeviceID certificate
//     (ErrKeyMismatch). As Verify checked that each certificate is signed by
//     the next, the evidence is thus signed by a key the DeviceID key
//     certified, and the CSR by the DeviceID key itself: the key to certify
//     is the evidence's device key. No factory root is involved: before
//     provisioning the DeviceID key is its own anchor, pinned by the CSR.
//     The CA gets the checked CSR (ca.IssueRequest.CheckedCSR) and does
//     not verify its signature a second time.
//  5. Each layer's measurement is one of the product's reference values for
//     the factory test firmware, with at least its minimum SVN, and every
//     layer the reference values name is measured (ErrReferenceValues).
//  6. The registry records the chip (registry.Reserve): a known UEID with
//     another key is a clone (registry.ErrClone, incident recorded), a spent
//     quota is registry.ErrQuotaExceeded.
//
// # Issuance, and crashes
//
// A chip's certificate goes through three steps: the CA signs it
// (ca.Issuer.Issue), the registry records it (MarkIssued: ISSUING → ISSUED),
// and the issuance log appends it (translog.Log.Append). The station gets the
// certificate only after all three. Before MarkIssued, the certificate must
// be for the CSR's key and signed by the product's CA (ErrIssuer): the
// signature is verified here, unless the CA verified it itself with that
// CA's key (ca.Issued.SignatureChecked: ca.Local, whose
// crypto/x509.CreateCertificate checks every signature it gets). The order is chosen so that the log never
// holds a certificate the registry does not: a certificate is appended only
// after MarkIssued stored it, and MarkIssued stores at most one certificate
// per UEID. A crash
//
//   - after Issue and before MarkIssued leaves the record ISSUING and a
//     certificate that only the dead process saw: never recorded, logged nor
//     delivered. The retry finds the record ISSUING and has the CA issue again.
//     (The CA backend may have logged the signature in its own audit log.)
//   - after MarkIssued and before Append leaves the record ISSUED and the
//     certificate out of the log. The retry finds the record ISSUED, looks for
//     its certificate in the log (from the newest entry back) and appends it
//     if it is missing, before returning it.
//
// So the same request after any crash returns the same certificate once it is
// recorded, and a delivered certificate is always in the registry and the log.
// Within one Service, requests for the same UEID are serialised, so two
// concurrent retries cannot both issue. Two replicas issuing for the same chip
// at the same instant both sign, but only the first MarkIssued wins; the other
// replica discards its certificate (never recorded, logged nor delivered) and
// returns the winner's. The issuance log has a single writer (one process
// appends to it), so the look-up-then-append of the recovery path is not raced
// by another appender.
//
// # Injected identity
//
// A product configured with Identity: Injected (DESIGN.md, "Injected
// identity") has its device keys made by the factory HSM, behind an
// Injector (provision/hsminject adapts an *hsm.Module), and its chips go
// through ProvisionInjected instead of Provision. The chip sends no CSR but
// an ECDH transport key, in a statement its DeviceID key signed over the
// same nonce as its evidence (pluton/soft, TransportKey). Checks 1 to 3
// and 5 are Provision's; check 4 becomes: the statement verifies with the
// DeviceID key of the evidence's chain (its last, self-signed
// certificate), carries the evidence's nonce and names the request's UEID
// (ErrTransportKey). Then:
//
//  1. Reserve records the chip with the DeviceID key as its key, as
//     Provision does, so clone detection is unchanged (same UEID, another
//     DeviceID: a clone), and with the HSM label its device key will have
//     (rootline-idevid- and the hex SHA-256 of the UEID), before the key
//     exists.
//  2. If no device key is recorded, any key with that label is an orphan
//     of an attempt that crashed before recording it, never certified: it
//     is destroyed, a new key made and wrapped for the chip
//     (Injector.InjectKey), and its public key recorded
//     (registry.SetInjectedKey). If one is recorded, it is wrapped again
//     for the chip (Injector.WrapKey), with a fresh ephemeral key. The
//     per-device secrets are derived and wrapped (Injector.DeriveSecret).
//     All this before anything is issued: an HSM that cannot do it (a
//     missing mechanism: ErrInjection wrapping the HSM's error) issues
//     nothing.
//  3. The CA issues the IDevID for the recorded key with
//     ca.ProfileIDevIDInjected: an injected key has no proof of
//     possession to give (the HSM key cannot sign, the chip does not hold
//     it yet); the checks above stand in for it. Then MarkIssued and the
//     log, exactly as for Provision, with the same crash recovery.
//
// The result is the IDevID chain, the key blob and the secret blobs. Before
// Confirm, a retry returns the same certificate and the same key wrapped
// again (the chip takes it as a no-op: device.InstallInjected). Confirm
// destroys the HSM's copy (Injector.DestroyKey), records it
// (registry.MarkInjectedKeyDestroyed), then completes the record; from
// then on a retry returns the certificate alone. A crash between the
// destruction and its record leaves a record whose key is gone: a
// ProvisionInjected then fails (ErrInjection, key not found) until the
// station's Confirm is repeated, which finishes the job. A chip that never
// confirms keeps its key on the HSM: such records are Issued with
// Injected.PublicKey set and Injected.DestroyedAt zero (registry.List).
//
// # Nonces
//
// A nonce is stateless (internal/nonce, the verifier's too): window ||
// random || HMAC-SHA-256(NonceKey, label || window || random || station),
// 56 bytes, where window is the current time divided by NonceLifetime. A
// nonce is accepted in its window and the next one. Single use is enforced
// by a bounded in-memory cache of the nonces spent in those two windows;
// when it is full, nonces are neither made nor spent (ErrNonce) until
// entries expire. Replicas share the registry, not this cache: a nonce
// could be spent once at each replica within its lifetime, which gains the
// replayer nothing, since the registry's idempotency (same UEID and key: same
// certificate; other key: clone) already protects issuance.
package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/internal/nonce"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/translog"
)

var (
	// ErrNonce: the nonce is not this service's, not for this station,
	// expired, or already used.
	ErrNonce = errors.New("provision: bad nonce")
	// ErrStationNotAllowed: the station may not provision this product, or
	// the product is unknown.
	ErrStationNotAllowed = errors.New("provision: station not allowed for this product")
	// ErrEvidence: the evidence is malformed, does not verify, or does not
	// describe the chip of the request.
	ErrEvidence = errors.New("provision: bad evidence")
	// ErrKeyMismatch: the CSR's key is not the evidence's DeviceID key.
	ErrKeyMismatch = errors.New("provision: CSR key is not the evidence's device key")
	// ErrReferenceValues: the chip's test firmware does not match the
	// product's reference values.
	ErrReferenceValues = errors.New("provision: measurements do not match the reference values")
	// ErrBadRequest: a request field is missing, too long or malformed.
	ErrBadRequest = errors.New("provision: bad request")
	// ErrIssuer: the CA returned a certificate that is not the one asked for.
	ErrIssuer = errors.New("provision: the CA returned an unexpected certificate")
)

// Nonce parameters. A nonce is NonceSize bytes: an 8-byte time window,
// 16 random bytes and a 32-byte HMAC-SHA-256.
const (
	NonceSize            = nonce.Size
	DefaultNonceLifetime = 5 * time.Minute
	DefaultMaxNonces     = 1 << 20
	nonceLabel           = "rootline/provision nonce v1"
	logCacheSize         = 1 << 16
)

// Station is an authenticated station: its name and the products it may
// provision, from its certificate (ca.Station), never from what it sends.
type Station struct {
	Name     string
	Products []string
}

// LayerReference is the reference value of one boot layer of a product's
// factory test firmware.
type LayerReference struct {
	// Digests are the accepted image digests (any algorithm; compared
	// with the measured digest's bytes).
	Digests [][]byte
	// MinSVN is the lowest accepted security version number.
	MinSVN uint64
}

// ProductPolicy is what the service knows of a product.
type ProductPolicy struct {
	// HWType is the product's hwType, passed to the CA (optional).
	HWType asn1.ObjectIdentifier
	// Chain is the product's issuing CA chain, intermediate first, root
	// last: it follows the IDevID in Result.Chain, and the IDevID the CA
	// returns must be signed by Chain[0].
	Chain []*x509.Certificate
	// ReferenceValues of the factory test firmware, by layer name
	// ("bootloader", "os", "app"). Every layer measured must be named
	// here, and every layer named here must be measured.
	ReferenceValues map[string]LayerReference
	// Identity says where the product's device keys are made: OnChip (the
	// default; Provision) or Injected (ProvisionInjected), which needs
	// Injection.
	Identity IdentityMode
	// Injection configures an Injected product.
	Injection *InjectionPolicy
}

// Config configures New.
type Config struct {
	Registry registry.Registry
	Issuer   ca.Issuer
	Log      *translog.Log
	Products map[string]*ProductPolicy
	// NonceKey is the HMAC key of nonces: at least 32 bytes, shared by
	// replicas. It is copied.
	NonceKey []byte
	// NonceLifetime: a nonce is accepted for NonceLifetime to
	// 2×NonceLifetime. Default DefaultNonceLifetime.
	NonceLifetime time.Duration
	// MaxNonces bounds the cache of spent nonces; when it is full of
	// unexpired nonces, nonces are refused. Default DefaultMaxNonces.
	MaxNonces int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger gets one record per chip issued and per refusal. Default:
	// discard.
	Logger *slog.Logger
	// Rand draws nonces. Default crypto/rand.Reader.
	Rand io.Reader
}

// Request is a station's untrusted request for one chip.
type Request struct {
	UEID     []byte
	CSR      []byte // DER PKCS#10, signed by the DeviceID key
	Evidence []byte // the chip's evidence over a nonce from Nonce
	Product  string
	Lot      string
}

// Result is the chip's certificate chain and where the log holds it.
type Result struct {
	// Chain is the IDevID certificate, then Policy.Chain: DER, leaf first,
	// root last.
	Chain [][]byte
	// LogIndex is the IDevID's index in the issuance log.
	LogIndex int64
	// Issued is true when this call issued the certificate, false when it
	// returned one issued earlier (an idempotent retry).
	Issued bool
}

// Service is the provisioning service core. It is safe for concurrent use.
type Service struct {
	reg      registry.Registry
	issuer   ca.Issuer
	log      *translog.Log
	products map[string]*ProductPolicy
	now      func() time.Time
	logger   *slog.Logger

	nonces *nonce.Source   // bound to the station's name
	locks  [256]sync.Mutex // by UEID

	logMu    sync.Mutex
	logIndex map[[sha256.Size]byte]int64 // certificates this process saw logged
}

// New returns a Service.
func New(cfg *Config) (*Service, error) {
	switch {
	case cfg == nil:
		return nil, errors.New("provision: no configuration")
	case cfg.Registry == nil || cfg.Issuer == nil || cfg.Log == nil:
		return nil, errors.New("provision: registry, issuer and log are required")
	case len(cfg.NonceKey) < 32:
		return nil, errors.New("provision: nonce key shorter than 32 bytes")
	case len(cfg.Products) == 0:
		return nil, errors.New("provision: no product")
	}
	products := make(map[string]*ProductPolicy, len(cfg.Products))
	for name, p := range cfg.Products {
		if p == nil || len(p.Chain) == 0 {
			return nil, fmt.Errorf("provision: product %q has no CA chain", name)
		}
		if len(p.ReferenceValues) == 0 {
			return nil, fmt.Errorf("provision: product %q has no reference values", name)
		}
		if err := p.validateIdentity(); err != nil {
			return nil, fmt.Errorf("provision: product %q: %w", name, err)
		}
		products[name] = p
	}
	s := &Service{
		reg: cfg.Registry, issuer: cfg.Issuer, log: cfg.Log, products: products,
		now: cfg.Now, logger: cfg.Logger,
		logIndex: map[[sha256.Size]byte]int64{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	lifetime, max := cfg.NonceLifetime, cfg.MaxNonces
	if lifetime <= 0 {
		lifetime = DefaultNonceLifetime
	}
	if max <= 0 {
		max = DefaultMaxNonces
	}
	var err error
	if s.nonces, err = nonce.New(&nonce.Config{Key: cfg.NonceKey, Label: nonceLabel, Lifetime: lifetime,
		MaxEntries: max, Rand: cfg.Rand, Now: s.now}); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	return s, nil
}

// Nonce returns a fresh nonce for station, to be given to a chip (Attest)
// and spent by one Provision of the same station.
func (s *Service) Nonce(ctx context.Context, station Station) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if station.Name == "" || len(station.Name) > registry.MaxNameLen {
		return nil, fmt.Errorf("%w: station name of %d bytes", ErrBadRequest, len(station.Name))
	}
	n, err := s.nonces.New([]byte(station.Name))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNonce, err)
	}
	return n, nil
}

// spendNonce checks that the untrusted nonce is this service's, for this
// station and unexpired, and spends it.
func (s *Service) spendNonce(station string, n []byte) error {
	if err := s.nonces.Spend(n, []byte(station)); err != nil {
		if errors.Is(err, nonce.ErrInvalid) {
			return fmt.Errorf("%w: not issued by this service to station %q", ErrNonce, station)
		}
		return fmt.Errorf("%w: %v", ErrNonce, err)
	}
	return nil
}

func (s *Service) refuse(station string, req *Request, err error) error {
	s.logger.Warn("provision refused", "station", station, "product", req.Product, "ueid", fmt.Sprintf("%x", req.UEID), "err", err)
	return err
}

// Provision checks a chip's request and returns its IDevID chain. See the
// package documentation for the checks and their order. Repeated for the same
// chip and key, it returns the same certificate.
func (s *Service) Provision(ctx context.Context, station Station, req *Request) (*Result, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: no request", ErrBadRequest)
	}
	res, err := s.provision(ctx, station, req)
	if err != nil {
		return nil, s.refuse(station.Name, req, err)
	}
	return res, nil
}

func (s *Service) provision(ctx context.Context, station Station, req *Request) (*Result, error) {
	switch {
	case station.Name == "" || len(station.Name) > registry.MaxNameLen:
		return nil, fmt.Errorf("%w: station name of %d bytes", ErrBadRequest, len(station.Name))
	case len(req.UEID) == 0 || len(req.UEID) > registry.MaxUEIDLen:
		return nil, fmt.Errorf("%w: UEID of %d bytes", ErrBadRequest, len(req.UEID))
	case len(req.CSR) == 0 || len(req.CSR) > ca.MaxCSRSize:
		return nil, fmt.Errorf("%w: CSR of %d bytes", ErrBadRequest, len(req.CSR))
	case len(req.Evidence) == 0 || len(req.Evidence) > evidence.MaxTokenSize:
		return nil, fmt.Errorf("%w: evidence of %d bytes", ErrBadRequest, len(req.Evidence))
	case req.Product == "" || len(req.Product) > registry.MaxNameLen ||
		req.Lot == "" || len(req.Lot) > registry.MaxNameLen:
		return nil, fmt.Errorf("%w: product or lot missing or too long", ErrBadRequest)
	}

	// 1. to 3.: the nonce, the station and product, the evidence.
	tok, policy, err := s.checkChip(station, req.Product, req.UEID, req.Evidence, OnChip)
	if err != nil {
		return nil, err
	}

	// 4. The CSR's key is the DeviceID key the evidence chains to. The
	// checked CSR goes on to the CA (ca.IssueRequest.CheckedCSR), whose
	// ca.Check takes it rather than verifying the signature again.
	csr, err := ca.CheckCSR(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	spki := csr.PublicKeyInfo()
	// Verify checked that each certificate of the chain is signed by the
	// next: if one of them certifies the CSR's key, every certificate below
	// it, and so the evidence, is vouched for by that key.
	if !slices.ContainsFunc(tok.Chain, func(c *x509.Certificate) bool {
		return bytes.Equal(c.RawSubjectPublicKeyInfo, spki)
	}) {
		return nil, ErrKeyMismatch
	}

	// 5. The test firmware's measurements.
	if err := checkReferences(policy.ReferenceValues, tok.Claims.Layers); err != nil {
		return nil, err
	}

	// 6. Record, issue, log. Requests for one UEID are serialised there.
	return s.recordIssueLog(ctx, station, policy, req, csr, nil)
}

// recordIssueLog is the last step of the flows whose chip makes its own key
// (the on-chip DICE flow and the TPM flow): with the UEID's requests
// serialised, the chip is reserved in the registry for the CSR's key (and
// the TPM's IAK, if any), refused if it was registered for another product
// or for an injected identity, then its IDevID is issued and logged.
func (s *Service) recordIssueLog(ctx context.Context, station Station, policy *ProductPolicy, req *Request, csr *ca.CheckedCSR, iak []byte) (*Result, error) {
	unlock := s.lock(req.UEID)
	defer unlock()
	rec, err := s.reg.Reserve(ctx, &registry.ReserveRequest{
		UEID: req.UEID, PublicKey: csr.PublicKeyInfo(),
		Product: req.Product, Lot: req.Lot, Station: station.Name,
		TPMIAK: iak,
	})
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if rec.Product != req.Product {
		return nil, fmt.Errorf("%w: chip already registered for product %q", ErrBadRequest, rec.Product)
	}
	if rec.Injected != nil {
		return nil, fmt.Errorf("%w: chip was registered for an injected identity", ErrBadRequest)
	}
	return s.issueAndLog(ctx, station.Name, policy, req.Lot, rec, func() (*x509.Certificate, error) {
		return s.issue(ctx, policy, req, csr)
	})
}

// lock serialises the requests for one UEID within this Service.
func (s *Service) lock(ueid []byte) (unlock func()) {
	mu := &s.locks[sha256.Sum256(ueid)[0]]
	mu.Lock()
	return mu.Unlock
}

// issueAndLog takes a reserved chip through issuance (when its record is
// Issuing: issue, then MarkIssued) and the log, and returns its chain. See
// the package documentation, "Issuance, and crashes".
func (s *Service) issueAndLog(ctx context.Context, station string, policy *ProductPolicy, lot string, rec *registry.Record,
	issue func() (*x509.Certificate, error)) (*Result, error) {
	ueid := rec.UEID
	fresh := false
	if rec.State == registry.Issuing {
		cert, err := issue()
		if err != nil {
			return nil, err
		}
		rec, err = s.reg.MarkIssued(ctx, ueid, cert.Raw, cert.SerialNumber)
		switch {
		case errors.Is(err, registry.ErrWrongState):
			// Another replica recorded its certificate first: ours is
			// discarded, never logged nor delivered.
			if rec, err = s.reg.Get(ctx, ueid); err != nil {
				return nil, fmt.Errorf("provision: %w", err)
			}
		case err != nil:
			return nil, fmt.Errorf("provision: %w", err)
		default:
			fresh = true
		}
	}
	if rec.State == registry.Issuing || len(rec.Certificate) == 0 {
		return nil, fmt.Errorf("provision: chip %x has no certificate after issuance", ueid)
	}
	idx, err := s.logged(ctx, rec.Certificate, fresh)
	if err != nil {
		return nil, err
	}
	if fresh {
		s.logger.Info("chip issued", "station", station, "product", rec.Product, "lot", lot,
			"ueid", fmt.Sprintf("%x", ueid), "serial", ca.Hex(rec.Serial), "log_index", idx, "injected", rec.Injected != nil)
	}
	chain := [][]byte{bytes.Clone(rec.Certificate)}
	for _, c := range policy.Chain {
		chain = append(chain, c.Raw)
	}
	return &Result{Chain: chain, LogIndex: idx, Issued: fresh}, nil
}

// checkChip makes checks 1 to 3 of the package documentation: the nonce
// (read from the untrusted evidence), the station and the product (whose
// identity must be mode), and the evidence, which must describe the chip
// ueid of product.
//
// The evidence is parsed once: evidence.Verify parses it and checks its
// signature and chain, and the nonce it carries is spent only then. The
// refusals and what they change are those of the documented order all the
// same: a token that does not parse is refused before its nonce is
// spent; one that parses but does not verify is parsed again (a refusal
// only) to spend its nonce, and refused with ErrNonce, then
// ErrStationNotAllowed, before ErrEvidence. A replayed nonce thus costs a
// verification; any station can cost as much with a fresh one.
func (s *Service) checkChip(station Station, product string, ueid, ev []byte, mode IdentityMode) (*evidence.Token, *ProductPolicy, error) {
	// 3. (computed first) The evidence: its signature by the leaf's key
	// and its chain. The nonce Verify could compare would be read from
	// these same bytes: it is checked by spending it below.
	tok, verr := evidence.Verify(ev, nil)
	if verr != nil {
		t, err := evidence.Parse(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrEvidence, err)
		}
		tok = t
	}

	// 1. The nonce, from the evidence. Spending it before any refusal
	// below means a nonce serves at most one attempt.
	if err := s.spendNonce(station.Name, tok.Claims.Nonce); err != nil {
		return nil, nil, err
	}

	// 2. The station and the product.
	policy, ok := s.products[product]
	if !ok || !slices.Contains(station.Products, product) {
		return nil, nil, fmt.Errorf("%w: station %q, product %q", ErrStationNotAllowed, station.Name, product)
	}
	if policy.Identity != mode {
		return nil, nil, fmt.Errorf("%w: product %q has identity %v, this request is for %v", ErrBadRequest, product, policy.Identity, mode)
	}

	// 3. The evidence verified, and describes the chip of the request.
	if verr != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrEvidence, verr)
	}
	cl := tok.Claims
	switch {
	case !bytes.Equal(cl.UEID, ueid):
		return nil, nil, fmt.Errorf("%w: evidence UEID %x, request UEID %x", ErrEvidence, cl.UEID, ueid)
	case cl.Product != product:
		return nil, nil, fmt.Errorf("%w: evidence product %q, request product %q", ErrEvidence, cl.Product, product)
	case cl.Lifecycle != pluton.Manufacturing && cl.Lifecycle != pluton.Provisioned:
		return nil, nil, fmt.Errorf("%w: chip in lifecycle %v", ErrEvidence, cl.Lifecycle)
	case len(tok.Chain) == 0:
		return nil, nil, fmt.Errorf("%w: no certificate chain", ErrEvidence)
	}
	return tok, policy, nil
}

// issue has the CA issue the IDevID of a checked CSR, and checks what it
// returns (checkIssued).
func (s *Service) issue(ctx context.Context, policy *ProductPolicy, req *Request, csr *ca.CheckedCSR) (*x509.Certificate, error) {
	iss, err := s.issuer.Issue(ctx, &ca.IssueRequest{
		CSR: req.CSR, CheckedCSR: csr, Profile: ca.ProfileIDevID, Product: req.Product, UEID: req.UEID, HWType: policy.HWType,
	})
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	return checkIssued(policy, iss, csr.PublicKeyInfo(), "the CSR's key")
}

// checkIssued checks that what the CA returned is a certificate of the key
// spki (named what in errors) signed by the product's CA, before it is
// recorded or leaves. The signature is verified here unless the CA says it
// verified it with the key of the product's CA itself
// (ca.Issued.SignatureChecked, with Chain[0] the product's CA
// certificate: ca.Local, where crypto/x509.CreateCertificate checks that
// the signer's key is the issuing certificate's and verifies the
// signature it returns); checking it twice in one process would repeat
// the same computation. A backend that only relays a remote CA's answer
// does not say so, and its certificates are verified here.
func checkIssued(policy *ProductPolicy, iss *ca.Issued, spki []byte, what string) (*x509.Certificate, error) {
	c := iss.Certificate
	if c == nil || !bytes.Equal(c.RawSubjectPublicKeyInfo, spki) {
		return nil, fmt.Errorf("%w: not for %s", ErrIssuer, what)
	}
	if iss.SignatureChecked && len(iss.Chain) > 0 && iss.Chain[0].Equal(policy.Chain[0]) &&
		bytes.Equal(c.RawIssuer, policy.Chain[0].RawSubject) {
		return c, nil
	}
	if err := c.CheckSignatureFrom(policy.Chain[0]); err != nil {
		return nil, fmt.Errorf("%w: not signed by the product's CA: %v", ErrIssuer, err)
	}
	return c, nil
}

// logged returns the log index of a recorded certificate, appending it if it
// is not in the log. A certificate just recorded (fresh) cannot be in the log
// yet; otherwise the log is searched from its newest entry back.
func (s *Service) logged(ctx context.Context, der []byte, fresh bool) (int64, error) {
	h := sha256.Sum256(der)
	s.logMu.Lock()
	idx, ok := s.logIndex[h]
	s.logMu.Unlock()
	if ok {
		return idx, nil
	}
	if !fresh {
		n, err := s.log.Size(ctx)
		if err != nil {
			return 0, fmt.Errorf("provision: %w", err)
		}
		for i := n - 1; i >= 0; i-- {
			leaf, err := s.log.Leaf(ctx, i)
			if err != nil {
				return 0, fmt.Errorf("provision: %w", err)
			}
			if bytes.Equal(leaf, der) {
				s.remember(h, i)
				return i, nil
			}
		}
		s.logger.Warn("recorded certificate missing from the log: appending it", "sha256", fmt.Sprintf("%x", h))
	}
	idx, err := s.log.Append(ctx, der)
	if err != nil {
		return 0, fmt.Errorf("provision: %w", err)
	}
	s.remember(h, idx)
	return idx, nil
}

func (s *Service) remember(h [sha256.Size]byte, idx int64) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if len(s.logIndex) >= logCacheSize {
		clear(s.logIndex)
	}
	s.logIndex[h] = idx
}

// checkReferences appraises the untrusted (but verified) measurements
// against a product's reference values.
func checkReferences(refs map[string]LayerReference, layers []evidence.Measurement) error {
	seen := map[string]bool{}
	for _, m := range layers {
		ref, ok := refs[m.Layer]
		if !ok {
			return fmt.Errorf("%w: layer %q has no reference value", ErrReferenceValues, m.Layer)
		}
		seen[m.Layer] = true
		if m.SVN < ref.MinSVN {
			return fmt.Errorf("%w: layer %q SVN %d below %d", ErrReferenceValues, m.Layer, m.SVN, ref.MinSVN)
		}
		if !slices.ContainsFunc(ref.Digests, func(d []byte) bool { return bytes.Equal(d, m.Digest) }) {
			return fmt.Errorf("%w: layer %q digest %x is not a reference value", ErrReferenceValues, m.Layer, m.Digest)
		}
	}
	for l := range refs {
		if !seen[l] {
			return fmt.Errorf("%w: layer %q not measured", ErrReferenceValues, l)
		}
	}
	return nil
}

// Confirm records that the station wrote the chain into the chip and the
// chip moved to Provisioned: the record becomes COMPLETE. Repeating it is
// harmless. The station must be allowed for the chip's product.
//
// For a chip of an injected identity, the HSM's copy of its device key is
// destroyed first, and its destruction recorded, then the record becomes
// COMPLETE; each step is repeated by a repeated Confirm until all are
// done. From then on ProvisionInjected returns the certificate alone.
func (s *Service) Confirm(ctx context.Context, station Station, ueid []byte) error {
	if len(ueid) == 0 || len(ueid) > registry.MaxUEIDLen {
		return fmt.Errorf("%w: UEID of %d bytes", ErrBadRequest, len(ueid))
	}
	rec, err := s.reg.Get(ctx, ueid)
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	if !slices.Contains(station.Products, rec.Product) {
		return fmt.Errorf("%w: station %q, product %q", ErrStationNotAllowed, station.Name, rec.Product)
	}
	if in := rec.Injected; in != nil && in.PublicKey != nil && in.DestroyedAt.IsZero() && rec.State != registry.Issuing {
		if err := s.destroyInjected(ctx, rec); err != nil {
			return err
		}
	}
	if _, err := s.reg.Complete(ctx, ueid); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}
