package translog_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/rootline/rootline/provision/translog"
)

func FuzzParseProof(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 32))
	f.Add(make([]byte, 33))
	f.Add(make([]byte, 32*translog.MaxProofHashes))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := translog.ParseProof(b)
		if err != nil {
			return
		}
		if !bytes.Equal(translog.MarshalProof(p), b) {
			t.Fatal("round trip differs")
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	f.Add("index=1&size=2")
	f.Add("index=01&size=2")
	f.Add("index=1&index=1")
	f.Add("old=%31&new=2")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := translog.ParseQuery(raw, "index", "size")
		if err != nil {
			return
		}
		if q["index"] < 0 || q["size"] < 0 || len(q) != 2 {
			t.Fatalf("ParseQuery(%q) = %v", raw, q)
		}
	})
}

// FuzzVerify feeds untrusted heads and proofs to the verifiers: no panic,
// and nothing verifies but the real head and proof.
func FuzzVerify(f *testing.F) {
	seed := make([]byte, ed25519.SeedSize)
	s, err := translog.NewSigner("log", ed25519.NewKeyFromSeed(seed))
	if err != nil {
		f.Fatal(err)
	}
	l, _ := translog.New(translog.NewMemStore(), s)
	heads := grow(f, l, 5, leaf)
	p, _ := l.InclusionProof(f.Context(), 2, 5)
	cp, _ := l.ConsistencyProof(f.Context(), 3, 5)
	f.Add(heads[5], translog.MarshalProof(p), int64(2))
	f.Add(heads[3], translog.MarshalProof(cp), int64(-1))
	f.Add([]byte("go.sum database tree\n5\nAAAA\n\n— log AAAA\n"), []byte{}, int64(0))
	key := s.VerifierKey()
	f.Fuzz(func(t *testing.T, head, proof []byte, index int64) {
		if _, err := translog.OpenTreeHead(key, head); err != nil {
			return
		}
		pr, err := translog.ParseProof(proof)
		if err != nil {
			return
		}
		if _, err := translog.VerifyInclusion(key, head, leaf(2), index, tlog.RecordProof(pr)); err == nil {
			if !bytes.Equal(head, heads[5]) && !bytes.Equal(head, heads[3]) || index != 2 {
				t.Fatalf("inclusion verified with head %q index %d", head, index)
			}
		}
		translog.VerifyConsistency(key, heads[3], head, tlog.TreeProof(pr))
	})
}
