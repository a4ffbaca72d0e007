package attest

import (
	"crypto"
	"errors"
	"testing"

	"github.com/rootline/rootline/pluton/measure"
)

// TestChainCacheCertificates: from a device's second attestation on, its
// x5chain is not parsed again: the token's certificates are those the
// first attestation verified, kept in the DICE chain cache. A chain that
// does not verify is not kept.
func TestChainCacheCertificates(t *testing.T) {
	e := newEnv(t, &envOptions{memoryStore: true})
	d := e.newDevice(2)
	first, err := e.v.Verify(e.ctx, &Request{Evidence: e.evidence(d.Device)})
	if err != nil {
		t.Fatal(err)
	}
	if e.v.diceCache.len() != 1 {
		t.Fatalf("%d chains cached", e.v.diceCache.len())
	}
	entry, ok := e.v.diceCache.get(chainKey(rawChain(first.Chain())))
	if !ok || len(entry.chain) != len(first.Chain()) {
		t.Fatal("the verified chain is not cached")
	}
	for i := range 2 {
		ver, err := e.v.Verify(e.ctx, &Request{Evidence: e.evidence(d.Device)})
		if err != nil {
			t.Fatal(err)
		}
		for j, c := range ver.Chain() {
			if c != entry.chain[j] {
				t.Fatalf("attestation %d: certificate %d parsed again", i+2, j)
			}
		}
	}

	// A chain with a broken link (another device's issuers under this
	// device's Alias certificate) is refused and not cached.
	s1, s2 := e.newSynth(), e.newSynth()
	n, err := e.v.Nonce(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	broken := [][]byte{s1.chain[0], s2.chain[1], s2.chain[2]}
	_, err = e.v.Verify(e.ctx, &Request{Evidence: s1.sign(t, n, broken)})
	var refusal *Error
	if !errors.As(err, &refusal) || refusal.Reason.Code != CodeChain {
		t.Fatalf("broken chain: %v", err)
	}
	if e.v.diceCache.len() != 1 {
		t.Fatalf("%d chains cached after a refused one", e.v.diceCache.len())
	}
	// The same chain again is verified again, and refused again.
	n, _ = e.v.Nonce(e.ctx)
	if _, err := e.v.Verify(e.ctx, &Request{Evidence: s1.sign(t, n, broken)}); !errors.As(err, &refusal) || refusal.Reason.Code != CodeChain {
		t.Fatalf("broken chain, second time: %v", err)
	}
	// The device's good chain verifies, and is cached.
	n, _ = e.v.Nonce(e.ctx)
	if _, err := e.v.Verify(e.ctx, &Request{Evidence: s1.sign(t, n, s1.chain)}); err != nil {
		t.Fatal(err)
	}
	if e.v.diceCache.len() != 2 {
		t.Fatalf("%d chains cached", e.v.diceCache.len())
	}
}

// TestChainCacheEventLog: the event log of a chain's last verified token
// is kept with the chain and reused, replay included, by the next token
// with the same log bytes; a token whose registers that log does not
// reproduce is still refused, and a token with another log has it parsed.
func TestChainCacheEventLog(t *testing.T) {
	e := newEnv(t, &envOptions{memoryStore: true})
	s := e.newSynth()
	regs, err := measure.New(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := regs.Measure(1, measure.EVIPL, []byte("image"), []byte("layer 1")); err != nil {
		t.Fatal(err)
	}
	good, _ := regs.Value(crypto.SHA256, 1)
	logBytes, err := regs.Log().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	s.claims.EventLog = logBytes
	s.claims.Registers = map[crypto.Hash]map[int][]byte{crypto.SHA256: {1: good}}
	verify := func() (*Verified, error) {
		t.Helper()
		n, err := e.v.Nonce(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return e.v.Verify(e.ctx, &Request{Evidence: s.sign(t, n, s.chain)})
	}
	first, err := verify()
	if err != nil {
		t.Fatal(err)
	}
	entry, ok := e.v.diceCache.get(chainKey(rawChain(first.Chain())))
	if !ok || entry.log.Load() != first.tok.Log || !first.tok.Log.ParsedFrom(logBytes) {
		t.Fatal("the verified token's event log is not kept with its chain")
	}
	second, err := verify()
	if err != nil {
		t.Fatal(err)
	}
	if second.tok.Log != first.tok.Log {
		t.Fatal("the event log was parsed again")
	}
	// Registers the same log does not reproduce: refused.
	s.claims.Registers = map[crypto.Hash]map[int][]byte{crypto.SHA256: {1: make([]byte, 32)}}
	var refusal *Error
	if _, err := verify(); !errors.As(err, &refusal) || refusal.Reason.Code != CodeEventLog {
		t.Fatalf("registers the log does not reproduce: %v", err)
	}
	// Another log: parsed, verified, and kept in place of the first.
	if err := regs.Measure(2, measure.EVIPL, []byte("image 2"), []byte("layer 2")); err != nil {
		t.Fatal(err)
	}
	v1, _ := regs.Value(crypto.SHA256, 1)
	v2, _ := regs.Value(crypto.SHA256, 2)
	if s.claims.EventLog, err = regs.Log().MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	s.claims.Registers = map[crypto.Hash]map[int][]byte{crypto.SHA256: {1: v1, 2: v2}}
	third, err := verify()
	if err != nil {
		t.Fatal(err)
	}
	if third.tok.Log == first.tok.Log || entry.log.Load() != third.tok.Log {
		t.Fatal("another log was not parsed, or not kept")
	}
}
