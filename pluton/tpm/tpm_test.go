package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"path/filepath"
	"testing"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
)

func open(t *testing.T) (*tpm.TPM, *tpmtest.SWTPM, string) {
	t.Helper()
	sw := tpmtest.Start(t)
	path := filepath.Join(t.TempDir(), "tpm.json")
	tp, err := tpm.Open(t.Context(), &tpm.Options{Address: sw.Addr, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp, sw, path
}

func TestRandom(t *testing.T) {
	tp, _, _ := open(t)
	a, b := make([]byte, 100), make([]byte, 100)
	if err := tp.Random(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if err := tp.Random(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 100)) {
		t.Fatal("TPM random output repeats or is zero")
	}
}

func TestKeys(t *testing.T) {
	tp, sw, path := open(t)
	ctx := t.Context()
	for _, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.ECDSAP384} {
		t.Run(alg.String(), func(t *testing.T) {
			info, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: alg, Usage: pluton.UsageSign, Label: "k"})
			if err != nil {
				t.Fatal(err)
			}
			s, err := tp.Signer(ctx, pluton.OS, info.Handle)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("rootline tpm")
			sig, err := s.Sign(nil, alg.Digest(msg), alg.SignerOpts())
			if err != nil {
				t.Fatal(err)
			}
			if err := pluton.Verify(info.Public, alg, msg, sig); err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), alg.Digest(msg), sig) {
				t.Fatal("crypto/ecdsa rejects the TPM signature")
			}
			if _, err := s.Sign(nil, alg.Digest(msg)[:20], alg.SignerOpts()); !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("short digest: %v", err)
			}
			if _, err := tp.Signer(ctx, pluton.App("x"), info.Handle); !errors.Is(err, pluton.ErrCompartment) {
				t.Fatalf("other compartment: %v", err)
			}
		})
	}
	for _, alg := range []pluton.Algorithm{pluton.Ed25519, pluton.MLDSA65} {
		if _, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: alg, Usage: pluton.UsageSign}); !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
			t.Fatalf("%v: %v", alg, err)
		}
	}
	ak, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageAttest})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Signer(ctx, pluton.OS, ak.Handle); !errors.Is(err, pluton.ErrUsage) {
		t.Fatalf("attest key signer: %v", err)
	}
	keys, err := tp.Keys(ctx, pluton.OS)
	if err != nil || len(keys) != 3 {
		t.Fatalf("Keys: %d, %v", len(keys), err)
	}
	if _, err := tp.Key(ctx, pluton.OS, 999); !errors.Is(err, pluton.ErrNoSuchKey) {
		t.Fatalf("Key(999): %v", err)
	}

	// The blobs survive a restart: a second TPM object on the same
	// swtpm and state file signs with the same key.
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); !errors.Is(err, pluton.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	tp2, err := tpm.Open(ctx, &tpm.Options{Address: sw.Addr, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer tp2.Close()
	s, err := tp2.Signer(ctx, pluton.OS, keys[0].Handle)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("again"))
	sig, err := s.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(keys[0].Public.(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature after reopen does not verify")
	}
	if err := tp2.DestroyKey(ctx, pluton.OS, keys[0].Handle); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, pluton.ErrNoSuchKey) {
		t.Fatalf("sign with destroyed key: %v", err)
	}
}

// TestManyKeys signs with more keys than swtpm can hold loaded at once
// (three transient objects): keys must be flushed.
func TestManyKeys(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	var signers []crypto.Signer
	for range 5 {
		info, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.App("a"), Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
		if err != nil {
			t.Fatal(err)
		}
		s, err := tp.Signer(ctx, pluton.App("a"), info.Handle)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	d := sha256.Sum256(nil)
	for range 2 {
		for _, s := range signers {
			if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestCounters(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	if _, err := tp.Counter(ctx, pluton.OS, "svn"); !errors.Is(err, pluton.ErrNoSuchCounter) {
		t.Fatalf("missing counter: %v", err)
	}
	for want := uint64(1); want <= 3; want++ {
		v, err := tp.IncrementCounter(ctx, pluton.OS, "svn")
		if err != nil || v != want {
			t.Fatalf("IncrementCounter = %d, %v; want %d", v, err, want)
		}
	}
	// A second counter starts at 1 too, although the TPM initializes it
	// from the highest counter value.
	if v, err := tp.IncrementCounter(ctx, pluton.App("b"), "svn"); err != nil || v != 1 {
		t.Fatalf("second counter = %d, %v", v, err)
	}
	if err := tp.AdvanceCounter(ctx, pluton.OS, "svn", 10); err != nil {
		t.Fatal(err)
	}
	if v, err := tp.Counter(ctx, pluton.OS, "svn"); err != nil || v != 10 {
		t.Fatalf("Counter = %d, %v; want 10", v, err)
	}
	if err := tp.AdvanceCounter(ctx, pluton.OS, "svn", 10); err != nil {
		t.Fatalf("equal advance: %v", err)
	}
	if err := tp.AdvanceCounter(ctx, pluton.OS, "svn", 9); !errors.Is(err, pluton.ErrCounterBackward) {
		t.Fatalf("backward: %v", err)
	}
	if err := tp.AdvanceCounter(ctx, pluton.OS, "svn", 10+tpm.MaxAdvance+1); !errors.Is(err, tpm.ErrAdvanceTooFar) || !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("too far: %v", err)
	}
	if err := tp.AdvanceCounter(ctx, pluton.OS, "new", 5); err != nil {
		t.Fatal(err)
	}
	if v, err := tp.Counter(ctx, pluton.OS, "new"); err != nil || v != 5 {
		t.Fatalf("new counter = %d, %v; want 5", v, err)
	}
	if _, err := tp.Counter(ctx, pluton.OS, "Bad Name"); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestNotSupported(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	if err := tp.FuseIdentity(ctx); !errors.Is(err, tpm.ErrNotSupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatal(err)
	}
	if _, err := tp.Lifecycle(ctx); !errors.Is(err, tpm.ErrNotSupported) {
		t.Fatal(err)
	}
	if err := tp.Transition(ctx, pluton.Locked); !errors.Is(err, tpm.ErrNotSupported) {
		t.Fatal(err)
	}
	if _, err := tp.RootKeyHash(ctx); !errors.Is(err, tpm.ErrNotSupported) {
		t.Fatal(err)
	}
}

func TestIdentity(t *testing.T) {
	tp, sw, path := open(t)
	ctx := t.Context()
	id, err := tp.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.UEID) != 17 || id.UEID[0] != 0x01 || id.Algorithm != pluton.ECDSAP256 {
		t.Fatalf("identity %+v", id)
	}
	info, err := tp.Key(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle)
	if err != nil || info.Usage != pluton.UsageAttest || !info.Public.(*ecdsa.PublicKey).Equal(id.DeviceID) {
		t.Fatalf("Key(DeviceID) = %+v, %v", info, err)
	}
	if _, err := tp.Key(ctx, pluton.OS, pluton.DeviceIDHandle); !errors.Is(err, pluton.ErrCompartment) {
		t.Fatalf("IAK from os: %v", err)
	}
	if _, err := tp.Signer(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle); !errors.Is(err, pluton.ErrUsage) {
		t.Fatalf("IAK signer: %v", err)
	}
	if err := tp.DestroyKey(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("destroy IAK: %v", err)
	}
	keys, err := tp.Keys(ctx, pluton.SecurityMonitor)
	if err != nil || len(keys) != 1 || keys[0].Handle != pluton.DeviceIDHandle {
		t.Fatalf("Keys(sm) = %v, %v", keys, err)
	}
	// A quote by the IAK, with a signing key loaded before: the IAK
	// replaces it (swtpm holds three objects).
	sk, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.SecurityMonitor, Algorithm: pluton.ECDSAP384, Usage: pluton.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("iak nonce")
	for range 4 {
		q, err := tp.Quote(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle, nonce, crypto.SHA256, []int{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := tpm.VerifyQuote(id.DeviceID, q, nonce, crypto.SHA256, q.PCRs); err != nil {
			t.Fatal(err)
		}
		s, err := tp.Signer(ctx, pluton.SecurityMonitor, sk.Handle)
		if err != nil {
			t.Fatal(err)
		}
		d := sha512.Sum384(nil)
		if _, err := s.Sign(nil, d[:], crypto.SHA384); err != nil {
			t.Fatal(err)
		}
	}
	// The same identity after a restart of the TPM object.
	tp.Close()
	tp2, err := tpm.Open(ctx, &tpm.Options{Address: sw.Addr, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer tp2.Close()
	id2, err := tp2.Identity(ctx)
	if err != nil || !bytes.Equal(id2.UEID, id.UEID) || !id2.DeviceID.(*ecdsa.PublicKey).Equal(id.DeviceID) {
		t.Fatalf("identity changed: %v", err)
	}
}

// TestConcurrent uses one TPM from several goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	var handles []pluton.KeyHandle
	for range 3 {
		info, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, info.Handle)
	}
	errs := make(chan error, 6)
	for i := range 6 {
		go func() {
			s, err := tp.Signer(ctx, pluton.OS, handles[i%3])
			if err != nil {
				errs <- err
				return
			}
			d := sha256.Sum256([]byte{byte(i)})
			for range 5 {
				sig, err := s.Sign(nil, d[:], crypto.SHA256)
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
					errs <- errors.New("signature does not verify")
					return
				}
				if _, err := tp.IncrementCounter(ctx, pluton.OS, "c"); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if v, err := tp.Counter(ctx, pluton.OS, "c"); err != nil || v != 30 {
		t.Fatalf("counter = %d, %v; want 30", v, err)
	}
}
