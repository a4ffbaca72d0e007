package attest

import (
	"bytes"
	"container/list"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/internal/nonce"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
	"github.com/rootline/rootline/pluton/tpm"
)

// Defaults and bounds of a Verifier.
const (
	// NonceLabel is the label of the Verifier's nonces (internal/nonce).
	NonceLabel = "rootline/attest nonce v1"
	// NonceSize is the size of a nonce from Verifier.Nonce.
	NonceSize = nonce.Size
	// DefaultChainCacheSize is the default number of verified chains
	// remembered (DICE chains and IDevID chains each), and of parsed
	// registered TPM IAKs.
	DefaultChainCacheSize = 1 << 14
	// MaxCRLSize bounds one DER CRL; MaxCRLs the CRLs of a Verifier.
	MaxCRLSize = 16 << 20
	MaxCRLs    = 1024
	// MaxIDevIDChain bounds the IDevID chain of a request or a record.
	MaxIDevIDChain = 4
	// DefaultPolicyID is the default ear.appraisal-policy-id.
	DefaultPolicyID = "tag:rootline.dev,2026:attest:policy:v1"
)

// RegistryState is a device's state in the registry, as Devices reports
// it. Only RegistryActive devices are accepted.
type RegistryState string

// Registry states.
const (
	// RegistryActive: provisioned (the factory issued its IDevID) and in
	// service.
	RegistryActive RegistryState = "active"
	// RegistrySuspended: taken out of service for now.
	RegistrySuspended RegistryState = "suspended"
	// RegistryRetired: decommissioned, stolen, cloned: never again.
	RegistryRetired RegistryState = "retired"
)

// IdentityKind says how a device's identity was made, and so how Verify
// binds its evidence to its IDevID (see the package documentation, step 4).
type IdentityKind string

// Identity kinds, as the registry export names them
// (provision/export.Kind).
const (
	// KindDICE: the chip made its DeviceID key, which the IDevID
	// certifies, and which anchors the DICE chain of its evidence.
	KindDICE IdentityKind = "dice"
	// KindInjected: the factory HSM made the key the IDevID certifies;
	// the DICE chain of its evidence still grows from the chip's own
	// DeviceID key, which the registry keeps (DeviceRecord.DeviceIDKey).
	KindInjected IdentityKind = "injected"
	// KindTPM: a device on a TPM 2.0. Its evidence is signed by the TPM's
	// IDevID key with the IDevID chain as x5chain, and carries a quote of
	// its PCRs by the TPM's attestation key (DeviceRecord.IAK).
	KindTPM IdentityKind = "tpm"
)

// DeviceRecord is what the registry knows of a device.
type DeviceRecord struct {
	UEID    []byte
	Product string
	State   RegistryState
	// IDevIDChain is the device's IDevID certificate as the factory issued
	// it, then the intermediate(s) above it, DER, leaf first; the root may
	// be included or left out (Config.Roots are the anchors either way).
	IDevIDChain [][]byte
	// Kind is how the device's identity was made. Empty means KindDICE
	// (a registry that does not say: a version 1 export).
	Kind IdentityKind
	// DeviceIDKey is the DER SubjectPublicKeyInfo of the device's DeviceID
	// key as the factory registered it (registry.Record.PublicKey; for
	// KindTPM the TPM's IDevID key). Required for KindInjected; for
	// KindDICE and KindTPM optional, and if present it must be the
	// IDevID's key.
	DeviceIDKey []byte
	// IAK is, for KindTPM, the TPMT_PUBLIC area of the TPM's attestation
	// key as the factory received and checked it (registry.Record.TPMIAK).
	// Required for KindTPM, and ignored for the other kinds.
	IAK []byte
}

// Devices is the device registry as the verifier sees it.
//
// Lookup returns the record of the device with this UEID, or an error
// wrapping ErrUnknownDevice if there is none; any other error is the
// registry's failure and makes the attestation fail (not refused). It is
// called on every attestation and must be safe for concurrent use.
type Devices interface {
	Lookup(ctx context.Context, ueid []byte) (*DeviceRecord, error)
}

// MemoryDevices is a Devices held in memory, for tests and for a registry
// loaded from a file. It is safe for concurrent use.
type MemoryDevices struct {
	mu sync.RWMutex
	m  map[string]*DeviceRecord
}

var _ Devices = (*MemoryDevices)(nil)

// Put adds or replaces a record (copied).
func (m *MemoryDevices) Put(r *DeviceRecord) {
	c := *r
	c.UEID = bytes.Clone(r.UEID)
	c.IDevIDChain = slices.Clone(r.IDevIDChain)
	c.DeviceIDKey = bytes.Clone(r.DeviceIDKey)
	c.IAK = bytes.Clone(r.IAK)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]*DeviceRecord{}
	}
	m.m[string(c.UEID)] = &c
}

// Lookup implements Devices.
func (m *MemoryDevices) Lookup(_ context.Context, ueid []byte) (*DeviceRecord, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.m[string(ueid)]
	if !ok {
		return nil, fmt.Errorf("%w: %x", ErrUnknownDevice, ueid)
	}
	c := *r
	return &c, nil
}

// VerifierID is the ear.verifier-id claim: who built the verifier and
// which build this is.
type VerifierID struct {
	Developer string `json:"developer"`
	Build     string `json:"build"`
}

// Config configures New.
type Config struct {
	// Roots are the factory CA roots: every IDevID chain must lead to one.
	Roots []*x509.Certificate
	// CRLs are DER CRLs of the factory's issuing CAs (SetCRLs replaces
	// them later).
	CRLs [][]byte
	// Devices is the registry. Required.
	Devices Devices
	// Store keeps verdicts and the accepted state of each device.
	// Required.
	Store Store
	// Endorsements are the reference values (SetEndorsements replaces
	// them later). Nil means none: nothing is affirmed.
	Endorsements *Endorsements
	// Signer signs EARs: an ECDSA P-256 key (ES256), normally in an HSM.
	// Required.
	Signer crypto.Signer
	// Issuer issues operational certificates (ca.ProfileOperational).
	// Nil: Attest refuses requests with a CSR.
	Issuer ca.Issuer
	// NonceKey is the HMAC key of nonces, at least 32 bytes, shared by
	// the replicas. Required. New copies it; Close wipes the copy.
	NonceKey []byte
	// NonceLifetime: a nonce is accepted for one to two lifetimes.
	// Default nonce.DefaultLifetime.
	NonceLifetime time.Duration
	// MaxNonces bounds the replay cache. Default nonce.DefaultMaxEntries.
	MaxNonces int
	// VerifierID goes into every EAR. Default {"rootline", "dev"}.
	VerifierID VerifierID
	// PolicyID is the ear.appraisal-policy-id. Default DefaultPolicyID.
	PolicyID string
	// ChainCacheSize bounds each cache of verified chains (and of parsed
	// TPM IAKs). Default DefaultChainCacheSize; negative disables caching.
	ChainCacheSize int
	// Rand feeds the signers and the nonces. Default crypto/rand.Reader.
	Rand io.Reader
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger gets one record per verdict. Default: discard.
	Logger *slog.Logger
}

// Validate checks c.
func (c *Config) Validate() error {
	bad := func(s string) error { return fmt.Errorf("%w: %s", ErrConfig, s) }
	switch {
	case len(c.Roots) == 0:
		return bad("no factory roots")
	case c.Devices == nil:
		return bad("no device registry")
	case c.Store == nil:
		return bad("no store")
	case c.Signer == nil:
		return bad("no EAR signer")
	case len(c.NonceKey) < nonce.MinKeySize:
		return bad("nonce key shorter than 32 bytes")
	case len(c.CRLs) > MaxCRLs:
		return bad("too many CRLs")
	}
	if pub, ok := c.Signer.Public().(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return bad("the EAR signer is not an ECDSA P-256 key")
	}
	if c.Endorsements != nil {
		if err := c.Endorsements.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Verifier is the attestation verifier. It is safe for concurrent use.
type Verifier struct {
	roots    *x509.CertPool
	devices  Devices
	store    Store
	signer   crypto.Signer
	issuer   ca.Issuer
	nonces   *nonce.Source
	id       VerifierID
	policyID string
	rand     io.Reader
	now      func() time.Time
	log      *slog.Logger
	earKey   *earKey

	refs atomic.Pointer[refs]
	crls atomic.Pointer[crlSet]

	diceCache *lru[diceEntry]
	idCache   *lru[idEntry]
	iakCache  *lru[iakEntry]
}

// New returns a Verifier configured by cfg.
func New(cfg *Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{
		roots:    x509.NewCertPool(),
		devices:  cfg.Devices,
		store:    cfg.Store,
		signer:   cfg.Signer,
		issuer:   cfg.Issuer,
		id:       cfg.VerifierID,
		policyID: cfg.PolicyID,
		rand:     cfg.Rand,
		now:      cfg.Now,
		log:      cfg.Logger,
	}
	for _, r := range cfg.Roots {
		v.roots.AddCert(r)
	}
	if v.id == (VerifierID{}) {
		v.id = VerifierID{Developer: "rootline", Build: "dev"}
	}
	if v.policyID == "" {
		v.policyID = DefaultPolicyID
	}
	if v.rand == nil {
		v.rand = rand.Reader
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	size := cfg.ChainCacheSize
	if size == 0 {
		size = DefaultChainCacheSize
	}
	v.diceCache, v.idCache, v.iakCache = newLRU[diceEntry](size), newLRU[idEntry](size), newLRU[iakEntry](size)
	var err error
	if v.earKey, err = newEARKey(cfg.Signer.Public()); err != nil {
		return nil, err
	}
	e := cfg.Endorsements
	if e == nil {
		e = &Endorsements{Version: EndorsementsVersion}
	}
	v.refs.Store(compile(e.clone()))
	if err := v.SetCRLs(cfg.CRLs); err != nil {
		return nil, err
	}
	v.nonces, err = nonce.New(&nonce.Config{
		Key: cfg.NonceKey, Label: NonceLabel, Lifetime: cfg.NonceLifetime,
		MaxEntries: cfg.MaxNonces, Rand: v.rand, Now: v.now,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return v, nil
}

// Close wipes the nonce key. It does not close the Store.
func (v *Verifier) Close() error { return v.nonces.Close() }

// Nonce returns a fresh nonce for a device to attest over. It fails with
// an error wrapping nonce.ErrFull while the replay cache is full.
func (v *Verifier) Nonce(ctx context.Context) ([]byte, error) {
	n, err := v.nonces.New(nil)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	return n, nil
}

// SetEndorsements replaces every product's reference values with e
// (copied), after checking it (errors wrap ErrEndorsements). Attestations
// already past Verify may still be appraised with the previous ones.
func (v *Verifier) SetEndorsements(e *Endorsements) error {
	if err := e.Validate(); err != nil {
		return err
	}
	v.refs.Store(compile(e.clone()))
	return nil
}

// UpdateProduct adds or replaces the reference values of one product,
// leaving the others as they are.
func (v *Verifier) UpdateProduct(p *ProductEndorsements) error {
	if err := p.Validate(); err != nil {
		return err
	}
	for {
		old := v.refs.Load()
		e := old.doc.clone()
		i := slices.IndexFunc(e.Products, func(q ProductEndorsements) bool { return q.Product == p.Product })
		if i < 0 {
			e.Products = append(e.Products, *p)
		} else {
			e.Products[i] = *p
		}
		if err := e.Validate(); err != nil {
			return err
		}
		if v.refs.CompareAndSwap(old, compile(e.clone())) {
			return nil
		}
	}
}

// Endorsements returns a copy of the current reference values.
func (v *Verifier) Endorsements() *Endorsements { return v.refs.Load().doc.clone() }

// Request is what a device sends to be attested.
type Request struct {
	// Evidence is the untrusted token (pluton/evidence) over a nonce from
	// Verifier.Nonce.
	Evidence []byte
	// IDevIDChain is the IDevID chain the device holds (DER, leaf first),
	// optional: if given it must be the registered one; if not, the
	// registered one is used.
	IDevIDChain [][]byte
	// CSR is an optional DER PKCS#10 request for an operational
	// certificate, for the token's Alias key and signed by it.
	CSR []byte
}

// DeviceState is what the verifier last accepted of a device: its
// counters and each layer's SVN. Rollback below it is refused.
type DeviceState struct {
	Counters map[string]uint64 `json:"counters"`
	SVNs     map[string]uint64 `json:"svns"`
}

// clone returns a deep copy.
func (s *DeviceState) clone() *DeviceState {
	if s == nil {
		return nil
	}
	return &DeviceState{Counters: maps.Clone(s.Counters), SVNs: maps.Clone(s.SVNs)}
}

// Below names the first counter or layer SVN of s lower than in prev (or
// missing from s), or returns "" if none is.
func (s *DeviceState) Below(prev *DeviceState) string {
	if prev == nil {
		return ""
	}
	for _, k := range slices.Sorted(maps.Keys(prev.Counters)) {
		if got, ok := s.Counters[k]; !ok || got < prev.Counters[k] {
			return fmt.Sprintf("counter %q is %d, was %d", k, got, prev.Counters[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(prev.SVNs)) {
		if got, ok := s.SVNs[k]; !ok || got < prev.SVNs[k] {
			return fmt.Sprintf("layer %q runs SVN %d, was %d", k, got, prev.SVNs[k])
		}
	}
	return ""
}

// Verified is evidence that passed Verify: its claims are those of an
// authenticated, registered, unrevoked device, fresh, and not rolled back.
// Only Verify makes one; its accessors return copies.
type Verified struct {
	tok    *evidence.Token
	rec    DeviceRecord
	idevid *x509.Certificate
	prev   *DeviceState
	at     time.Time
}

// UEID returns the device's UEID.
func (v *Verified) UEID() []byte { return bytes.Clone(v.tok.Claims.UEID) }

// Product returns the device's product (from the registry, which the
// token's product claim, if any, matched).
func (v *Verified) Product() string { return v.rec.Product }

// Lifecycle returns the chip's lifecycle state.
func (v *Verified) Lifecycle() pluton.Lifecycle { return v.tok.Claims.Lifecycle }

// Nonce returns the nonce the token answered.
func (v *Verified) Nonce() []byte { return bytes.Clone(v.tok.Claims.Nonce) }

// Layers returns the measured boot layers in boot order.
func (v *Verified) Layers() []evidence.Measurement {
	out := slices.Clone(v.tok.Claims.Layers)
	for i := range out {
		out[i].Digest = bytes.Clone(out[i].Digest)
		out[i].SignerID = bytes.Clone(out[i].SignerID)
	}
	return out
}

// Counters returns the chip's counters.
func (v *Verified) Counters() map[string]uint64 { return maps.Clone(v.tok.Claims.Counters) }

// State returns the counters and layer SVNs this evidence reports, the
// state Attest records when it accepts it.
func (v *Verified) State() *DeviceState {
	s := &DeviceState{Counters: maps.Clone(v.tok.Claims.Counters), SVNs: map[string]uint64{}}
	if s.Counters == nil {
		s.Counters = map[string]uint64{}
	}
	for _, l := range v.tok.Claims.Layers {
		s.SVNs[l.Layer] = l.SVN
	}
	return s
}

// Previous returns the state last accepted for this device, or nil.
func (v *Verified) Previous() *DeviceState { return v.prev.clone() }

// AliasKey returns the public key that signed the token: the top layer's
// Alias key.
func (v *Verified) AliasKey() crypto.PublicKey { return v.tok.PublicKey }

// Chain returns the token's DICE chain (x5chain), leaf first.
func (v *Verified) Chain() []*x509.Certificate { return slices.Clone(v.tok.Chain) }

// IDevID returns the device's IDevID certificate.
func (v *Verified) IDevID() *x509.Certificate { return v.idevid }

// Kind returns how the device's identity was made (KindDICE for a record
// that does not say).
func (v *Verified) Kind() IdentityKind { return v.rec.kind() }

// kind is r.Kind, KindDICE if empty.
func (r *DeviceRecord) kind() IdentityKind {
	if r.Kind == "" {
		return KindDICE
	}
	return r.Kind
}

// Time returns when the evidence was verified.
func (v *Verified) Time() time.Time { return v.at }

// diceEntry is a DICE chain (x5chain) whose structure evidence.Verify
// accepted.
type diceEntry struct {
	deviceID crypto.PublicKey // the last certificate's key
	// chain is the chain as evidence.Verify parsed and accepted it, leaf
	// first: the next tokens with the same x5chain bytes (the cache key
	// is their digest) use it rather than parsing them again. Shared,
	// never modified.
	chain []*x509.Certificate
	// log is the event log of the last token of this chain that verified
	// (measure.ParseLog's, shared, never modified): a device sends the same
	// log at every attestation of a boot, which the parse then takes from
	// here (evidence.ParseOptions.EventLog, only if it is byte for byte the
	// token's), with its replay, which a parsed log computes once.
	log *atomic.Pointer[measure.Log]
}

// idEntry is an IDevID chain verified to the roots.
type idEntry struct {
	idevid, issuer *x509.Certificate
	serial         []byte // HardwareModuleName hwSerialNum
}

// chainKey is the SHA-256 of a chain's certificates, each prefixed by its
// length.
func chainKey(ders [][]byte) [32]byte {
	h := sha256.New()
	var n [4]byte
	for _, d := range ders {
		binary.BigEndian.PutUint32(n[:], uint32(len(d)))
		h.Write(n[:])
		h.Write(d)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func rawChain(cs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Raw
	}
	return out
}

// Verify is the first stage: it checks the untrusted request as the
// package documentation lists, and returns the verified evidence or an
// *Error (matching ErrRefused) saying why it was refused. Any other error
// is an operational failure (registry or store unavailable, ctx done).
// Verify changes nothing but the nonce cache: the nonce is spent once the
// evidence is authenticated.
func (v *Verifier) Verify(ctx context.Context, req *Request) (*Verified, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(req.Evidence) > evidence.MaxTokenSize {
		return nil, refuse(CodeTooLarge, nil, "token of %d bytes (at most %d)", len(req.Evidence), evidence.MaxTokenSize)
	}
	// 1–2. Token signature by the Alias key, DICE chain up to the
	// DeviceID certificate, event log.
	tok, err := v.verifyToken(req.Evidence)
	if err != nil {
		return nil, err
	}
	ueid := tok.Claims.UEID
	// 3. The registry.
	rec, err := v.devices.Lookup(ctx, ueid)
	if errors.Is(err, ErrUnknownDevice) {
		return nil, refuse(CodeUnknownDevice, err, "UEID %x is not registered", ueid)
	} else if err != nil {
		return nil, fmt.Errorf("attest: registry: %w", err)
	}
	if rec.State != RegistryActive {
		return nil, refuse(CodeDeviceState, nil, "the registry lists the device as %q", clip(string(rec.State)))
	}
	if tok.Claims.Product != "" && tok.Claims.Product != rec.Product {
		return nil, refuse(CodeIdentity, nil, "the token names product %q, the registry %q", tok.Claims.Product, rec.Product)
	}
	// 4. The IDevID: the registered one, verified to the roots, of this
	// UEID, and bound to the token as the device's kind of identity says.
	if req.IDevIDChain != nil && !slices.EqualFunc(req.IDevIDChain, rec.IDevIDChain, bytes.Equal) {
		return nil, refuse(CodeIdentity, nil, "the IDevID chain sent is not the registered one")
	}
	id, err := v.bindIdentity(tok, rec)
	if err != nil {
		return nil, err
	}
	authenticated := func(e *Error) *Error { e.ueid = bytes.Clone(ueid); return e }
	// 5. Revocation, on every attestation.
	if e := v.checkRevocation(id); e != nil {
		return nil, authenticated(e)
	}
	// 6. Freshness: the nonce is ours, current and unused (spent now).
	if err := v.nonces.Spend(tok.Claims.Nonce, nil); err != nil {
		code := CodeNonceInvalid
		switch {
		case errors.Is(err, nonce.ErrExpired):
			code = CodeNonceExpired
		case errors.Is(err, nonce.ErrReplayed):
			code = CodeNonceReplayed
		case errors.Is(err, nonce.ErrFull), errors.Is(err, nonce.ErrClosed):
			code = CodeBusy
		}
		return nil, authenticated(refuse(code, err, "%v", err))
	}
	// 7. No rollback below the last accepted state.
	prev, err := v.store.State(ctx, ueid)
	if err != nil {
		return nil, fmt.Errorf("attest: store: %w", err)
	}
	out := &Verified{tok: tok, rec: *rec, idevid: id.idevid, prev: prev, at: v.now()}
	if why := out.State().Below(prev); why != "" {
		return nil, authenticated(refuse(CodeRollback, nil, "%s", why))
	}
	return out, nil
}

// bindIdentity makes step 4 of Verify for the device's kind of identity,
// on a token that verifyToken accepted and the device's active record. It
// returns the IDevID, verified to the roots.
func (v *Verifier) bindIdentity(tok *evidence.Token, rec *DeviceRecord) (idEntry, error) {
	ueid := tok.Claims.UEID
	var id idEntry
	var err error
	switch kind := rec.kind(); kind {
	case KindDICE, KindInjected:
		id, err = v.verifyIDevID(rec.IDevIDChain)
	case KindTPM:
		// The x5chain is the IDevID chain itself, and its leaf the
		// registered IDevID.
		if len(rec.IDevIDChain) == 0 || !bytes.Equal(tok.Chain[0].Raw, rec.IDevIDChain[0]) {
			return idEntry{}, refuse(CodeIdentity, nil, "the token of a device on a TPM is not signed by its registered IDevID")
		}
		id, err = v.verifyIDevID(rawChain(tok.Chain))
	default:
		return idEntry{}, refuse(CodeRecord, nil, "the registry names identity kind %q", clip(string(kind)))
	}
	if err != nil {
		return idEntry{}, err
	}
	if !bytes.Equal(id.serial, ueid) {
		return idEntry{}, refuse(CodeIdentity, nil, "the registered IDevID names UEID %x", id.serial)
	}
	if id.idevid.Subject.CommonName != rec.Product {
		return idEntry{}, refuse(CodeIdentity, nil, "the registered IDevID is for product %q", clip(id.idevid.Subject.CommonName))
	}
	last := tok.Chain[len(tok.Chain)-1]
	switch rec.kind() {
	case KindDICE:
		if !publicKeyEqual(last.PublicKey, id.idevid.PublicKey) {
			return idEntry{}, refuse(CodeIdentity, nil, "the token's DeviceID key is not the registered IDevID's")
		}
		if e := checkDeviceIDKey(rec.DeviceIDKey, id.idevid, false); e != nil {
			return idEntry{}, e
		}
	case KindInjected:
		// The IDevID certifies the key the factory HSM made; the DICE
		// chain grows from the chip's own DeviceID key, which the
		// registry binds to the UEID next to the IDevID.
		if rec.DeviceIDKey == nil {
			return idEntry{}, refuse(CodeRecord, nil, "no DeviceID key registered for a device of an injected identity")
		}
		if e := checkDeviceIDKey(rec.DeviceIDKey, last, true); e != nil {
			return idEntry{}, e
		}
	case KindTPM:
		if e := checkDeviceIDKey(rec.DeviceIDKey, id.idevid, false); e != nil {
			return idEntry{}, e
		}
		if e := v.checkTPM(tok, rec); e != nil {
			return idEntry{}, e
		}
	}
	return id, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// checkDeviceIDKey checks that the registered DeviceID key spki, if any,
// is c's key. A mismatch is the token's fault (CodeIdentity) when c is the
// token's DeviceID certificate (token), the record's (CodeRecord) when c
// is the registered IDevID. The DER is compared first, then, if it
// differs, the parsed keys.
func checkDeviceIDKey(spki []byte, c *x509.Certificate, token bool) *Error {
	if spki == nil || bytes.Equal(spki, c.RawSubjectPublicKeyInfo) {
		return nil
	}
	k, err := x509.ParsePKIXPublicKey(spki)
	switch {
	case err != nil:
		return refuse(CodeRecord, err, "the registered DeviceID key does not parse")
	case publicKeyEqual(k, c.PublicKey):
		return nil
	case token:
		return refuse(CodeIdentity, nil, "the token's DeviceID key is not the registered one")
	}
	return refuse(CodeRecord, nil, "the registered DeviceID key is not the IDevID's")
}

// iakEntry is a registered IAK, parsed, and the UEID derived from it.
type iakEntry struct {
	key  *ecdsa.PublicKey
	ueid []byte
}

// checkTPM checks the TPM quote of a device on a TPM whose token is
// signed by its registered IDevID: the registered IAK is a TPM-resident
// restricted signing key whose UEID (pluton/tpm.UEID) is the token's,
// it signed the token's quote over the token's eat_nonce, of the token's
// registers claim (tpm.VerifyEvidenceQuote; verifyToken replayed the event
// log to the same registers), and each layer's digest was extended into a
// quoted PCR as the event log says: the layer claims are signed by the
// IDevID, which any software on the device may use, and only what the
// quote covers is the TPM's word (package device, "Devices on a TPM 2.0").
func (v *Verifier) checkTPM(tok *evidence.Token, rec *DeviceRecord) *Error {
	if len(rec.IAK) == 0 {
		return refuse(CodeRecord, nil, "no IAK registered for a device on a TPM")
	}
	// The parsed IAK is remembered in the IAK cache, keyed by its bytes.
	key := chainKey([][]byte{rec.IAK})
	iak, ok := v.iakCache.get(key)
	if !ok {
		k, err := tpm.ParseIAKPublic(rec.IAK)
		if err != nil {
			return refuse(CodeRecord, err, "the registered IAK: %v", err)
		}
		u, err := tpm.UEID(k)
		if err != nil {
			return refuse(CodeRecord, err, "the registered IAK: %v", err)
		}
		iak = iakEntry{key: k, ueid: u}
		v.iakCache.put(key, iak)
	}
	if !bytes.Equal(iak.ueid, tok.Claims.UEID) {
		return refuse(CodeIdentity, nil, "the UEID %x is not the registered IAK's", tok.Claims.UEID)
	}
	if err := tpm.VerifyEvidenceQuote(tok, iak.key); err != nil {
		return refuse(CodeQuote, err, "%v", err)
	}
	q := tok.Claims.TPMQuote
	if tok.Log == nil {
		return refuse(CodeQuote, nil, "no event log to bind the layers to the quote")
	}
	for _, m := range tok.Claims.Layers {
		if m.DigestAlg != q.Bank {
			return refuse(CodeQuote, nil, "layer %q has a %v digest, the quote is of the %v bank", clip(m.Layer), m.DigestAlg, q.Bank)
		}
		if !slices.ContainsFunc(tok.Log.Events(), func(e measure.Event) bool {
			return slices.Contains(q.PCRs, e.Register) && bytes.Equal(e.Digests[q.Bank], m.Digest)
		}) {
			return refuse(CodeQuote, nil, "layer %q digest %x is in no quoted PCR", clip(m.Layer), m.Digest)
		}
	}
	return nil
}

// verifyToken parses the token and checks its signature and DICE chain:
// the whole of evidence.Verify the first time a chain is seen, then, for a
// chain already verified, the COSE signature and the event log only.
//
// The certificates of a chain already verified are not parsed again: the
// parse takes them from the cache entry, which holds them as
// evidence.Verify accepted them, under the SHA-256 of their DER
// (evidence.ParseOptions), and only if they are byte for byte the
// token's.
func (v *Verifier) verifyToken(b []byte) (*evidence.Token, error) {
	var hit []*x509.Certificate
	var lastLog *atomic.Pointer[measure.Log]
	tok, err := evidence.ParseWithOptions(b, &evidence.ParseOptions{
		Certificates: func(ders [][]byte) []*x509.Certificate {
			if e, ok := v.diceCache.get(chainKey(ders)); ok {
				hit, lastLog = e.chain, e.log
			}
			return hit
		},
		EventLog: func([]byte) *measure.Log {
			if lastLog == nil {
				return nil
			}
			return lastLog.Load()
		},
	})
	if err != nil {
		return nil, evidenceRefusal(err)
	}
	if len(hit) > 0 && len(hit) == len(tok.Chain) && hit[0] == tok.Chain[0] {
		// The chain is one evidence.Verify accepted before.
		if err := verifySign1(b, tok); err != nil {
			return nil, refuse(CodeSignature, err, "the token's signature does not verify with its Alias key")
		}
		if tok.Log != nil {
			if err := tok.Log.Verify(tok.Claims.Registers); err != nil {
				return nil, refuse(CodeEventLog, err, "the event log does not reproduce the registers")
			}
			if lastLog != nil && lastLog.Load() != tok.Log {
				lastLog.Store(tok.Log)
			}
		}
		return tok, nil
	}
	if tok, err = evidence.Verify(b, nil); err != nil {
		return nil, evidenceRefusal(err)
	}
	last := tok.Chain[len(tok.Chain)-1]
	if len(tok.Chain) < 2 || !bytes.Equal(last.RawIssuer, last.RawSubject) {
		return nil, refuse(CodeChain, nil, "the DICE chain does not end with the self-signed DeviceID certificate (a missing link?)")
	}
	e := diceEntry{deviceID: last.PublicKey, chain: slices.Clone(tok.Chain), log: new(atomic.Pointer[measure.Log])}
	if tok.Log != nil {
		e.log.Store(tok.Log)
	}
	v.diceCache.put(chainKey(rawChain(tok.Chain)), e)
	return tok, nil
}

func evidenceRefusal(err error) *Error {
	code := CodeMalformed
	switch {
	case errors.Is(err, evidence.ErrTooLarge):
		code = CodeTooLarge
	case errors.Is(err, evidence.ErrSignature):
		code = CodeSignature
	case errors.Is(err, evidence.ErrChain):
		code = CodeChain
	case errors.Is(err, evidence.ErrEventLog):
		code = CodeEventLog
	}
	return refuse(code, err, "%v", err)
}

// verifySign1 checks the COSE_Sign1 signature of a token that
// evidence.Parse accepted (RFC 9052, §4.4): the signature over
// Sig_structure = ["Signature1", body_protected, external_aad = h”,
// payload] with the leaf certificate's key, in the fixed-width form of RFC
// 9053, §2.1. The same check as evidence.Verify's first step.
//
// b was parsed strictly by evidence.Parse already (tag 18, an array of
// four, definite lengths, preferred heads, an empty unprotected map), so
// the items are read in place, without copying.
func verifySign1(b []byte, tok *evidence.Token) error {
	bad := errors.New("attest: not a COSE_Sign1")
	if len(b) < 2 || b[0] != 0xd2 || b[1] != 0x84 { // tag 18, array(4)
		return bad
	}
	rest := b[2:]
	protected, rest, ok := cborItem(rest, 2)
	if !ok || len(rest) == 0 || rest[0] != 0xa0 { // unprotected: {}
		return bad
	}
	payload, rest, ok := cborItem(rest[1:], 2)
	if !ok {
		return bad
	}
	sig, rest, ok := cborItem(rest, 2)
	if !ok || len(rest) != 0 {
		return bad
	}
	msg := make([]byte, 0, 20+len(protected)+len(payload))
	msg = append(msg, 0x84, 0x6a)
	msg = append(msg, "Signature1"...)
	msg = appendBstrHead(msg, len(protected))
	msg = append(msg, protected...)
	msg = append(msg, 0x40)
	msg = appendBstrHead(msg, len(payload))
	msg = append(msg, payload...)
	return pluton.VerifyP1363(tok.PublicKey, tok.Algorithm, msg, sig)
}

// cborItem reads a definite-length string of major type major at the
// start of b (RFC 8949, §3): its content and what follows it.
func cborItem(b []byte, major byte) (content, rest []byte, ok bool) {
	if len(b) == 0 || b[0]>>5 != major {
		return nil, nil, false
	}
	n, h := uint64(b[0]&0x1f), 1
	switch {
	case n < 24:
	case n == 24 && len(b) >= 2:
		n, h = uint64(b[1]), 2
	case n == 25 && len(b) >= 3:
		n, h = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case n == 26 && len(b) >= 5:
		n, h = uint64(binary.BigEndian.Uint32(b[1:])), 5
	default:
		return nil, nil, false
	}
	if n > uint64(len(b)-h) {
		return nil, nil, false
	}
	return b[h : h+int(n)], b[h+int(n):], true
}

// appendBstrHead appends the head of a CBOR byte string of n bytes
// (RFC 8949, §3.1, major type 2, preferred serialization).
func appendBstrHead(b []byte, n int) []byte {
	switch {
	case n < 24:
		return append(b, 0x40|byte(n))
	case n <= 0xff:
		return append(b, 0x58, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0x59), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0x5a), uint32(n))
	}
}

// verifyIDevID verifies a registered IDevID chain to the roots, once per
// chain.
func (v *Verifier) verifyIDevID(ders [][]byte) (idEntry, error) {
	if len(ders) == 0 || len(ders) > MaxIDevIDChain {
		return idEntry{}, refuse(CodeChain, nil, "registered IDevID chain of %d certificates (1 to %d)", len(ders), MaxIDevIDChain)
	}
	key := chainKey(ders)
	if e, ok := v.idCache.get(key); ok {
		return e, nil
	}
	certs := make([]*x509.Certificate, len(ders))
	for i, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return idEntry{}, refuse(CodeChain, err, "registered IDevID chain: certificate %d does not parse", i)
		}
		certs[i] = c
	}
	leaf := certs[0]
	if leaf.IsCA {
		return idEntry{}, refuse(CodeChain, nil, "the IDevID is a CA certificate")
	}
	if len(certs) < 2 {
		return idEntry{}, refuse(CodeChain, nil, "the IDevID chain has no issuer certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	// IDevIDs and CA certificates of the factory do not expire
	// (99991231235959Z); the path is validated now.
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: v.roots, Intermediates: inter, CurrentTime: v.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		code := CodeChain
		if errors.As(err, new(x509.UnknownAuthorityError)) {
			code = CodeUnknownRoot
		}
		return idEntry{}, refuse(code, err, "the IDevID chain does not verify to a factory root: %v", err)
	}
	if !bytes.Equal(leaf.RawIssuer, certs[1].RawSubject) || leaf.CheckSignatureFrom(certs[1]) != nil {
		return idEntry{}, refuse(CodeChain, nil, "the IDevID is not issued by the next certificate of its chain")
	}
	_, serial, err := ca.HardwareModuleName(leaf)
	if err != nil {
		return idEntry{}, refuse(CodeIdentity, err, "the IDevID has no HardwareModuleName")
	}
	e := idEntry{idevid: leaf, issuer: certs[1], serial: serial}
	v.idCache.put(key, e)
	return e, nil
}

// lru is a bounded least-recently-used map of verified chains.
type lru[V any] struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *lruItem[V], most recent first
	m   map[[32]byte]*list.Element
}

type lruItem[V any] struct {
	key [32]byte
	val V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, ll: list.New(), m: map[[32]byte]*list.Element{}}
}

func (c *lru[V]) get(k [32]byte) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruItem[V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[V]) put(k [32]byte, v V) {
	c.putIf(k, v, func(V, V) bool { return false })
}

// putIf is put where v replaces a cached value old only if replace(old, v).
func (c *lru[V]) putIf(k [32]byte, v V, replace func(old, v V) bool) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		if it := e.Value.(*lruItem[V]); replace(it.val, v) {
			it.val = v
		}
		c.ll.MoveToFront(e)
		return
	}
	c.m[k] = c.ll.PushFront(&lruItem[V]{key: k, val: v})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.m, e.Value.(*lruItem[V]).key)
	}
}

func (c *lru[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
