package attest

import (
	"errors"
	"testing"
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
