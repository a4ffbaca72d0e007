package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/internal/strictcbor"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
	"github.com/rootline/rootline/pluton/soft"
	"github.com/rootline/rootline/pluton/tpm"
)

// Files in a device's state directory.
const (
	ChipFile     = "chip.state"
	DeviceIDFile = "deviceid.crt"
	BootFile     = "boot.state"
	EventLogFile = "eventlog.bin"
)

// Registers used by the boot chain. Register 0 holds the trust policy (what
// the boot ROM measured before any layer); layer i uses register i+1.
const (
	PolicyRegister = 0
)

// LayerRegister returns the measurement register of a layer.
func LayerRegister(l boot.Layer) int {
	for i, x := range boot.Layers() {
		if x == l {
			return i + 1
		}
	}
	return -1
}

// Counter names, in the security monitor's compartment.
const policyCounter = "svn/policy"

func layerCounter(l boot.Layer) string { return "svn/" + string(l) }

// Errors of the device package.
var (
	// ErrNotBooted: the operation needs a successful boot first.
	ErrNotBooted = errors.New("device: not booted")
	// ErrNotConfigured: the chip lacks its product or root key hash fuse.
	ErrNotConfigured = errors.New("device: chip has no product or root key hash fused")
	// ErrBootState: the boot record is corrupt.
	ErrBootState = errors.New("device: boot record is corrupt")
)

// BootError says which stage of the boot chain refused. It wraps the
// typed error of pluton/boot (errors.Is(err, boot.ErrRollback) and so on).
type BootError struct {
	Stage string // "policy", "bootloader", "os", "app"
	Err   error
}

func (e *BootError) Error() string {
	return fmt.Sprintf("device: boot refused at %s: %v", e.Stage, e.Err)
}
func (e *BootError) Unwrap() error { return e.Err }

// Options configure a Device. The zero value works.
type Options struct {
	Logger *slog.Logger
	// Chip options (entropy source, DeviceID algorithm for Init).
	Chip soft.Options
}

// Device is an emulated MCU. It is safe for use by one goroutine at a time.
type Device struct {
	dir  string
	chip *soft.Chip // nil on a TPM
	log  *slog.Logger
	// tpm and tcfg are set for a device on a TPM 2.0 (InitTPM, OpenTPM);
	// banks are the PCR banks it measures into.
	tpm   *tpm.TPM
	tcfg  *tpmConfig
	banks []crypto.Hash
	// running is the state of the current boot, as a device holds it in
	// RAM; it is also in boot.state and eventlog.bin so that another
	// process (the next CLI command) can pick it up.
	running *bootState
	// dirty is set when running has changes not yet in the files.
	dirty bool
}

// bootState is a loaded, checked boot record.
type bootState struct {
	rec       *bootRecord
	log       *measure.Log
	manifests []*boot.Manifest
	// evidence signs this boot's evidence with the app layer's Alias key
	// and the recorded DICE chain (checked to certify it), derived at the
	// first attestation and kept for the boot, as the app layer of an MCU
	// keeps its Alias key in RAM while it runs; alias is that key. Both
	// are dropped, the key wiped, by the next Boot and by Close
	// (forgetKeys). Nil until the first attestation, and on a TPM.
	evidence *evidence.TokenSigner
	alias    crypto.Signer
	// claims are the claims of this boot's evidence that stay as they are
	// for the whole boot (made from log and manifests, which do not
	// change once booted): made at the first attestation and kept, so
	// that later ones do not replay and encode the log again. Nil until
	// then, and on a TPM.
	claims *bootClaims
}

// bootClaims are the claims of a boot's evidence fixed for the boot: the
// event log, the register values it replays to, and the layers. They are
// shared by the claims sets of the boot's attestations and never modified.
type bootClaims struct {
	eventLog  []byte
	registers map[crypto.Hash]map[int][]byte
	layers    []evidence.Measurement
}

// bootClaims returns st.claims, making them at the first call: the log
// replayed (measure.Restore; it is the device's own, from its RAM or from
// storage checked against the boot record's digest when loaded), the used
// registers of each bank, the log encoded, the layers' measurements.
func (st *bootState) bootClaims() (*bootClaims, error) {
	if st.claims != nil {
		return st.claims, nil
	}
	regs, err := measure.Restore(st.log)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBootState, err)
	}
	logBytes, err := st.log.MarshalBinary()
	if err != nil {
		return nil, err
	}
	c := &bootClaims{eventLog: logBytes, registers: map[crypto.Hash]map[int][]byte{}, layers: st.measurements()}
	used := usedRegisters()
	for _, bank := range regs.Banks() {
		c.registers[bank] = map[int][]byte{}
		for _, r := range used {
			v, err := regs.Value(bank, r)
			if err != nil {
				return nil, err
			}
			c.registers[bank][r] = v
		}
	}
	st.claims = c
	return c, nil
}

// forgetKeys drops the current boot's Alias key, wiping what of it can be
// wiped from here: an Ed25519 key's bytes. An ECDSA key's scalar lives
// inside crypto/ecdsa's own representation, which no API can wipe (Go 1.26
// deprecates writing PrivateKey.D, and it would not reach that copy); it is
// dropped, as SECURITY.md says of keys in Go memory.
func (st *bootState) forgetKeys() {
	if st == nil || st.alias == nil {
		return
	}
	if k, ok := st.alias.(ed25519.PrivateKey); ok {
		clear(k)
	}
	st.alias, st.evidence = nil, nil
}

func (o *Options) logger() *slog.Logger {
	if o != nil && o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (o *Options) chipOptions() *soft.Options {
	var c soft.Options
	if o != nil {
		c = o.Chip
	}
	if c.Logger == nil {
		c.Logger = o.logger()
	}
	return &c
}

// InitRequest says what to fuse into a new chip.
type InitRequest struct {
	Product     string // required for Boot; may be empty for a bare chip
	RootKeyHash []byte // SHA-256 or SHA-384 of the root key's SPKI (boot.RootKeyHash)
	// FactoryRootHash, optional, is the SHA-256 or SHA-384 of the factory
	// CA root's SubjectPublicKeyInfo (FactoryRootHash computes it): the
	// chip then installs only an IDevID chain that ends with that root.
	// Without it the chip accepts any self-signed root, and only the
	// verifier's trust anchors stand between a forged chain and the field.
	FactoryRootHash []byte
}

// Init creates a new chip in dir and fuses its identity, product and root
// key hash. It refuses a directory that already holds a chip.
func Init(ctx context.Context, dir string, req *InitRequest, opts *Options) (*Device, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	chip, err := soft.Create(filepath.Join(dir, ChipFile), opts.chipOptions())
	if err != nil {
		return nil, err
	}
	d := &Device{dir: dir, chip: chip, log: opts.logger()}
	if req != nil && req.Product != "" {
		if err := chip.FuseProductID(ctx, req.Product); err != nil {
			chip.Close()
			return nil, err
		}
	}
	if err := chip.FuseIdentity(ctx); err != nil {
		chip.Close()
		return nil, err
	}
	if req != nil && len(req.RootKeyHash) != 0 {
		if err := chip.FuseRootKeyHash(ctx, req.RootKeyHash); err != nil {
			chip.Close()
			return nil, err
		}
	}
	if req != nil && len(req.FactoryRootHash) != 0 {
		if err := chip.FuseFactoryRootHash(ctx, req.FactoryRootHash); err != nil {
			chip.Close()
			return nil, err
		}
	}
	if _, err := d.deviceIDCertificate(ctx); err != nil && !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
		chip.Close()
		return nil, err
	}
	return d, nil
}

// Open opens the device in dir.
func Open(dir string, opts *Options) (*Device, error) {
	chip, err := soft.Open(filepath.Join(dir, ChipFile), opts.chipOptions())
	if err != nil {
		return nil, err
	}
	return &Device{dir: dir, chip: chip, log: opts.logger()}, nil
}

// Chip returns the device's emulated security subsystem, or nil for a
// device on a TPM (see [Device.TPM]).
func (d *Device) Chip() *soft.Chip { return d.chip }

// Dir returns the state directory.
func (d *Device) Dir() string { return d.dir }

// Flush writes the record of the current boot (boot.state and
// eventlog.bin) so that another process using this state directory sees
// it. Both are what a running device holds in RAM: they are written
// atomically but not synced, and a power loss only means booting again.
// Close flushes too; commands that end a process after Boot or Confirm
// call Flush to see its error.
func (d *Device) Flush() error {
	if !d.dirty || d.running == nil {
		return nil
	}
	logBytes, err := d.running.log.MarshalBinary()
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	ld := sha256.Sum256(logBytes)
	d.running.rec.LogDigest = ld[:]
	data, err := recordEnc.Marshal(d.running.rec)
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	// The log first: a crash between the two writes leaves the previous
	// record next to this log, which loading refuses (LogDigest).
	if err := atomicfile.WriteVolatile(filepath.Join(d.dir, EventLogFile), logBytes, 0o600); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	if err := atomicfile.WriteVolatile(filepath.Join(d.dir, BootFile), data, 0o600); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	d.dirty = false
	return nil
}

// Close flushes the current boot's record, drops the boot's Alias key and
// closes the chip.
func (d *Device) Close() error {
	err := d.Flush()
	d.running.forgetKeys()
	if d.tpm != nil {
		return errors.Join(err, d.tpm.Close())
	}
	return errors.Join(err, d.chip.Close())
}

// Images are the untrusted inputs of a boot: the trust policy and one image
// per layer.
type Images struct {
	Policy              []byte
	Bootloader, OS, App []byte
}

func (im *Images) layer(l boot.Layer) []byte {
	switch l {
	case boot.Bootloader:
		return im.Bootloader
	case boot.OS:
		return im.OS
	case boot.App:
		return im.App
	}
	return nil
}

// bootRecord is what a successful boot leaves in boot.state: enough to
// derive the layers' CDIs again, to confirm, and to attest. No secret.
type bootRecord struct {
	Version       int           `cbor:"1,keyasint"`
	PolicyVersion uint64        `cbor:"2,keyasint"`
	PolicyDigest  []byte        `cbor:"3,keyasint"` // SHA-512 of the policy
	Layers        []layerRecord `cbor:"4,keyasint"`
	Confirmed     bool          `cbor:"5,keyasint"`
	Mode          uint8         `cbor:"6,keyasint"` // dice.Mode the layers were derived in
	// Chain is the DICE certificate chain made at boot, leaf (the app's
	// Alias certificate) first, DeviceID certificate last: each layer
	// certifies the next one's Alias key as it starts it, as DICE does.
	Chain [][]byte `cbor:"7,keyasint"`
	// LogDigest is the SHA-256 of eventlog.bin as written with this
	// record, so that a record is never paired with another boot's log.
	LogDigest []byte `cbor:"8,keyasint,omitempty"`
}

type layerRecord struct {
	Layer     boot.Layer `cbor:"1,keyasint"`
	Manifest  []byte     `cbor:"2,keyasint"` // the raw signed manifest encoding
	CodeHash  []byte     `cbor:"3,keyasint"` // SHA-512 of the payload (DICE code hash)
	Authority []byte     `cbor:"4,keyasint"` // SHA-512 of the signer key ids (DICE authority hash)
}

const bootRecordVersion = 1

var (
	recordEnc = strictcbor.EncMode()
	recordDec = strictcbor.DecMode(strictcbor.Limits{MaxNestedLevels: 8, MaxArrayElements: 16, MaxMapPairs: 16})
)

// BootResult describes a successful boot.
type BootResult struct {
	PolicyVersion uint64
	Layers        []*boot.Manifest
	Registers     *measure.Registers
}

// counter reads a security-monitor counter, 0 if it was never set.
func (d *Device) counter(ctx context.Context, name string) (uint64, error) {
	var v uint64
	var err error
	if d.tpm != nil {
		v, err = d.tpm.Counter(ctx, pluton.SecurityMonitor, name)
	} else {
		v, err = d.chip.Counter(ctx, pluton.SecurityMonitor, name)
	}
	if errors.Is(err, pluton.ErrNoSuchCounter) {
		return 0, nil
	}
	return v, err
}

// Boot verifies, measures and derives each layer. On refusal it returns a
// *BootError, removes the record of any previous boot (the device is not
// running anything), and changes no counter or fuse.
func (d *Device) Boot(ctx context.Context, im *Images) (*BootResult, error) {
	d.running.forgetKeys()
	d.running, d.dirty = nil, false
	res, rec, err := d.boot(ctx, im)
	if err != nil {
		os.Remove(filepath.Join(d.dir, BootFile))
		os.Remove(filepath.Join(d.dir, EventLogFile))
		d.log.Warn("boot refused", "err", err)
		return nil, err
	}
	d.running = &bootState{rec: rec, log: res.Registers.Log(), manifests: res.Layers}
	d.dirty = true
	d.log.Info("booted", "policy_version", res.PolicyVersion, "layers", len(res.Layers))
	return res, nil
}

func (d *Device) boot(ctx context.Context, im *Images) (*BootResult, *bootRecord, error) {
	if im == nil {
		return nil, nil, &BootError{Stage: "policy", Err: fmt.Errorf("%w: no images", pluton.ErrInvalidArgument)}
	}
	lc, err := d.lifecycle(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !lc.KeysUsable() {
		return nil, nil, &pluton.LifecycleError{Op: "boot", Current: lc}
	}
	product, rootHash, err := d.fuses(ctx)
	if err != nil {
		return nil, nil, err
	}

	// Boot ROM: the trust policy.
	minPolicy, err := d.counter(ctx, policyCounter)
	if err != nil {
		return nil, nil, err
	}
	policy, err := boot.VerifyPolicy(im.Policy, rootHash, product, minPolicy)
	if err != nil {
		return nil, nil, &BootError{Stage: "policy", Err: err}
	}
	regs, err := measure.New(d.banks...)
	if err != nil {
		return nil, nil, err
	}
	if err := regs.Measure(PolicyRegister, measure.EVNonhostConfig, im.Policy,
		fmt.Appendf(nil, "rootline trust policy %s v%d", product, policy.Version)); err != nil {
		return nil, nil, err
	}
	pd := sha512.Sum512(im.Policy)
	rec := &bootRecord{Version: bootRecordVersion, PolicyVersion: policy.Version, PolicyDigest: pd[:], Mode: uint8(diceMode(lc))}
	res := &BootResult{PolicyVersion: policy.Version, Registers: regs}

	for _, layer := range boot.Layers() {
		img := im.layer(layer)
		minSVN, err := d.counter(ctx, layerCounter(layer))
		if err != nil {
			return nil, nil, err
		}
		m, payload, err := policy.VerifyImage(img, layer, minSVN)
		if err != nil {
			return nil, nil, &BootError{Stage: string(layer), Err: err}
		}
		parsed, err := boot.ParseImage(img)
		if err != nil {
			return nil, nil, &BootError{Stage: string(layer), Err: err}
		}
		reg := LayerRegister(layer)
		if err := regs.Measure(reg, measure.EVPostCode, payload,
			fmt.Appendf(nil, "%s %s %s svn %d", layer, m.Product, m.Version, m.SVN)); err != nil {
			return nil, nil, err
		}
		if err := regs.Measure(reg, measure.EVNonhostConfig, parsed.RawManifest,
			fmt.Appendf(nil, "%s manifest", layer)); err != nil {
			return nil, nil, err
		}
		code := sha512.Sum512(payload)
		auth := sha512.New()
		for _, id := range m.SignerKeyIDs {
			auth.Write(id)
		}
		rec.Layers = append(rec.Layers, layerRecord{Layer: layer, Manifest: bytes.Clone(parsed.RawManifest),
			CodeHash: code[:], Authority: auth.Sum(nil)})
		res.Layers = append(res.Layers, m)
	}
	if d.tpm != nil {
		// No DICE on a TPM: the verified chain is measured into its PCRs.
		if err := d.measureTPM(ctx, regs); err != nil {
			return nil, nil, err
		}
		return res, rec, nil
	}
	// Make sure the chain derives (the DICE engine runs at boot).
	// The DICE engine and each layer derive the next layer's identity and
	// certify it.
	keys, err := d.derive(ctx, rec)
	if err != nil {
		return nil, nil, err
	}
	rec.Chain, err = d.certificates(ctx, rec, keys)
	keys.wipe()
	if err != nil {
		return nil, nil, err
	}
	return res, rec, nil
}

// diceMode maps the lifecycle to the DICE mode of the Open Profile:
// Maintenance while the chip is on the factory line, Normal afterwards.
func diceMode(l pluton.Lifecycle) dice.Mode {
	if l == pluton.Manufacturing {
		return dice.ModeMaintenance
	}
	return dice.ModeNormal
}

func (r *layerRecord) inputs(mode dice.Mode) (*dice.InputValues, error) {
	in := &dice.InputValues{ConfigType: dice.ConfigDescriptor, ConfigDescriptor: r.Manifest, Mode: mode}
	if len(r.CodeHash) != len(in.CodeHash) || len(r.Authority) != len(in.AuthorityHash) {
		return nil, ErrBootState
	}
	copy(in.CodeHash[:], r.CodeHash)
	copy(in.AuthorityHash[:], r.Authority)
	return in, nil
}

// loadRecord returns the current boot: from memory, or else from
// boot.state and the event log, checked to belong together.
func (d *Device) loadRecord() (*bootRecord, *measure.Log, error) {
	st, err := d.current()
	if err != nil {
		return nil, nil, err
	}
	return st.rec, st.log, nil
}

func (d *Device) current() (*bootState, error) {
	if d.running != nil {
		return d.running, nil
	}
	data, err := os.ReadFile(filepath.Join(d.dir, BootFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotBooted
	}
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	rec := new(bootRecord)
	if err := recordDec.Unmarshal(data, rec); err != nil || rec.Version != bootRecordVersion || len(rec.Layers) != len(boot.Layers()) {
		return nil, fmt.Errorf("%w: %v", ErrBootState, err)
	}
	want := len(boot.Layers()) + 1
	if d.tpm != nil {
		want = 0 // no DICE chain on a TPM: its IDevID signs the evidence
	}
	if len(rec.Chain) != want {
		return nil, fmt.Errorf("%w: chain of %d certificates", ErrBootState, len(rec.Chain))
	}
	st := &bootState{rec: rec}
	for i, l := range boot.Layers() {
		if rec.Layers[i].Layer != l {
			return nil, fmt.Errorf("%w: layer %d is %q", ErrBootState, i, rec.Layers[i].Layer)
		}
		m, err := rec.Layers[i].manifest()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBootState, err)
		}
		st.manifests = append(st.manifests, m)
	}
	raw, err := os.ReadFile(filepath.Join(d.dir, EventLogFile))
	if err != nil {
		return nil, fmt.Errorf("%w: event log: %v", ErrBootState, err)
	}
	if ld := sha256.Sum256(raw); !bytes.Equal(ld[:], rec.LogDigest) {
		return nil, fmt.Errorf("%w: the event log is not this boot's", ErrBootState)
	}
	if st.log, err = measure.ParseLog(raw); err != nil {
		return nil, fmt.Errorf("%w: event log: %v", ErrBootState, err)
	}
	d.running = st
	return st, nil
}

func (r *layerRecord) manifest() (*boot.Manifest, error) {
	return boot.ParseManifest(r.Manifest)
}

// layerKeys is the DICE chain of one boot: each layer's CDIs, and its
// Alias key, derived from its CDI_Attest when first asked for.
type layerKeys struct {
	alg     pluton.Algorithm
	cdis    [][]byte // CDI_Attest per layer
	seals   [][]byte
	aliases []crypto.Signer
}

// alias returns layer i's Alias key: ASYM_KDF of its CDI_Attest.
func (k *layerKeys) alias(i int) (crypto.Signer, error) {
	if k.aliases[i] == nil {
		s, err := dice.KeyPair(k.cdis[i], k.alg)
		if err != nil {
			return nil, fmt.Errorf("device: alias key of layer %d: %w", i, err)
		}
		k.aliases[i] = s
	}
	return k.aliases[i], nil
}

func (k *layerKeys) wipe() {
	for _, c := range k.cdis {
		clear(c)
	}
	for _, c := range k.seals {
		clear(c)
	}
}

// derive runs DICE over the recorded layers: the chip's engine for the
// first, dice.Derive for the others.
func (d *Device) derive(ctx context.Context, rec *bootRecord) (*layerKeys, error) {
	id, err := d.chip.Identity(ctx)
	if err != nil {
		return nil, err
	}
	k := &layerKeys{alg: id.Algorithm, aliases: make([]crypto.Signer, len(rec.Layers))}
	var attest, seal []byte
	for i := range rec.Layers {
		in, err := rec.Layers[i].inputs(dice.Mode(rec.Mode))
		if err != nil {
			k.wipe()
			return nil, err
		}
		var na, ns []byte
		if i == 0 {
			na, ns, err = d.chip.FirstLayerCDIs(ctx, in)
		} else {
			na, ns, err = dice.Derive(attest, seal, in)
		}
		if err != nil {
			k.wipe()
			return nil, fmt.Errorf("device: DICE layer %s: %w", rec.Layers[i].Layer, err)
		}
		k.cdis, k.seals = append(k.cdis, na), append(k.seals, ns)
		attest, seal = na, ns
	}
	return k, nil
}

// Confirm marks the running images good: each layer's counter is raised to
// the SVN it runs, and the policy counter to the policy's version. Until
// then, the previous images still boot.
func (d *Device) Confirm(ctx context.Context) error {
	st, err := d.current()
	if err != nil {
		return err
	}
	rec := st.rec
	for i, l := range rec.Layers {
		if err := d.advanceCounter(ctx, layerCounter(l.Layer), st.manifests[i].SVN); err != nil {
			return fmt.Errorf("device: confirm %s: %w", l.Layer, err)
		}
	}
	if err := d.advanceCounter(ctx, policyCounter, rec.PolicyVersion); err != nil {
		return fmt.Errorf("device: confirm policy: %w", err)
	}
	rec.Confirmed = true
	d.dirty = true
	d.log.Info("boot confirmed", "policy_version", rec.PolicyVersion)
	return nil
}

// Registers returns the measurement registers of the current boot,
// replayed from its event log.
func (d *Device) Registers(ctx context.Context) (*measure.Registers, error) {
	_, lg, err := d.loadRecord()
	if err != nil {
		return nil, err
	}
	return measure.Restore(lg)
}

// EventLog returns the TCG event log of the current boot.
func (d *Device) EventLog(ctx context.Context) ([]byte, error) {
	_, lg, err := d.loadRecord()
	if err != nil {
		return nil, err
	}
	return lg.MarshalBinary()
}

// Manifests returns the manifests of the running layers.
func (d *Device) Manifests(ctx context.Context) ([]*boot.Manifest, error) {
	st, err := d.current()
	if err != nil {
		return nil, err
	}
	return slices.Clone(st.manifests), nil
}

// Certificates returns the DICE certificate chain of the current boot, leaf
// (the app's Alias certificate) first, ending with the self-signed DeviceID
// certificate.
//
// On a TPM it returns the chain of the key that signs evidence: the
// installed IDevID chain, or before provisioning the self-signed
// certificate of the TPM's IDevID key.
func (d *Device) Certificates(ctx context.Context) ([]*x509.Certificate, error) {
	rec, _, err := d.loadRecord()
	if err != nil {
		return nil, err
	}
	if d.tpm != nil {
		return d.tpmChain(ctx)
	}
	out := make([]*x509.Certificate, len(rec.Chain))
	for i, der := range rec.Chain {
		if out[i], err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// deviceIDCertificate returns the chip's self-signed DeviceID certificate,
// made once and kept in the state directory: it is the device's stable
// local trust anchor until the factory installs its IDevID.
func (d *Device) deviceIDCertificate(ctx context.Context) (*x509.Certificate, error) {
	id, err := d.chip.Identity(ctx)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(d.dir, DeviceIDFile)
	if der, err := os.ReadFile(path); err == nil {
		c, err := x509.ParseCertificate(der)
		if err == nil && publicKeyEqual(c.PublicKey, id.DeviceID) {
			return c, nil
		}
		return nil, fmt.Errorf("%w: %s does not hold this chip's DeviceID certificate", ErrBootState, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("device: %w", err)
	}
	devSigner, err := d.chip.Signer(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle)
	if err != nil {
		return nil, err
	}
	der, err := dice.DeviceIDCertificate(devSigner, &dice.CertificateTemplate{
		Subject: id.DeviceID, IsCA: true, MaxPathLen: -1, UEID: id.UEID,
	})
	if err != nil {
		return nil, fmt.Errorf("device: DeviceID certificate: %w", err)
	}
	if err := atomicfile.Write(path, der, 0o644); err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return x509.ParseCertificate(der)
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	x, err1 := pluton.MarshalPublicKey(a)
	y, err2 := pluton.MarshalPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// certificates builds the DICE chain, leaf first.
func (d *Device) certificates(ctx context.Context, rec *bootRecord, keys *layerKeys) ([][]byte, error) {
	devSigner, err := d.chip.Signer(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle)
	if err != nil {
		return nil, err
	}
	product, _ := d.chip.ProductID(ctx)
	issuerCert, err := d.deviceIDCertificate(ctx)
	if err != nil {
		return nil, err
	}
	rootDER := issuerCert.Raw
	var issuer crypto.Signer = devSigner
	chain := [][]byte{rootDER}
	for i, l := range rec.Layers {
		m, err := l.manifest()
		if err != nil {
			return nil, err
		}
		last := i == len(rec.Layers)-1
		alias, err := keys.alias(i)
		if err != nil {
			return nil, err
		}
		der, err := dice.AliasCertificate(issuer, issuerCert, &dice.CertificateTemplate{
			Subject: alias.Public(),
			IsCA:    !last,
			MaxPathLen: func() int {
				if last {
					return 0
				}
				return len(rec.Layers) - 2 - i
			}(),
			Tcb: &dice.TcbInfo{
				Vendor: "rootline", Model: product, Version: m.Version,
				SVN: m.SVN, HasSVN: true, Layer: uint64(i), HasLayer: true,
				FWIDs: []dice.FWID{{Hash: m.DigestAlg, Digest: m.Digest}},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("device: alias certificate of %s: %w", l.Layer, err)
		}
		if issuerCert, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		issuer = alias
		chain = append(chain, der)
	}
	// Leaf first.
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// Attest produces evidence over nonce (8 to 64 bytes), signed by the app
// layer's Alias key, with the DICE chain in its x5chain header.
//
// On a TPM, see the package documentation ("Devices on a TPM 2.0"): the
// evidence is signed by the TPM's IDevID key and carries a quote of the
// PCRs by its IAK.
func (d *Device) Attest(ctx context.Context, nonce []byte) ([]byte, error) {
	st, err := d.current()
	if err != nil {
		return nil, err
	}
	if d.tpm != nil {
		return d.attestTPM(ctx, st, nonce)
	}
	// The chip refuses to derive once its keys are unusable (a lifecycle
	// past them); the Alias key kept from this boot's derivation is then
	// dropped and refused alike.
	lc, err := d.chip.Lifecycle(ctx)
	if err != nil {
		return nil, err
	}
	if !lc.KeysUsable() {
		st.forgetKeys()
		return nil, fmt.Errorf("device: %w", &pluton.LifecycleError{Op: "attest", Current: lc})
	}
	signer, err := d.evidenceSigner(ctx, st)
	if err != nil {
		return nil, err
	}
	id, err := d.chip.Identity(ctx)
	if err != nil {
		return nil, err
	}
	product, _ := d.chip.ProductID(ctx)
	counters, err := d.chip.AllCounters(ctx)
	if err != nil {
		return nil, err
	}
	// The log, the registers it replays to and the layers are the boot's:
	// made once (bootClaims), shared by every claims set of the boot.
	fixed, err := st.bootClaims()
	if err != nil {
		return nil, err
	}
	claims := &evidence.Claims{
		Nonce: nonce, UEID: id.UEID, Product: product, Lifecycle: lc,
		Counters:  make(map[string]uint64, len(counters)),
		Registers: fixed.registers,
		EventLog:  fixed.eventLog,
		Layers:    fixed.layers,
	}
	for _, c := range counters {
		if c.Compartment == pluton.SecurityMonitor {
			claims.Counters[c.Name] = c.Value
		}
	}
	return signer.Sign(nil, claims)
}

// evidenceSigner returns the current boot's evidence signer: the app
// layer's Alias key with the recorded DICE chain, which must certify it.
// The first call of a boot derives the key (DICE over the recorded layers,
// the CDIs wiped at once); later ones return it from st.
func (d *Device) evidenceSigner(ctx context.Context, st *bootState) (*evidence.TokenSigner, error) {
	if st.evidence != nil {
		return st.evidence, nil
	}
	rec := st.rec
	keys, err := d.derive(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer keys.wipe()
	leaf, err := keys.alias(len(rec.Layers) - 1)
	if err != nil {
		return nil, err
	}
	chain := rec.Chain
	if c, err := x509.ParseCertificate(chain[0]); err != nil || !publicKeyEqual(c.PublicKey, leaf.Public()) {
		return nil, fmt.Errorf("%w: the recorded chain does not certify this boot's Alias key", ErrBootState)
	}
	ts, err := evidence.NewTokenSigner(leaf, keys.alg, chain)
	if err != nil {
		return nil, fmt.Errorf("%w: the recorded chain: %v", ErrBootState, err)
	}
	st.evidence, st.alias = ts, leaf
	return ts, nil
}

// measurements are the evidence claims of the running layers.
func (st *bootState) measurements() []evidence.Measurement {
	var out []evidence.Measurement
	for i, l := range st.rec.Layers {
		m := st.manifests[i]
		signer := []byte(nil)
		if len(m.SignerKeyIDs) > 0 {
			signer = m.SignerKeyIDs[0]
		}
		out = append(out, evidence.Measurement{
			Layer: string(l.Layer), Version: m.Version, SVN: m.SVN,
			Digest: m.Digest, DigestAlg: m.DigestAlg, SignerID: signer,
		})
	}
	return out
}

// usedRegisters are the registers the boot chain measures into.
func usedRegisters() []int {
	used := []int{PolicyRegister}
	for _, l := range boot.Layers() {
		used = append(used, LayerRegister(l))
	}
	return used
}

// lifecycle returns the chip's lifecycle state (on a TPM, see
// tpmLifecycle).
func (d *Device) lifecycle(ctx context.Context) (pluton.Lifecycle, error) {
	if d.tpm != nil {
		return d.tpmLifecycle(ctx)
	}
	return d.chip.Lifecycle(ctx)
}

// fuses returns the product and root key hash the boot ROM checks the
// policy against: fuses of the emulated chip, the configuration of a
// device on a TPM.
func (d *Device) fuses(ctx context.Context) (string, []byte, error) {
	if d.tpm != nil {
		if d.tcfg.Product == "" || len(d.tcfg.RootKeyHash) == 0 {
			return "", nil, ErrNotConfigured
		}
		return d.tcfg.Product, d.tcfg.RootKeyHash, nil
	}
	product, err := d.chip.ProductID(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrNotConfigured, err)
	}
	rootHash, err := d.chip.RootKeyHash(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrNotConfigured, err)
	}
	return product, rootHash, nil
}

// advanceCounter raises a security-monitor counter.
func (d *Device) advanceCounter(ctx context.Context, name string, v uint64) error {
	if d.tpm != nil {
		return d.tpm.AdvanceCounter(ctx, pluton.SecurityMonitor, name, v)
	}
	return d.chip.AdvanceCounter(ctx, pluton.SecurityMonitor, name, v)
}
