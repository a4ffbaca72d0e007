package soft

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rootline/rootline/internal/benchratio"
	"github.com/rootline/rootline/pluton"
)

func createChip(t testing.TB, opts *Options) (*Chip, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chip.state")
	c, err := Create(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func fusedChip(t testing.TB) (*Chip, string) {
	t.Helper()
	c, path := createChip(t, nil)
	if err := c.FuseIdentity(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, path
}

func fileBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFuseAndRestart(t *testing.T) {
	ctx := context.Background()
	for _, alg := range pluton.Algorithms() {
		t.Run(alg.String(), func(t *testing.T) {
			c, path := createChip(t, &Options{DeviceIDAlgorithm: alg})
			if _, err := c.Identity(ctx); !errors.Is(err, pluton.ErrFuseNotWritten) {
				t.Fatalf("blank chip identity: %v", err)
			}
			if err := c.FuseIdentity(ctx); err != nil {
				t.Fatal(err)
			}
			id1, err := c.Identity(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(id1.UEID) != 17 || id1.UEID[0] != 0x01 || id1.Algorithm != alg {
				t.Fatalf("identity %x %v", id1.UEID, id1.Algorithm)
			}
			if l, _ := c.Lifecycle(ctx); l != pluton.Manufacturing {
				t.Fatalf("lifecycle %v", l)
			}
			// The DeviceID key signs for the security monitor.
			s, err := c.Signer(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("csr")
			sig, err := s.Sign(nil, alg.Digest(msg), alg.SignerOpts())
			if err != nil {
				t.Fatal(err)
			}
			if err := pluton.Verify(id1.DeviceID, alg, msg, sig); err != nil {
				t.Fatal(err)
			}
			c.Close()

			c2, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			id2, _ := c2.Identity(ctx)
			if !bytes.Equal(id1.UEID, id2.UEID) || !publicEqual(id1.DeviceID, id2.DeviceID) {
				t.Fatal("identity changed across restart")
			}
		})
	}
}

func TestFuseTwiceRefused(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	before := fileBytes(t, path)
	if err := c.FuseIdentity(ctx); !errors.Is(err, pluton.ErrFuseWritten) {
		t.Fatalf("second fuse: %v", err)
	}
	h := sha256.Sum256([]byte("root"))
	if err := c.FuseRootKeyHash(ctx, h[:]); err != nil {
		t.Fatal(err)
	}
	mid := fileBytes(t, path)
	if err := c.FuseRootKeyHash(ctx, h[:]); !errors.Is(err, pluton.ErrFuseWritten) {
		t.Fatalf("second root hash: %v", err)
	}
	if err := c.FuseRootKeyHash(ctx, h[:5]); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("short root hash: %v", err)
	}
	if !bytes.Equal(mid, fileBytes(t, path)) {
		t.Fatal("refused fuse changed the state file")
	}
	if bytes.Equal(before, mid) {
		t.Fatal("root key hash not persisted")
	}
	got, err := c.RootKeyHash(ctx)
	if err != nil || !bytes.Equal(got, h[:]) {
		t.Fatalf("root key hash %x, %v", got, err)
	}
	if err := c.FuseProductID(ctx, "sku-a"); err != nil {
		t.Fatal(err)
	}
	if err := c.FuseProductID(ctx, "sku-b"); !errors.Is(err, pluton.ErrFuseWritten) {
		t.Fatalf("second product id: %v", err)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	_, path := fusedChip(t)
	if _, err := Create(path, nil); !errors.Is(err, ErrChipInUse) && !errors.Is(err, ErrChipExists) {
		t.Fatalf("create over a chip: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none"), nil); !errors.Is(err, ErrNoChip) {
		t.Fatalf("open missing: %v", err)
	}
}

func TestExclusiveOpen(t *testing.T) {
	_, path := fusedChip(t)
	if _, err := Open(path, nil); !errors.Is(err, ErrChipInUse) {
		t.Fatalf("second open: %v", err)
	}
}

func TestCompartments(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	app := pluton.App("weather")
	osKey, err := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	appKey, err := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: app, Algorithm: pluton.Ed25519, Usage: pluton.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	if osKey.Handle == appKey.Handle || osKey.Handle <= pluton.DeviceIDHandle {
		t.Fatalf("handles %v %v", osKey.Handle, appKey.Handle)
	}
	if _, err := c.IncrementCounter(ctx, app, "boot"); err != nil {
		t.Fatal(err)
	}
	before := fileBytes(t, path)

	var ce *pluton.CompartmentError
	for name, err := range map[string]error{
		"signer":          second(c.Signer(ctx, pluton.OS, appKey.Handle)),
		"key":             second(c.Key(ctx, app, osKey.Handle)),
		"destroy":         c.DestroyKey(ctx, pluton.OS, appKey.Handle),
		"deviceid":        second(c.Signer(ctx, app, pluton.DeviceIDHandle)),
		"counter read":    second(c.Counter(ctx, pluton.OS, "boot")),
		"counter inc":     second(c.IncrementCounter(ctx, pluton.OS, "boot")),
		"counter advance": c.AdvanceCounter(ctx, pluton.SecurityMonitor, "boot", 9),
	} {
		if !errors.Is(err, pluton.ErrCompartment) || !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want ErrCompartment", name, err)
		}
	}
	if !bytes.Equal(before, fileBytes(t, path)) {
		t.Fatal("a refused request changed the state")
	}
	keys, err := c.Keys(ctx, app)
	if err != nil || len(keys) != 1 || keys[0].Handle != appKey.Handle {
		t.Fatalf("app keys %v, %v", keys, err)
	}
	keys, _ = c.Keys(ctx, pluton.SecurityMonitor)
	if len(keys) != 1 || keys[0].Handle != pluton.DeviceIDHandle {
		t.Fatalf("sm keys %v", keys)
	}
	if _, err := c.Signer(ctx, pluton.OS, 999); !errors.Is(err, pluton.ErrNoSuchKey) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := c.Signer(ctx, "bogus", osKey.Handle); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("bad compartment: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestKeysAllAlgorithmsPersist(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	var infos []*pluton.KeyInfo
	for _, alg := range pluton.Algorithms() {
		info, err := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: alg, Usage: pluton.UsageSign, Label: alg.String()})
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	c.Close()
	c, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte("persisted")
	for _, info := range infos {
		s, err := c.Signer(ctx, pluton.OS, info.Handle)
		if err != nil {
			t.Fatal(err)
		}
		if !publicEqual(s.Public(), info.Public) {
			t.Fatalf("%v: public key changed across restart", info.Algorithm)
		}
		sig, err := s.Sign(nil, info.Algorithm.Digest(msg), info.Algorithm.SignerOpts())
		if err != nil {
			t.Fatal(err)
		}
		if err := pluton.Verify(info.Public, info.Algorithm, msg, sig); err != nil {
			t.Fatalf("%v: %v", info.Algorithm, err)
		}
	}
}

func TestSignerChecks(t *testing.T) {
	ctx := context.Background()
	c, _ := fusedChip(t)
	k, _ := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP384, Usage: pluton.UsageSign})
	s, err := c.Signer(ctx, pluton.OS, k.Handle)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := s.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("P-384 key with SHA-256: %v", err)
	}
	if err := c.DestroyKey(ctx, pluton.OS, k.Handle); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, pluton.ECDSAP384.Digest([]byte("x")), crypto.SHA384); !errors.Is(err, pluton.ErrNoSuchKey) {
		t.Fatalf("sign after destroy: %v", err)
	}
	att, _ := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageAttest})
	if _, err := c.Signer(ctx, pluton.OS, att.Handle); !errors.Is(err, pluton.ErrUsage) {
		t.Fatalf("attest key signer: %v", err)
	}
	if err := c.DestroyKey(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("destroy DeviceID: %v", err)
	}
	for _, bad := range []*pluton.KeyRequest{
		nil,
		{Compartment: pluton.OS, Algorithm: 99, Usage: pluton.UsageSign},
		{Compartment: pluton.OS, Algorithm: pluton.Ed25519},
		{Compartment: "app:", Algorithm: pluton.Ed25519, Usage: pluton.UsageSign},
	} {
		if _, err := c.GenerateKey(ctx, bad); err == nil {
			t.Errorf("GenerateKey(%+v) succeeded", bad)
		}
	}
}

func TestCounters(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	if _, err := c.Counter(ctx, pluton.OS, "svn/os"); !errors.Is(err, pluton.ErrNoSuchCounter) {
		t.Fatalf("unknown counter: %v", err)
	}
	if v, err := c.IncrementCounter(ctx, pluton.OS, "svn/os"); err != nil || v != 1 {
		t.Fatalf("increment: %d %v", v, err)
	}
	if err := c.AdvanceCounter(ctx, pluton.OS, "svn/os", 5); err != nil {
		t.Fatal(err)
	}
	if err := c.AdvanceCounter(ctx, pluton.OS, "svn/os", 5); err != nil {
		t.Fatalf("advance to same value: %v", err)
	}
	before := fileBytes(t, path)
	if err := c.AdvanceCounter(ctx, pluton.OS, "svn/os", 4); !errors.Is(err, pluton.ErrCounterBackward) {
		t.Fatalf("backward: %v", err)
	}
	if err := c.AdvanceCounter(ctx, pluton.OS, "svn/os", 1<<40); !errors.Is(err, pluton.ErrCounterExhausted) {
		t.Fatalf("over max: %v", err)
	}
	if _, err := c.IncrementCounter(ctx, pluton.OS, "Bad Name"); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("bad name: %v", err)
	}
	if !bytes.Equal(before, fileBytes(t, path)) {
		t.Fatal("refused counter change altered state")
	}
	if v, _ := c.Counter(ctx, pluton.OS, "svn/os"); v != 5 {
		t.Fatalf("counter %d", v)
	}
	if err := c.AdvanceCounter(ctx, pluton.OS, "max", maxCounter); err != nil {
		t.Fatal(err)
	}
	if _, err := c.IncrementCounter(ctx, pluton.OS, "max"); !errors.Is(err, pluton.ErrCounterExhausted) {
		t.Fatalf("increment at max: %v", err)
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	c, path := createChip(t, nil)
	var le *pluton.LifecycleError
	if err := c.Transition(ctx, pluton.Manufacturing); !errors.As(err, &le) {
		t.Fatalf("blank → manufacturing by Transition: %v", err)
	}
	if _, err := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.Ed25519, Usage: pluton.UsageSign}); !errors.Is(err, pluton.ErrWrongLifecycle) {
		t.Fatalf("key on blank chip: %v", err)
	}
	if err := c.FuseIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	k, _ := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.Ed25519, Usage: pluton.UsageSign})
	for _, step := range []struct {
		to pluton.Lifecycle
		ok bool
	}{
		{pluton.Blank, false},
		{pluton.Locked, false},
		{pluton.Provisioned, true},
		{pluton.Manufacturing, false},
		{pluton.Provisioned, false},
		{pluton.Locked, true},
		{pluton.Provisioned, false},
	} {
		err := c.Transition(ctx, step.to)
		if step.ok != (err == nil) || (err != nil && !errors.Is(err, pluton.ErrWrongLifecycle)) {
			t.Fatalf("transition to %v: %v", step.to, err)
		}
	}
	h := sha256.Sum256(nil)
	if err := c.FuseRootKeyHash(ctx, h[:]); !errors.Is(err, pluton.ErrWrongLifecycle) {
		t.Fatalf("root hash when locked: %v", err)
	}
	if _, err := c.Signer(ctx, pluton.OS, k.Handle); err != nil {
		t.Fatalf("locked chip keys usable: %v", err)
	}
	if err := c.Transition(ctx, pluton.RMA); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Signer(ctx, pluton.OS, k.Handle); !errors.Is(err, pluton.ErrWrongLifecycle) {
		t.Fatalf("RMA signer: %v", err)
	}
	if err := c.Transition(ctx, pluton.Decommissioned); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err := Open(path, nil)
	if err != nil {
		t.Fatalf("reopen decommissioned: %v", err)
	}
	defer c.Close()
	if c.state.UDS != nil || len(c.state.Keys) != 0 {
		t.Fatal("decommissioned chip kept secrets")
	}
	if _, err := c.Identity(ctx); err != nil {
		t.Fatalf("decommissioned identity readable: %v", err)
	}
	if _, err := c.Signer(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle); !errors.Is(err, pluton.ErrWrongLifecycle) {
		t.Fatalf("DeviceID after decommission: %v", err)
	}
}

func TestCorruptStateRefused(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	c.Close()
	good := fileBytes(t, path)

	future := bytes.Clone(good)
	future[9] = 3 // this build reads versions 1 and 2
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"empty":     {nil, ErrStateCorrupt},
		"truncated": {good[:len(good)-1], ErrStateCorrupt},
		"header":    {good[:10], ErrStateCorrupt},
		"trailing":  {append(bytes.Clone(good), 0), ErrStateCorrupt},
		"bitflip":   {flipped, ErrStateCorrupt},
		"magic":     {append([]byte("XXXXXXXX"), good[8:]...), ErrStateCorrupt},
		"future":    {future, ErrStateVersion},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, nil)
			var se *StateError
			if !errors.Is(err, tc.want) || !errors.As(err, &se) || se.Path != path {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !bytes.Equal(fileBytes(t, path), tc.data) {
				t.Fatal("refused file was modified")
			}
		})
	}
}

// A state whose checksum is right but whose content breaks an invariant
// (here: a key slot with a short private key) is refused too.
func TestInvalidStateContentRefused(t *testing.T) {
	c, path := fusedChip(t)
	st := c.state.clone()
	c.Close()
	st.Keys = append(st.Keys, keySlot{Handle: 5, Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign, Private: []byte{1}})
	st.NextHandle = 6
	if _, err := marshalState(st); err == nil {
		t.Fatal("marshalState wrote an invalid state")
	}
	// Bypass the writer's validation to forge the file.
	payload, _ := encMode.Marshal(st)
	raw := append(append(stateMagic[:], 0, 1, 0, 0, byte(len(payload)>>8), byte(len(payload))), payload...)
	sum := sha256.Sum256(raw)
	if err := os.WriteFile(path, append(raw, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); !errors.Is(err, ErrStateCorrupt) {
		t.Fatalf("forged state: %v", err)
	}
}

// stuckSource is a broken noise source: the same byte forever.
type stuckSource struct{}

func (stuckSource) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0x42
	}
	return len(p), nil
}

func TestFailingEntropyRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "chip.state")
	c, err := Create(path, &Options{Entropy: stuckSource{}})
	if err == nil {
		defer c.Close()
		before := fileBytes(t, path)
		err = c.FuseIdentity(ctx)
		if !bytes.Equal(before, fileBytes(t, path)) {
			t.Fatal("failed fuse changed state")
		}
		buf := make([]byte, 32)
		if rerr := c.Random(ctx, buf); !errors.Is(rerr, pluton.ErrEntropy) {
			t.Fatalf("Random on a stuck source: %v", rerr)
		}
	}
	if !errors.Is(err, pluton.ErrEntropy) {
		t.Fatalf("stuck source: got %v, want ErrEntropy", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	k, _ := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	s, _ := c.Signer(ctx, pluton.OS, k.Handle)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			d := sha256.Sum256([]byte{byte(i)})
			for range 20 {
				if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.IncrementCounter(ctx, pluton.App("a"), "n"); err != nil {
					t.Error(err)
					return
				}
				var b [32]byte
				if err := c.Random(ctx, b[:]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	c.Close()
	c2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if v, _ := c2.Counter(ctx, pluton.App("a"), "n"); v != 80 {
		t.Fatalf("counter after concurrent increments: %d", v)
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	c, _ := fusedChip(t)
	c.Close()
	if err := c.Random(ctx, make([]byte, 8)); !errors.Is(err, pluton.ErrClosed) {
		t.Fatal(err)
	}
	if _, err := c.Lifecycle(ctx); !errors.Is(err, pluton.ErrClosed) {
		t.Fatal(err)
	}
	if _, err := c.IncrementCounter(ctx, pluton.OS, "x"); !errors.Is(err, pluton.ErrClosed) {
		t.Fatal(err)
	}
}

func BenchmarkSign(b *testing.B) {
	ctx := context.Background()
	c, _ := fusedChip(b)
	k, err := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	if err != nil {
		b.Fatal(err)
	}
	s, _ := c.Signer(ctx, pluton.OS, k.Handle)
	std, _ := ecdsa.GenerateKey(k.Public.(*ecdsa.PublicKey).Curve, rand.Reader)
	digest := sha256.Sum256([]byte("benchmark"))
	b.Run("P256/pluton", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("P256/stdlib", func(b *testing.B) {
		for b.Loop() {
			if _, err := std.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The target: the subsystem costs at most 10% over crypto/ecdsa
	// (ratio >= 0.9), both measured alternately in this run.
	b.Run("P256/ratio", func(b *testing.B) {
		benchratio.Compare(b,
			func() error { _, err := s.Sign(nil, digest[:], crypto.SHA256); return err },
			func() error { _, err := std.Sign(rand.Reader, digest[:], crypto.SHA256); return err })
	})
}

func BenchmarkRandom(b *testing.B) {
	ctx := context.Background()
	c, _ := fusedChip(b)
	buf := make([]byte, 32)
	b.Run("32B/pluton", func(b *testing.B) {
		b.SetBytes(32)
		for b.Loop() {
			if err := c.Random(ctx, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("32B/cryptorand", func(b *testing.B) {
		b.SetBytes(32)
		for b.Loop() {
			if _, err := io.ReadFull(rand.Reader, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The target: at least half of crypto/rand's rate (ratio >= 0.5).
	b.Run("32B/ratio", func(b *testing.B) {
		benchratio.Compare(b,
			func() error { return c.Random(ctx, buf) },
			func() error { _, err := io.ReadFull(rand.Reader, buf); return err })
	})
}

// The factory root hash is a write-once fuse of Manufacturing, kept across
// restarts; refusals leave the state file untouched.
func TestFactoryRootHash(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	if _, err := c.FactoryRootHash(ctx); !errors.Is(err, pluton.ErrFuseNotWritten) {
		t.Fatalf("before fusing: %v", err)
	}
	h := sha256.Sum256([]byte("factory root SPKI"))
	if err := c.FuseFactoryRootHash(ctx, h[:7]); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("short hash: %v", err)
	}
	if err := c.FuseFactoryRootHash(ctx, h[:]); err != nil {
		t.Fatal(err)
	}
	mid := fileBytes(t, path)
	if err := c.FuseFactoryRootHash(ctx, h[:]); !errors.Is(err, pluton.ErrFuseWritten) {
		t.Fatalf("second fuse: %v", err)
	}
	if !bytes.Equal(mid, fileBytes(t, path)) {
		t.Fatal("a refused fuse changed the state file")
	}
	c.Close()
	c2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := c2.FactoryRootHash(ctx); err != nil || !bytes.Equal(got, h[:]) {
		t.Fatalf("after restart: %x, %v", got, err)
	}
	if err := c2.Transition(ctx, pluton.Provisioned); err != nil {
		t.Fatal(err)
	}
	c3, _ := fusedChip(t)
	c3.Transition(ctx, pluton.Provisioned)
	if err := c3.FuseFactoryRootHash(ctx, h[:]); !errors.Is(err, pluton.ErrWrongLifecycle) {
		t.Fatalf("fusing when provisioned: %v", err)
	}
}
