package translog_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/rootline/rootline/provision/translog"
)

func newSigner(t testing.TB, name string) *translog.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := translog.NewSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func leaf(i int) []byte { return []byte(fmt.Sprintf("certificate %d DER", i)) }

// grow appends n leaves to l, returning the signed head after each append
// (heads[s] is the head of size s; heads[0] the empty tree).
func grow(t testing.TB, l *translog.Log, n int, leafAt func(int) []byte) [][]byte {
	t.Helper()
	ctx := context.Background()
	h, err := l.TreeHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	heads := [][]byte{h}
	for i := range n {
		idx, err := l.Append(ctx, leafAt(i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != int64(i) {
			t.Fatalf("Append returned index %d, want %d", idx, i)
		}
		h, err := l.TreeHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		heads = append(heads, h)
	}
	return heads
}

func stores(t *testing.T) map[string]translog.Store {
	fs, err := translog.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return map[string]translog.Store{"mem": translog.NewMemStore(), "file": fs}
}

// Every inclusion proof in every tree size up to N verifies, and every
// consistency proof between two sizes up to N, through the binary encoding.
func TestProofsAllSizes(t *testing.T) {
	const N = 20
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			s := newSigner(t, "rootline.example/log")
			l, err := translog.New(st, s)
			if err != nil {
				t.Fatal(err)
			}
			heads := grow(t, l, N, leaf)
			key := s.VerifierKey()
			for size := int64(1); size <= N; size++ {
				for i := int64(0); i < size; i++ {
					p, err := l.InclusionProof(ctx, i, size)
					if err != nil {
						t.Fatal(err)
					}
					p2, err := translog.ParseProof(translog.MarshalProof(p))
					if err != nil {
						t.Fatal(err)
					}
					tr, err := translog.VerifyInclusion(key, heads[size], leaf(int(i)), i, p2)
					if err != nil || tr.N != size {
						t.Fatalf("VerifyInclusion(index %d, size %d) = %v, %v", i, size, tr, err)
					}
					// Another leaf, or another index, is not included.
					if _, err := translog.VerifyInclusion(key, heads[size], leaf(int(i)+1), i, p2); !errors.Is(err, translog.ErrNotIncluded) {
						t.Fatalf("wrong leaf: %v, want ErrNotIncluded", err)
					}
					if size > 1 {
						if _, err := translog.VerifyInclusion(key, heads[size], leaf(int(i)), (i+1)%size, p2); !errors.Is(err, translog.ErrNotIncluded) {
							t.Fatalf("wrong index: %v, want ErrNotIncluded", err)
						}
					}
				}
				if _, err := translog.VerifyInclusion(key, heads[size], leaf(0), size, nil); !errors.Is(err, translog.ErrNotIncluded) {
					t.Fatalf("index past the tree: %v, want ErrNotIncluded", err)
				}
			}
			for old := int64(0); old <= N; old++ {
				for nw := old; nw <= N; nw++ {
					p, err := l.ConsistencyProof(ctx, old, nw)
					if err != nil {
						t.Fatal(err)
					}
					p2, err := translog.ParseProof(translog.MarshalProof(p))
					if err != nil {
						t.Fatal(err)
					}
					if _, _, err := translog.VerifyConsistency(key, heads[old], heads[nw], p2); err != nil {
						t.Fatalf("VerifyConsistency(%d, %d): %v", old, nw, err)
					}
					if old > 0 && old < nw {
						// Swapped heads: the newer is not a prefix of the older.
						if _, _, err := translog.VerifyConsistency(key, heads[nw], heads[old], p2); !errors.Is(err, translog.ErrInconsistent) {
							t.Fatalf("swapped heads: %v, want ErrInconsistent", err)
						}
					}
				}
			}
			// Out-of-range requests.
			for _, c := range [][2]int64{{0, 0}, {-1, 1}, {N, N}, {0, N + 1}} {
				if _, err := l.InclusionProof(ctx, c[0], c[1]); !errors.Is(err, translog.ErrRange) {
					t.Errorf("InclusionProof(%d, %d): %v, want ErrRange", c[0], c[1], err)
				}
			}
			for _, c := range [][2]int64{{-1, 1}, {3, 2}, {1, N + 1}} {
				if _, err := l.ConsistencyProof(ctx, c[0], c[1]); !errors.Is(err, translog.ErrRange) {
					t.Errorf("ConsistencyProof(%d, %d): %v, want ErrRange", c[0], c[1], err)
				}
			}
			for i := range int64(N) {
				b, err := l.Leaf(ctx, i)
				if err != nil || !bytes.Equal(b, leaf(int(i))) {
					t.Fatalf("Leaf(%d) = %q, %v", i, b, err)
				}
			}
			if _, err := l.Append(ctx, nil); !errors.Is(err, translog.ErrLeafSize) {
				t.Errorf("empty leaf: %v", err)
			}
			if _, err := l.Append(ctx, make([]byte, translog.MaxLeafSize+1)); !errors.Is(err, translog.ErrLeafSize) {
				t.Errorf("huge leaf: %v", err)
			}
			if n, _ := l.Size(ctx); n != N {
				t.Errorf("Size after refused appends = %d, want %d", n, N)
			}
		})
	}
}

// A log that rewrote an old leaf cannot prove consistency with a head it
// signed before.
func TestRewrittenLogDetected(t *testing.T) {
	ctx := t.Context()
	s := newSigner(t, "log")
	key := s.VerifierKey()
	honest, _ := translog.New(translog.NewMemStore(), s)
	headsA := grow(t, honest, 10, leaf)
	forked, _ := translog.New(translog.NewMemStore(), s)
	headsB := grow(t, forked, 15, func(i int) []byte {
		if i == 3 {
			return []byte("a certificate that replaced number 3")
		}
		return leaf(i)
	})
	for old := int64(4); old <= 10; old++ {
		for nw := old; nw <= 15; nw++ {
			var p tlog.TreeProof
			if old < nw {
				var err error
				if p, err = forked.ConsistencyProof(ctx, old, nw); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := translog.VerifyConsistency(key, headsA[old], headsB[nw], p); !errors.Is(err, translog.ErrInconsistent) {
				t.Fatalf("rewritten log, sizes %d→%d: %v, want ErrInconsistent", old, nw, err)
			}
		}
	}
	// The honest log's proofs do not help either.
	p, _ := honest.ConsistencyProof(ctx, 5, 10)
	if _, _, err := translog.VerifyConsistency(key, headsA[5], headsB[10], p); !errors.Is(err, translog.ErrInconsistent) {
		t.Fatalf("honest proof against forked head: %v", err)
	}
	// Below the rewritten leaf, the logs agree.
	p, _ = forked.ConsistencyProof(ctx, 3, 15)
	if _, _, err := translog.VerifyConsistency(key, headsA[3], headsB[15], p); err != nil {
		t.Fatal(err)
	}
}

func TestHeadRefused(t *testing.T) {
	ctx := t.Context()
	s := newSigner(t, "log")
	l, _ := translog.New(translog.NewMemStore(), s)
	heads := grow(t, l, 5, leaf)
	head := heads[5]
	p, _ := l.InclusionProof(ctx, 2, 5)
	key := s.VerifierKey()

	other := newSigner(t, "log").VerifierKey() // same name, other key
	if _, err := translog.VerifyInclusion(other, head, leaf(2), 2, p); !errors.Is(err, translog.ErrWrongKey) {
		t.Errorf("other key: %v, want ErrWrongKey", err)
	}
	if _, err := translog.VerifyInclusion(newSigner(t, "other").VerifierKey(), head, leaf(2), 2, p); !errors.Is(err, translog.ErrWrongKey) {
		t.Errorf("other name: %v, want ErrWrongKey", err)
	}
	for _, bad := range []string{"", "log", key + "x", strings.Replace(key, "+", "-", 1), strings.Repeat("a", 2000)} {
		if _, err := translog.OpenTreeHead(bad, head); !errors.Is(err, translog.ErrBadVerifierKey) {
			t.Errorf("key %.40q: %v, want ErrBadVerifierKey", bad, err)
		}
	}
	// Tampered text: another tree size under the same signature.
	tampered := bytes.Replace(head, []byte("\n5\n"), []byte("\n6\n"), 1)
	if bytes.Equal(tampered, head) {
		t.Fatal("test did not tamper")
	}
	if _, err := translog.OpenTreeHead(key, tampered); !errors.Is(err, translog.ErrBadSignature) {
		t.Errorf("tampered text: %v, want ErrBadSignature", err)
	}
	// Tampered signature bytes (after the 4-byte key hash).
	i := bytes.LastIndex(head, []byte(" ")) + 1
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(head[i:])))
	if err != nil {
		t.Fatal(err)
	}
	sig[10] ^= 1
	forged := append(append([]byte(nil), head[:i]...), base64.StdEncoding.EncodeToString(sig)+"\n"...)
	if _, err := translog.OpenTreeHead(key, forged); !errors.Is(err, translog.ErrBadSignature) {
		t.Errorf("tampered signature: %v, want ErrBadSignature", err)
	}
	for _, bad := range [][]byte{nil, []byte("go.sum database tree\n"), head[:len(head)-2], bytes.Repeat([]byte("a"), translog.MaxHeadSize+1)} {
		if _, err := translog.OpenTreeHead(key, bad); !errors.Is(err, translog.ErrMalformedHead) {
			t.Errorf("malformed head %.30q: %v, want ErrMalformedHead", bad, err)
		}
	}
	// A validly signed note that is not a tree head.
	notTree, _ := note.Sign(&note.Note{Text: "hello\n"}, s)
	if _, err := translog.OpenTreeHead(key, notTree); !errors.Is(err, translog.ErrMalformedHead) {
		t.Errorf("signed non-tree note: %v, want ErrMalformedHead", err)
	}
	// Independent check with note.Open.
	v, err := note.NewVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(head, note.VerifierList(v)); err != nil {
		t.Fatal(err)
	}
	if _, err := translog.ParseProof(make([]byte, 33)); !errors.Is(err, translog.ErrMalformedProof) {
		t.Error(err)
	}
	if _, err := translog.ParseProof(make([]byte, 32*(translog.MaxProofHashes+1))); !errors.Is(err, translog.ErrMalformedProof) {
		t.Error(err)
	}
}

// The note format's published test vector (golang.org/x/mod/sumdb/note,
// note_test.go TestSign and TestNewVerifier): the key "PeterNeumann" and
// its signature of a two-line text. Signing through Signer over a
// crypto.Signer gives the same verifier key, key hash and signed note.
func TestNoteKnownAnswer(t *testing.T) {
	const (
		skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
		vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
		text = "If you think cryptography is the answer to your problem,\n" +
			"then you don't know what your problem is.\n"
		want = text + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
	)
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	if err != nil || raw[0] != 1 || len(raw) != 1+ed25519.SeedSize {
		t.Fatal("bad test vector")
	}
	s, err := translog.NewSigner("PeterNeumann", ed25519.NewKeyFromSeed(raw[1:]))
	if err != nil {
		t.Fatal(err)
	}
	if s.VerifierKey() != vkey || s.KeyHash() != 0xc74f20a3 {
		t.Fatalf("VerifierKey = %s, KeyHash = %08x; want %s", s.VerifierKey(), s.KeyHash(), vkey)
	}
	msg, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil || string(msg) != want {
		t.Fatalf("signed note:\n%s\nwant:\n%s (%v)", msg, want, err)
	}
	// The published note opens under the published key; it is not a tree.
	if _, err := translog.OpenTreeHead(vkey, []byte(want)); !errors.Is(err, translog.ErrMalformedHead) {
		t.Fatalf("OpenTreeHead(published note) = %v, want ErrMalformedHead (signature fine, text not a tree)", err)
	}
	if _, err := translog.OpenTreeHead(vkey, []byte(strings.Replace(want, "problem,", "problem;", 1))); !errors.Is(err, translog.ErrBadSignature) {
		t.Fatalf("tampered published note: %v, want ErrBadSignature", err)
	}
}

// RFC 6962 reference tree (the Certificate Transparency test vectors, as
// in certificate-transparency-go and RFC 9162 implementations): the root
// of the 8 leaves and the audit path of leaf 0, checked by VerifyInclusion
// under a head we sign for that root.
func TestRFC6962KnownAnswer(t *testing.T) {
	leaves := []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	roots := []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	proof0 := []string{
		"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
		"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
		"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
	}
	hx := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, l := range leaves {
		h, err := tlog.StoredHashes(int64(i), hx(l), r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, h...)
		root, _ := tlog.TreeHash(int64(i+1), r)
		if hex.EncodeToString(root[:]) != roots[i] {
			t.Fatalf("root of %d leaves = %x, want %s", i+1, root, roots[i])
		}
	}
	s := newSigner(t, "log")
	var root tlog.Hash
	copy(root[:], hx(roots[7]))
	head, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tlog.Tree{N: 8, Hash: root}))}, s)
	if err != nil {
		t.Fatal(err)
	}
	var p tlog.RecordProof
	for _, h := range proof0 {
		var x tlog.Hash
		copy(x[:], hx(h))
		p = append(p, x)
	}
	if _, err := translog.VerifyInclusion(s.VerifierKey(), head, nil, 0, p); err != nil {
		t.Fatal(err)
	}
	if _, err := translog.VerifyInclusion(s.VerifierKey(), head, []byte{0}, 0, p); !errors.Is(err, translog.ErrNotIncluded) {
		t.Fatal(err)
	}
}

// A store reopened after a crash at any point of an append gives the same
// tree head as before the append; damage beyond that is ErrCorrupt.
func TestFileStoreRecovery(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := newSigner(t, "log")
	open := func() (*translog.FileStore, *translog.Log) {
		t.Helper()
		fs, err := translog.OpenFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := translog.New(fs, s)
		return fs, l
	}
	fs, l := open()
	heads := grow(t, l, 9, leaf)
	fs.Close()

	hashes := filepath.Join(dir, "hashes")
	leaves := filepath.Join(dir, "leaves")
	hb, _ := os.ReadFile(hashes)
	lb, _ := os.ReadFile(leaves)
	appendTo := func(name string, b []byte) {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(b)
		f.Close()
	}
	reset := func() {
		os.WriteFile(hashes, hb, 0o600)
		os.WriteFile(leaves, lb, 0o600)
	}
	check := func(what string) {
		t.Helper()
		fs, l := open()
		defer fs.Close()
		h, err := l.TreeHead(ctx)
		if err != nil || !bytes.Equal(h, heads[9]) {
			t.Fatalf("%s: head after reopening\n%s\nwant\n%s (%v)", what, h, heads[9], err)
		}
	}
	check("clean reopen")
	if runtime.GOOS != "windows" && runtime.GOOS != "plan9" {
		fs1, _ := open()
		if fs2, err := translog.OpenFileStore(dir); !errors.Is(err, translog.ErrInUse) {
			if err == nil {
				fs2.Close()
			}
			t.Errorf("second open: %v, want ErrInUse", err)
		}
		fs1.Close()
	}
	// Crash after the hashes were written, before the leaf.
	appendTo(hashes, make([]byte, 32*2))
	check("hashes written, no leaf")
	reset()
	// Crash in the middle of the leaf.
	appendTo(hashes, make([]byte, 32*2))
	appendTo(leaves, []byte{0, 0, 0, 100, 'x'})
	check("torn leaf")
	reset()
	appendTo(hashes, make([]byte, 7))
	appendTo(leaves, []byte{0, 0})
	check("torn hash and header")
	reset()

	// The log goes on after recovery, as if nothing happened.
	fs, l = open()
	if _, err := l.Append(ctx, leaf(9)); err != nil {
		t.Fatal(err)
	}
	h10, _ := l.TreeHead(ctx)
	fs.Close()
	mem, _ := translog.New(translog.NewMemStore(), s)
	if want := grow(t, mem, 10, leaf)[10]; !bytes.Equal(h10, want) {
		t.Fatalf("head after recovery and append differs from a fresh log's")
	}
	reset()

	// Corruption: missing hashes, a changed last leaf, a bad length.
	corrupt := func(what string, f func()) {
		t.Helper()
		reset()
		f()
		if fs, err := translog.OpenFileStore(dir); !errors.Is(err, translog.ErrCorrupt) {
			if err == nil {
				fs.Close()
			}
			t.Errorf("%s: %v, want ErrCorrupt", what, err)
		}
	}
	corrupt("hashes cut", func() { os.WriteFile(hashes, hb[:len(hb)-32], 0o600) })
	corrupt("last leaf changed", func() {
		b := bytes.Clone(lb)
		b[len(b)-1] ^= 1
		os.WriteFile(leaves, b, 0o600)
	})
	corrupt("zero length", func() { appendTo(leaves, []byte{0, 0, 0, 0, 1}) })
	corrupt("huge length", func() { appendTo(leaves, []byte{0xff, 0, 0, 0, 1}) })
}

type countingSigner struct {
	*translog.Signer
	n int
}

func (c *countingSigner) Sign(msg []byte) ([]byte, error) { c.n++; return c.Signer.Sign(msg) }

// TreeHead signs each tree size once.
func TestTreeHeadSignedOncePerSize(t *testing.T) {
	ctx := t.Context()
	c := &countingSigner{Signer: newSigner(t, "log")}
	l, _ := translog.New(translog.NewMemStore(), c)
	h1, _ := l.TreeHead(ctx)
	h2, _ := l.TreeHead(ctx)
	if c.n != 1 || !bytes.Equal(h1, h2) {
		t.Fatalf("%d signatures for one size", c.n)
	}
	h1[0] ^= 1 // callers own the returned slice
	l.Append(ctx, leaf(0))
	h3, _ := l.TreeHead(ctx)
	h4, _ := l.TreeHead(ctx)
	if c.n != 2 || bytes.Equal(h2, h3) || !bytes.Equal(h3, h4) {
		t.Fatalf("%d signatures for two sizes", c.n)
	}
	if _, err := translog.OpenTreeHead(c.VerifierKey(), h2); err != nil {
		t.Fatal(err)
	}
	if _, err := translog.New(translog.NewMemStore(), nil); err != nil {
		t.Fatal(err)
	}
	ln, _ := translog.New(translog.NewMemStore(), nil)
	if _, err := ln.TreeHead(ctx); err == nil {
		t.Fatal("TreeHead without a signer succeeded")
	}
}

func TestNewSignerRefuses(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	for _, name := range []string{"", "a b", "a+b", "a\nb", string([]byte{0xff})} {
		if _, err := translog.NewSigner(name, priv); err == nil {
			t.Errorf("NewSigner(%q) succeeded", name)
		}
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := translog.NewSigner("log", ec); err == nil {
		t.Error("NewSigner(ECDSA key) succeeded")
	}
	if _, err := translog.NewSigner("log", nil); err == nil {
		t.Error("NewSigner(nil) succeeded")
	}
	// A signer whose signatures do not verify (a faulty token) is caught.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := translog.NewSigner("log", mismatched{priv, other})
	if _, err := s.Sign([]byte("msg")); err == nil {
		t.Error("a wrong signature was returned")
	}
}

// mismatched claims one public key and signs with another.
type mismatched struct{ pub, sign ed25519.PrivateKey }

func (m mismatched) Public() crypto.PublicKey { return m.pub.Public() }
func (m mismatched) Sign(r io.Reader, msg []byte, o crypto.SignerOpts) ([]byte, error) {
	return m.sign.Sign(r, msg, o)
}

// Concurrent appends are committed in batches (group commit): every leaf
// gets one index, the store holds each leaf at its index, and the tree is
// the one the same leaves appended one by one in index order make.
func TestConcurrentAppendGroupCommit(t *testing.T) {
	ctx := t.Context()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := newSigner(t, "log")
			l, _ := translog.New(st, s)
			const writers, each = 32, 25
			got := make([][]int64, writers)
			errs := make(chan error, writers)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						idx, err := l.Append(ctx, leaf(w*each+i))
						if err != nil {
							errs <- err
							return
						}
						got[w] = append(got[w], idx)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			seen := map[int64]bool{}
			order := make([][]byte, writers*each)
			for w, idxs := range got {
				for i, idx := range idxs {
					if seen[idx] || idx < 0 || idx >= writers*each {
						t.Fatalf("index %d given twice or out of range", idx)
					}
					seen[idx] = true
					order[idx] = leaf(w*each + i)
					b, err := l.Leaf(ctx, idx)
					if err != nil || !bytes.Equal(b, order[idx]) {
						t.Fatalf("leaf %d is %q, want %q (%v)", idx, b, order[idx], err)
					}
				}
			}
			mem, _ := translog.New(translog.NewMemStore(), s)
			want := grow(t, mem, writers*each, func(i int) []byte { return order[i] })[writers*each]
			head, err := l.TreeHead(ctx)
			if err != nil || !bytes.Equal(head, want) {
				t.Fatalf("head after concurrent appends\n%s\nwant\n%s (%v)", head, want, err)
			}
		})
	}
}

// A batch torn by a crash keeps its complete leaves (whose hashes were
// synced before them) and loses the torn one.
func TestFileStoreTornBatch(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	fs, err := translog.OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t, "log")
	l, _ := translog.New(fs, s)
	grow(t, l, 3, leaf)
	fs.Close()
	lb, _ := os.ReadFile(filepath.Join(dir, "leaves"))
	// A batch of leaves 3, 4, 5: all hashes written, then the leaves file
	// cut in the middle of leaf 5.
	fs, _ = translog.OpenFileStore(dir)
	l, _ = translog.New(fs, s)
	var wg sync.WaitGroup
	for i := 3; i < 6; i++ {
		wg.Go(func() {
			if _, err := l.Append(ctx, leaf(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	fs.Close()
	full, _ := os.ReadFile(filepath.Join(dir, "leaves"))
	os.WriteFile(filepath.Join(dir, "leaves"), full[:len(full)-3], 0o600)
	fs, err = translog.OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	n, _ := fs.Size(ctx)
	if n != 5 {
		t.Fatalf("size after a torn batch: %d, want 5", n)
	}
	if len(full) <= len(lb) {
		t.Fatal("the batch wrote nothing")
	}
}
