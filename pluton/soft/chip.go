package soft

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/drbg"
	"github.com/rootline/rootline/pluton/internal/keys"
)

// Options configure an emulated chip. The zero value works.
type Options struct {
	// Entropy is the noise source the DRBG is seeded from. It is wrapped
	// in SP 800-90B health tests. Default: crypto/rand.Reader.
	Entropy io.Reader
	// MinEntropy is the min-entropy claimed per byte of Entropy, in bits
	// (0 < MinEntropy <= 8). It sets the health-test cutoffs and how much
	// input is drawn per seed. Default: 7.
	MinEntropy float64
	// DeviceIDAlgorithm is the algorithm of the DICE DeviceID key, fixed
	// when the identity is fused. Default: ECDSA P-256.
	DeviceIDAlgorithm pluton.Algorithm
	// Logger receives lifecycle and key events (never secrets). Default:
	// discard.
	Logger *slog.Logger
}

func (o *Options) withDefaults() (*Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Entropy == nil {
		c.Entropy = rand.Reader
	}
	if c.MinEntropy == 0 {
		c.MinEntropy = 7
	}
	if c.DeviceIDAlgorithm == pluton.AlgorithmUnknown {
		c.DeviceIDAlgorithm = pluton.ECDSAP256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if !(c.MinEntropy > 0 && c.MinEntropy <= 8) {
		return nil, fmt.Errorf("soft: %w: MinEntropy %v not in (0, 8]", pluton.ErrInvalidArgument, c.MinEntropy)
	}
	if !c.DeviceIDAlgorithm.Valid() {
		return nil, fmt.Errorf("soft: DeviceID: %w", pluton.ErrUnsupportedAlgorithm)
	}
	return &c, nil
}

// Chip is a software-emulated security processor. Its fuses and key slots
// live in one state file, rewritten atomically on every change, so that a
// chip survives restarts and a crash at any instant loses nothing that a
// call reported as done. A Chip holds an exclusive lock on its state file
// while open. It implements [pluton.Subsystem].
type Chip struct {
	path string
	opts *Options
	log  *slog.Logger
	lock *fileLock
	rng  *drbg.Live

	mu       sync.RWMutex
	closed   bool
	state    *chipState
	signers  map[pluton.KeyHandle]crypto.Signer // from state.Keys, plus the DeviceID
	identity *pluton.Identity
}

var _ pluton.Subsystem = (*Chip)(nil)

// Create makes a new blank chip whose state is stored at path. It fails
// with ErrChipExists if the file exists.
func Create(path string, opts *Options) (*Chip, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		lock.release()
		return nil, fmt.Errorf("%w: %s", ErrChipExists, path)
	}
	st := &chipState{Lifecycle: pluton.Blank, NextHandle: uint32(pluton.DeviceIDHandle) + 1}
	data, err := marshalState(st)
	if err == nil {
		err = atomicfile.Write(path, data, 0o600)
	}
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("soft: creating chip: %w", err)
	}
	c, err := newChip(path, o, lock, st)
	if err != nil {
		lock.release()
		return nil, err
	}
	c.log.Info("chip created", "state", path)
	return c, nil
}

// Open loads the chip whose state is at path. A missing file fails with
// ErrNoChip; a truncated, corrupted or future-version file with a
// *StateError, and nothing of it is used.
func Open(path string, opts *Options) (*Chip, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoChip, path)
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		lock.release()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoChip, path)
		}
		return nil, fmt.Errorf("soft: %w", err)
	}
	st, err := unmarshalState(data)
	clear(data)
	if err != nil {
		lock.release()
		var se *StateError
		if errors.As(err, &se) {
			se.Path = path
		}
		return nil, err
	}
	c, err := newChip(path, o, lock, st)
	if err != nil {
		lock.release()
		st.wipe()
		return nil, err
	}
	return c, nil
}

func newChip(path string, o *Options, lock *fileLock, st *chipState) (*Chip, error) {
	src, err := drbg.NewHealthTestedSource(o.Entropy, o.MinEntropy)
	if err != nil {
		return nil, fmt.Errorf("soft: entropy source: %w", err)
	}
	rng, err := drbg.NewLive(src, []byte("rootline pluton/soft v1"))
	if err != nil {
		return nil, fmt.Errorf("soft: DRBG: %w", err)
	}
	c := &Chip{path: path, opts: o, log: o.Logger, lock: lock, rng: rng, state: st}
	signers, id, err := c.rebuild(st, nil)
	if err != nil {
		return nil, err
	}
	c.signers, c.identity = signers, id
	return c, nil
}

// rebuild derives the in-memory signers and identity from st, reusing the
// signers of prev for handles that still exist (handles are never reused).
// Keys that fail to load make the whole state unusable: nothing is
// half-loaded.
func (c *Chip) rebuild(st *chipState, prev map[pluton.KeyHandle]crypto.Signer) (map[pluton.KeyHandle]crypto.Signer, *pluton.Identity, error) {
	signers := make(map[pluton.KeyHandle]crypto.Signer, len(st.Keys)+1)
	var id *pluton.Identity
	if st.Lifecycle != pluton.Blank {
		pub, alg, err := pluton.ParsePublicKey(st.DeviceIDPub)
		if err != nil || alg != st.DeviceIDAlg {
			return nil, nil, &StateError{Path: c.path, Reason: "DeviceID public key does not parse", Err: ErrStateCorrupt}
		}
		id = &pluton.Identity{UEID: bytes.Clone(st.UEID), Algorithm: alg, DeviceID: pub}
		if s, ok := prev[pluton.DeviceIDHandle]; ok && !st.UDSDestroyed {
			signers[pluton.DeviceIDHandle] = s
		} else if !st.UDSDestroyed {
			s, err := deviceIDKey(st.UDS, st.DeviceIDAlg)
			if err != nil {
				return nil, nil, err
			}
			if !publicEqual(s.Public(), pub) {
				return nil, nil, &StateError{Path: c.path, Reason: "DeviceID key does not match the fused UDS", Err: ErrStateCorrupt}
			}
			signers[pluton.DeviceIDHandle] = s
		}
	}
	for _, k := range st.Keys {
		if s, ok := prev[k.Handle]; ok {
			signers[k.Handle] = s
			continue
		}
		s, err := keys.FromPrivate(k.Algorithm, k.Private)
		if err != nil {
			return nil, nil, &StateError{Path: c.path, Reason: fmt.Sprintf("key %d: %v", k.Handle, err), Err: ErrStateCorrupt}
		}
		signers[k.Handle] = s
	}
	return signers, id, nil
}

// deviceIDKey derives the DICE DeviceID key from the UDS (Open Profile for
// DICE: the UDS is the first CDI; its key pair is ASYM_KDF of it) and runs
// a pairwise-consistency test on it.
func deviceIDKey(uds []byte, alg pluton.Algorithm) (crypto.Signer, error) {
	if err := keys.SelfTest(alg); err != nil {
		return nil, err
	}
	s, err := dice.KeyPair(uds, alg)
	if err != nil {
		return nil, fmt.Errorf("soft: deriving DeviceID: %w", err)
	}
	if err := keys.PairwiseTest(alg, s); err != nil {
		return nil, err
	}
	return s, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	x, err1 := pluton.MarshalPublicKey(a)
	y, err2 := pluton.MarshalPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// Path returns the state file's path.
func (c *Chip) Path() string { return c.path }

// Close wipes the chip's secrets from memory and releases the state lock.
func (c *Chip) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.state.wipe()
	c.signers = nil
	return c.lock.release()
}

// update applies f to a copy of the state, persists the copy atomically,
// and only then makes it current. If f or the write fails, the chip (in
// memory and on disk) is unchanged.
func (c *Chip) update(f func(s *chipState) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return pluton.ErrClosed
	}
	next := c.state.clone()
	if err := f(next); err != nil {
		next.wipe()
		return err
	}
	signers, id, err := c.rebuild(next, c.signers)
	if err != nil {
		next.wipe()
		return err
	}
	data, err := marshalState(next)
	if err == nil {
		err = atomicfile.Write(c.path, data, 0o600)
		clear(data)
	}
	if err != nil {
		next.wipe()
		return fmt.Errorf("soft: persisting state: %w", err)
	}
	c.state.wipe()
	c.state, c.signers, c.identity = next, signers, id
	return nil
}

// read runs f on the current state under the read lock.
func (c *Chip) read(f func(s *chipState) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return pluton.ErrClosed
	}
	return f(c.state)
}

// Random fills p from the chip's CTR_DRBG (AES-256, SP 800-90A), which
// reseeds from the health-tested entropy source.
func (c *Chip) Random(ctx context.Context, p []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.RLock()
	closed := c.closed
	c.mu.RUnlock()
	if closed {
		return pluton.ErrClosed
	}
	if _, err := io.ReadFull(c.rng, p); err != nil {
		return fmt.Errorf("soft: random: %w", err)
	}
	return nil
}

// FuseIdentity draws the UDS and UEID and burns them, moving the chip from
// Blank to Manufacturing. The DRBG is reseeded from the entropy source
// first (prediction resistance), so the UDS carries fresh entropy.
func (c *Chip) FuseIdentity(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	alg := c.opts.DeviceIDAlgorithm
	if err := keys.SelfTest(alg); err != nil {
		return err
	}
	err := c.update(func(s *chipState) error {
		if s.Lifecycle != pluton.Blank {
			return fmt.Errorf("soft: fusing identity: %w (lifecycle %s)", pluton.ErrFuseWritten, s.Lifecycle)
		}
		if err := c.rng.Reseed([]byte("fuse identity")); err != nil {
			return fmt.Errorf("soft: fusing identity: %w", err)
		}
		uds := make([]byte, udsLen)
		ueid := make([]byte, ueidLen)
		ueid[0] = 0x01 // RFC 9711 §4.2.1.1: type RAND
		if _, err := io.ReadFull(c.rng, uds); err != nil {
			return fmt.Errorf("soft: fusing identity: %w", err)
		}
		if _, err := io.ReadFull(c.rng, ueid[1:]); err != nil {
			clear(uds)
			return fmt.Errorf("soft: fusing identity: %w", err)
		}
		signer, err := deviceIDKey(uds, alg)
		if err != nil {
			clear(uds)
			return err
		}
		pub, err := pluton.MarshalPublicKey(signer.Public())
		if err != nil {
			clear(uds)
			return err
		}
		s.UDS, s.UEID, s.DeviceIDAlg, s.DeviceIDPub = uds, ueid, alg, pub
		s.Lifecycle = pluton.Manufacturing
		return nil
	})
	if err == nil {
		c.log.Info("identity fused", "lifecycle", pluton.Manufacturing, "deviceid_alg", alg)
	}
	return err
}

// FuseRootKeyHash burns the hash (SHA-256 or SHA-384, 32 or 48 bytes) of
// the product's root image-signing key. Allowed in Manufacturing only.
func (c *Chip) FuseRootKeyHash(ctx context.Context, hash []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(hash) != 32 && len(hash) != 48 {
		return fmt.Errorf("soft: %w: root key hash of %d bytes (want 32 or 48)", pluton.ErrInvalidArgument, len(hash))
	}
	return c.update(func(s *chipState) error {
		if len(s.RootKeyHash) != 0 {
			return fmt.Errorf("soft: root key hash: %w", pluton.ErrFuseWritten)
		}
		if s.Lifecycle != pluton.Manufacturing {
			return &pluton.LifecycleError{Op: "fuse root key hash", Current: s.Lifecycle}
		}
		s.RootKeyHash = bytes.Clone(hash)
		return nil
	})
}

// FuseFactoryRootHash burns the hash (SHA-256 or SHA-384, 32 or 48 bytes)
// of the factory CA root's SubjectPublicKeyInfo: the anchor against which
// the chip checks the IDevID chain a station writes into it (DESIGN.md,
// "The factory flow", step 6). Write-once; allowed in Manufacturing only.
func (c *Chip) FuseFactoryRootHash(ctx context.Context, hash []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(hash) != 32 && len(hash) != 48 {
		return fmt.Errorf("soft: %w: factory root hash of %d bytes (want 32 or 48)", pluton.ErrInvalidArgument, len(hash))
	}
	return c.update(func(s *chipState) error {
		if len(s.FactoryRootHash) != 0 {
			return fmt.Errorf("soft: factory root hash: %w", pluton.ErrFuseWritten)
		}
		if s.Lifecycle != pluton.Manufacturing {
			return &pluton.LifecycleError{Op: "fuse factory root hash", Current: s.Lifecycle}
		}
		s.FactoryRootHash = bytes.Clone(hash)
		return nil
	})
}

// FactoryRootHash returns the fused factory root hash, or an error
// matching pluton.ErrFuseNotWritten.
func (c *Chip) FactoryRootHash(ctx context.Context) ([]byte, error) {
	var h []byte
	err := c.read(func(s *chipState) error {
		if len(s.FactoryRootHash) == 0 {
			return fmt.Errorf("soft: factory root hash: %w", pluton.ErrFuseNotWritten)
		}
		h = bytes.Clone(s.FactoryRootHash)
		return nil
	})
	return h, err
}

// RootKeyHash returns the fused root key hash.
func (c *Chip) RootKeyHash(ctx context.Context) ([]byte, error) {
	var h []byte
	err := c.read(func(s *chipState) error {
		if len(s.RootKeyHash) == 0 {
			return fmt.Errorf("soft: root key hash: %w", pluton.ErrFuseNotWritten)
		}
		h = bytes.Clone(s.RootKeyHash)
		return nil
	})
	return h, err
}

// FuseProductID burns the product identifier (1–64 of [A-Za-z0-9._-]),
// which the boot ROM compares with each image manifest. Write-once; allowed
// in Blank and Manufacturing.
func (c *Chip) FuseProductID(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validProductID(id); err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	return c.update(func(s *chipState) error {
		if s.ProductID != "" {
			return fmt.Errorf("soft: product id: %w", pluton.ErrFuseWritten)
		}
		if s.Lifecycle != pluton.Blank && s.Lifecycle != pluton.Manufacturing {
			return &pluton.LifecycleError{Op: "fuse product id", Current: s.Lifecycle}
		}
		s.ProductID = id
		return nil
	})
}

// ProductID returns the fused product identifier, or ErrFuseNotWritten.
func (c *Chip) ProductID(ctx context.Context) (string, error) {
	var id string
	err := c.read(func(s *chipState) error {
		if s.ProductID == "" {
			return fmt.Errorf("soft: product id: %w", pluton.ErrFuseNotWritten)
		}
		id = s.ProductID
		return nil
	})
	return id, err
}

// Identity returns the UEID and the DeviceID public key.
func (c *Chip) Identity(ctx context.Context) (*pluton.Identity, error) {
	var id *pluton.Identity
	err := c.read(func(s *chipState) error {
		if c.identity == nil {
			return fmt.Errorf("soft: identity: %w", pluton.ErrFuseNotWritten)
		}
		cp := *c.identity
		cp.UEID = bytes.Clone(cp.UEID)
		id = &cp
		return nil
	})
	return id, err
}

// Lifecycle returns the lifecycle state.
func (c *Chip) Lifecycle(ctx context.Context) (pluton.Lifecycle, error) {
	var l pluton.Lifecycle
	err := c.read(func(s *chipState) error { l = s.Lifecycle; return nil })
	return l, err
}

// Transition moves the lifecycle forward. Entering RMA or Decommissioned
// erases every key slot; Decommissioned also erases the UDS, so the
// DeviceID key is gone for good (the UEID and DeviceID public key remain
// readable, for the records).
func (c *Chip) Transition(ctx context.Context, to pluton.Lifecycle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var from pluton.Lifecycle
	err := c.update(func(s *chipState) error {
		from = s.Lifecycle
		if to == pluton.Manufacturing && from == pluton.Blank {
			return &pluton.LifecycleError{Op: "transition (use FuseIdentity)", Current: from, Want: to}
		}
		if !from.CanTransition(to) {
			return &pluton.LifecycleError{Op: "transition", Current: from, Want: to}
		}
		s.Lifecycle = to
		if to == pluton.RMA || to == pluton.Decommissioned {
			for i := range s.Keys {
				clear(s.Keys[i].Private)
			}
			s.Keys = nil
			for i := range s.Secrets {
				clear(s.Secrets[i].Value)
			}
			s.Secrets = nil
		}
		if to == pluton.Decommissioned {
			clear(s.UDS)
			s.UDS, s.UDSDestroyed = nil, true
		}
		return nil
	})
	if err == nil {
		c.log.Info("lifecycle transition", "from", from, "to", to)
	}
	return err
}

func usable(op string, s *chipState) error {
	if !s.Lifecycle.KeysUsable() {
		return &pluton.LifecycleError{Op: op, Current: s.Lifecycle}
	}
	return nil
}

// GenerateKey creates a key from the chip's DRBG in a new slot.
func (c *Chip) GenerateKey(ctx context.Context, req *pluton.KeyRequest) (*pluton.KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("soft: generate key: %w", err)
	}
	var info *pluton.KeyInfo
	err := c.update(func(s *chipState) error {
		if err := usable("generate key", s); err != nil {
			return err
		}
		if len(s.Keys) >= maxKeySlots {
			return fmt.Errorf("soft: generate key: %w (%d key slots)", pluton.ErrSlotsFull, maxKeySlots)
		}
		if s.NextHandle == 1<<32-1 {
			return fmt.Errorf("soft: generate key: %w (handles exhausted)", pluton.ErrSlotsFull)
		}
		priv, signer, err := keys.Generate(req.Algorithm, c.rng)
		if err != nil {
			return fmt.Errorf("soft: generate key: %w", err)
		}
		h := pluton.KeyHandle(s.NextHandle)
		s.NextHandle++
		s.Keys = append(s.Keys, keySlot{Handle: h, Compartment: req.Compartment, Algorithm: req.Algorithm,
			Usage: req.Usage, Label: req.Label, Private: priv})
		info = &pluton.KeyInfo{Handle: h, Compartment: req.Compartment, Algorithm: req.Algorithm,
			Usage: req.Usage, Label: req.Label, Public: signer.Public()}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.log.Info("key generated", "handle", uint32(info.Handle), "compartment", string(info.Compartment), "alg", info.Algorithm, "usage", info.Usage)
	return info, nil
}

// slot finds the key h for caller c; the DeviceID is a virtual slot.
func (c *Chip) slot(s *chipState, caller pluton.Compartment, h pluton.KeyHandle) (*pluton.KeyInfo, error) {
	if err := caller.Validate(); err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	if h == pluton.DeviceIDHandle {
		if c.identity == nil {
			return nil, fmt.Errorf("soft: DeviceID: %w", pluton.ErrFuseNotWritten)
		}
		if caller != pluton.SecurityMonitor {
			return nil, &pluton.CompartmentError{Caller: caller, Owner: pluton.SecurityMonitor, Object: "the DeviceID key"}
		}
		return &pluton.KeyInfo{Handle: h, Compartment: pluton.SecurityMonitor, Algorithm: c.identity.Algorithm,
			Usage: pluton.UsageSign, Label: "DeviceID", Public: c.identity.DeviceID}, nil
	}
	i := slices.IndexFunc(s.Keys, func(k keySlot) bool { return k.Handle == h })
	if i < 0 {
		return nil, fmt.Errorf("soft: %w: %v", pluton.ErrNoSuchKey, h)
	}
	k := &s.Keys[i]
	if k.Compartment != caller {
		return nil, &pluton.CompartmentError{Caller: caller, Owner: k.Compartment, Object: h.String()}
	}
	return &pluton.KeyInfo{Handle: h, Compartment: k.Compartment, Algorithm: k.Algorithm, Usage: k.Usage,
		Label: k.Label, Public: c.signers[h].Public()}, nil
}

// Key describes the key slot h of compartment cm.
func (c *Chip) Key(ctx context.Context, cm pluton.Compartment, h pluton.KeyHandle) (*pluton.KeyInfo, error) {
	var info *pluton.KeyInfo
	err := c.read(func(s *chipState) (err error) { info, err = c.slot(s, cm, h); return err })
	return info, err
}

// Keys lists the key slots of compartment cm, the DeviceID first for the
// security monitor.
func (c *Chip) Keys(ctx context.Context, cm pluton.Compartment) ([]*pluton.KeyInfo, error) {
	if err := cm.Validate(); err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	var out []*pluton.KeyInfo
	err := c.read(func(s *chipState) error {
		if cm == pluton.SecurityMonitor && c.identity != nil && c.signers[pluton.DeviceIDHandle] != nil {
			info, _ := c.slot(s, cm, pluton.DeviceIDHandle)
			out = append(out, info)
		}
		for _, k := range s.Keys {
			if k.Compartment == cm {
				info, err := c.slot(s, cm, k.Handle)
				if err != nil {
					return err
				}
				out = append(out, info)
			}
		}
		return nil
	})
	return out, err
}

// Signer returns a signer for key h of compartment cm. Keys of usage
// attest are restricted: the chip signs only structures it builds itself
// with them (evidence), so Signer refuses them with ErrUsage.
func (c *Chip) Signer(ctx context.Context, cm pluton.Compartment, h pluton.KeyHandle) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var info *pluton.KeyInfo
	err := c.read(func(s *chipState) (err error) {
		if err := usable("signer", s); err != nil {
			return err
		}
		if info, err = c.slot(s, cm, h); err != nil {
			return err
		}
		if info.Usage != pluton.UsageSign {
			return fmt.Errorf("soft: %v has usage %v: %w", h, info.Usage, pluton.ErrUsage)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &signer{chip: c, compartment: cm, info: info}, nil
}

// DestroyKey erases key slot h.
func (c *Chip) DestroyKey(ctx context.Context, cm pluton.Compartment, h pluton.KeyHandle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h == pluton.DeviceIDHandle {
		return fmt.Errorf("soft: %w: the DeviceID key is derived from the UDS and cannot be destroyed", pluton.ErrInvalidArgument)
	}
	err := c.update(func(s *chipState) error {
		if _, err := c.slot(s, cm, h); err != nil {
			return err
		}
		i := slices.IndexFunc(s.Keys, func(k keySlot) bool { return k.Handle == h })
		clear(s.Keys[i].Private)
		s.Keys = slices.Delete(s.Keys, i, i+1)
		return nil
	})
	if err == nil {
		c.log.Info("key destroyed", "handle", uint32(h), "compartment", string(cm))
	}
	return err
}

func findCounter(s *chipState, caller pluton.Compartment, name string) (*counterFuse, error) {
	if err := caller.Validate(); err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	if err := validCounterName(name); err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	i := slices.IndexFunc(s.Counters, func(k counterFuse) bool { return k.Name == name })
	if i < 0 {
		return nil, nil
	}
	if s.Counters[i].Compartment != caller {
		return nil, &pluton.CompartmentError{Caller: caller, Owner: s.Counters[i].Compartment, Object: "counter " + name}
	}
	return &s.Counters[i], nil
}

// Counter reads a monotonic counter.
func (c *Chip) Counter(ctx context.Context, cm pluton.Compartment, name string) (uint64, error) {
	var v uint64
	err := c.read(func(s *chipState) error {
		k, err := findCounter(s, cm, name)
		if err != nil {
			return err
		}
		if k == nil {
			return fmt.Errorf("soft: %w: %q", pluton.ErrNoSuchCounter, name)
		}
		v = k.Value
		return nil
	})
	return v, err
}

// IncrementCounter adds one to a counter, creating it at zero first.
func (c *Chip) IncrementCounter(ctx context.Context, cm pluton.Compartment, name string) (uint64, error) {
	var v uint64
	err := c.advance(ctx, cm, name, func(cur uint64) (uint64, error) {
		if cur >= maxCounter {
			return 0, fmt.Errorf("soft: counter %q: %w", name, pluton.ErrCounterExhausted)
		}
		v = cur + 1
		return v, nil
	})
	return v, err
}

// AdvanceCounter raises a counter to value, creating it first.
func (c *Chip) AdvanceCounter(ctx context.Context, cm pluton.Compartment, name string, value uint64) error {
	return c.advance(ctx, cm, name, func(cur uint64) (uint64, error) {
		if value > maxCounter {
			return 0, fmt.Errorf("soft: counter %q: %w (max %d)", name, pluton.ErrCounterExhausted, uint64(maxCounter))
		}
		if value < cur {
			return 0, fmt.Errorf("soft: counter %q at %d, asked %d: %w", name, cur, value, pluton.ErrCounterBackward)
		}
		return value, nil
	})
}

func (c *Chip) advance(ctx context.Context, cm pluton.Compartment, name string, next func(uint64) (uint64, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.update(func(s *chipState) error {
		if err := usable("counter", s); err != nil {
			return err
		}
		k, err := findCounter(s, cm, name)
		if err != nil {
			return err
		}
		if k == nil {
			if len(s.Counters) >= maxCounters {
				return fmt.Errorf("soft: counter %q: %w (%d counters)", name, pluton.ErrSlotsFull, maxCounters)
			}
			s.Counters = append(s.Counters, counterFuse{Name: name, Compartment: cm})
			k = &s.Counters[len(s.Counters)-1]
		}
		v, err := next(k.Value)
		if err != nil {
			return err
		}
		k.Value = v
		return nil
	})
}

// signer is the crypto.Signer of a key slot. Every Sign call re-checks the
// chip: it is open, in a lifecycle state where keys are usable, and the
// slot still exists and belongs to the same compartment.
type signer struct {
	chip        *Chip
	compartment pluton.Compartment
	info        *pluton.KeyInfo
}

func (s *signer) Public() crypto.PublicKey { return s.info.Public }

func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg := s.info.Algorithm
	if h := alg.Hash(); h != 0 {
		if opts == nil || opts.HashFunc() != h || len(digest) != h.Size() {
			return nil, fmt.Errorf("soft: sign: %w: %v signs %v digests of %d bytes", pluton.ErrInvalidArgument, alg, h, h.Size())
		}
	} else if opts != nil && opts.HashFunc() != 0 {
		return nil, fmt.Errorf("soft: sign: %w: %v signs the message itself (opts must be crypto.Hash(0))", pluton.ErrInvalidArgument, alg)
	}
	c := s.chip
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, pluton.ErrClosed
	}
	if err := usable("sign", c.state); err != nil {
		c.mu.RUnlock()
		return nil, err
	}
	k, ok := c.signers[s.info.Handle]
	if !ok || (s.info.Handle != pluton.DeviceIDHandle && !ownedBy(c.state, s.info.Handle, s.compartment)) {
		c.mu.RUnlock()
		return nil, fmt.Errorf("soft: sign: %w: %v", pluton.ErrNoSuchKey, s.info.Handle)
	}
	c.mu.RUnlock()
	// The signing randomness comes from the Go runtime's CSPRNG (Go's
	// crypto ignores any other reader); ECDSA is hedged (FIPS 186-5,
	// §6.4.1 with RFC 6979-style hedging), ML-DSA-65 hedged (FIPS 204).
	var o crypto.SignerOpts = alg.Hash()
	if alg.Hash() == 0 {
		o = crypto.Hash(0)
	}
	return k.Sign(rand.Reader, digest, o)
}

func ownedBy(s *chipState, h pluton.KeyHandle, cm pluton.Compartment) bool {
	for i := range s.Keys {
		if s.Keys[i].Handle == h {
			return s.Keys[i].Compartment == cm
		}
	}
	return false
}

// CounterInfo describes one counter fuse bank entry.
type CounterInfo struct {
	Name        string
	Compartment pluton.Compartment
	Value       uint64
}

// AllCounters lists every counter of every compartment, for inspection
// tools (the factory port and "rootline device info"); firmware reads its
// own counters with Counter.
func (c *Chip) AllCounters(ctx context.Context) ([]CounterInfo, error) {
	var out []CounterInfo
	err := c.read(func(s *chipState) error {
		for _, k := range s.Counters {
			out = append(out, CounterInfo(k))
		}
		return nil
	})
	return out, err
}

// FirstLayerCDIs runs the chip's DICE engine, as the boot ROM does once per
// boot: it derives CDI_Attest and CDI_Seal of the first mutable layer from
// the UDS and that layer's input values (Open Profile for DICE; the UDS is
// the current CDI of layer 0). The CDIs are handed to the layer that was
// measured, as DICE prescribes; the UDS itself never leaves the chip.
// It needs a lifecycle state in which keys are usable.
func (c *Chip) FirstLayerCDIs(ctx context.Context, in *dice.InputValues) (attest, seal []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	err = c.read(func(s *chipState) error {
		if err := usable("DICE derivation", s); err != nil {
			return err
		}
		attest, seal, err = dice.Derive(s.UDS, s.UDS, in)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("soft: %w", err)
	}
	return attest, seal, nil
}
