// Package translog is the factory's issuance log: a transparency log of
// every certificate the provisioning service issues, in the form of the Go
// checksum database (golang.org/x/mod/sumdb/tlog), with tree heads signed
// as notes (golang.org/x/mod/sumdb/note) by a key that may live in an HSM.
//
// Anyone holding a signed tree head and the log's verifier key can check
// that a certificate was logged ([VerifyInclusion]) and that a newer tree
// head extends an older one, that is, that the log was never rewritten
// ([VerifyConsistency]).
//
// # Leaves
//
// A leaf is the DER encoding of one issued certificate, exactly as issued.
// The certificate already binds the UEID, product and serial number, and a
// verifier holding the certificate needs nothing else to recompute the
// leaf hash: tlog.RecordHash(der) = SHA-256(0x00 || der), the leaf hash of
// RFC 6962, section 2.1. Interior nodes are SHA-256(0x01 || left || right)
// (tlog.NodeHash), so tree hashes and proofs are those of RFC 6962 (and
// RFC 9162 section 2.1), as the Go checksum database computes them.
//
// # Tree heads
//
// A tree head is tlog.FormatTree of the tree size and root hash:
//
//	go.sum database tree
//	N
//	base64(root hash)
//
// signed as a note (golang.org/x/mod/sumdb/note): the text, a blank line
// and one line "— NAME base64(keyhash[4] || Ed25519 signature)". The
// verifier key is the note format "NAME+hex(keyhash)+base64(0x01 || public
// key)", where keyhash is the first 4 bytes of SHA-256(NAME || "\n" ||
// 0x01 || public key) and 0x01 names Ed25519.
package translog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxLeafSize bounds a leaf (a certificate's DER).
const MaxLeafSize = 64 << 10

// Errors of the log. Verification errors are wrapped so that errors.Is
// matches them; the underlying tlog or note error is kept in the message.
var (
	// ErrBadVerifierKey: the verifier key string is malformed or not Ed25519.
	ErrBadVerifierKey = errors.New("translog: malformed verifier key")
	// ErrMalformedHead: the tree head is not a well-formed signed note of a tree.
	ErrMalformedHead = errors.New("translog: malformed tree head")
	// ErrWrongKey: the tree head carries no signature by the verifier key.
	ErrWrongKey = errors.New("translog: tree head not signed by this key")
	// ErrBadSignature: the tree head names the verifier key but its
	// signature does not verify (a tampered or forged head).
	ErrBadSignature = errors.New("translog: invalid tree head signature")
	// ErrNotIncluded: the inclusion proof does not lead from the leaf to the
	// tree head's root.
	ErrNotIncluded = errors.New("translog: leaf not included in the tree head")
	// ErrInconsistent: the newer tree head does not extend the older one:
	// the log was rewritten (or the proof is wrong).
	ErrInconsistent = errors.New("translog: tree heads are not consistent (log rewritten?)")
	// ErrMalformedProof: a proof's encoding is wrong.
	ErrMalformedProof = errors.New("translog: malformed proof")
	// ErrRange: an index or tree size is out of range.
	ErrRange = errors.New("translog: index or tree size out of range")
	// ErrLeafSize: a leaf is empty or larger than MaxLeafSize.
	ErrLeafSize = errors.New("translog: leaf empty or too large")
	// ErrCorrupt: the store's files are inconsistent beyond crash recovery.
	ErrCorrupt = errors.New("translog: store corrupt")
	// ErrInUse: another FileStore has the directory open.
	ErrInUse = errors.New("translog: store in use by another process")
)

// Log is a transparency log over a [Store], signing tree heads with a
// note.Signer. It is safe for concurrent use; appends are serialised.
type Log struct {
	mu     sync.Mutex // held while a batch of appends is committed
	qmu    sync.Mutex // guards queue
	queue  []*appendRequest
	store  Store
	signer note.Signer

	headMu   sync.Mutex
	head     []byte // the last signed head, of a tree of headSize leaves
	headSize int64
}

// New returns a log over store whose tree heads signer signs. A nil
// signer gives a log that appends and proves but cannot sign tree heads.
func New(store Store, signer note.Signer) (*Log, error) {
	if store == nil {
		return nil, errors.New("translog: nil store")
	}
	return &Log{store: store, signer: signer}, nil
}

func hashReader(ctx context.Context, s Store) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		return s.ReadHashes(ctx, idx)
	})
}

// Append adds leaf (a certificate's DER) at the end of the log and returns
// its index. It is durable when Append returns (as durable as the Store).
//
// Concurrent appends are committed together (group commit): while one
// batch is being written, the leaves that arrive wait and go to the store
// as the next batch, at the cost of one write and one sync for all of them.
// Each caller still learns its own index only once its leaf is durable.
func (l *Log) Append(ctx context.Context, leaf []byte) (int64, error) {
	if len(leaf) == 0 || len(leaf) > MaxLeafSize {
		return 0, ErrLeafSize
	}
	req := &appendRequest{leaf: leaf, done: make(chan appendResult, 1)}
	l.qmu.Lock()
	l.queue = append(l.queue, req)
	l.qmu.Unlock()
	for {
		// Whoever holds mu commits the queue; a request is answered
		// before mu is released, so the holder finds its own request
		// either answered or still queued.
		l.mu.Lock()
		select {
		case r := <-req.done:
			l.mu.Unlock()
			return r.index, r.err
		default:
		}
		// Let the appenders that are runnable now (those one registry
		// COMMIT answered together) queue their leaves first: they go
		// in this batch, at the cost of one pair of fsyncs, instead of
		// waiting for the next one.
		runtime.Gosched()
		l.qmu.Lock()
		batch := l.queue
		if len(batch) > maxAppendBatch {
			batch = batch[:maxAppendBatch:maxAppendBatch]
		}
		l.queue = l.queue[len(batch):]
		if len(l.queue) == 0 {
			l.queue = nil
		}
		l.qmu.Unlock()
		// The batch is other callers' too: one caller's cancellation must
		// not fail theirs.
		l.commit(context.WithoutCancel(ctx), batch)
		l.mu.Unlock()
		select {
		case r := <-req.done:
			return r.index, r.err
		default: // the batch was full before this request: go again
		}
	}
}

// maxAppendBatch bounds the leaves one store append writes.
const maxAppendBatch = 512

type appendRequest struct {
	leaf []byte
	done chan appendResult // buffered: the committer never blocks on it
}

type appendResult struct {
	index int64
	err   error
}

// commit appends batch to the store in one Store.Append, with l.mu held,
// and answers each request.
func (l *Log) commit(ctx context.Context, batch []*appendRequest) {
	answer := func(first int64, err error) {
		for i, r := range batch {
			r.done <- appendResult{index: first + int64(i), err: err}
		}
	}
	n, err := l.store.Size(ctx)
	if err != nil {
		answer(0, err)
		return
	}
	// tlog.StoredHashes returns the hashes the tree stores once record i
	// is added: its leaf hash and every complete subtree it closes. It
	// reads earlier hashes, which for leaves of this batch are not in the
	// store yet: the overlay holds them.
	first := tlog.StoredHashCount(n)
	var added []tlog.Hash
	read := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var fromStore []int64
		for _, x := range idx {
			if x < first {
				fromStore = append(fromStore, x)
			}
		}
		var stored []tlog.Hash
		if len(fromStore) > 0 {
			var err error
			if stored, err = l.store.ReadHashes(ctx, fromStore); err != nil {
				return nil, err
			}
		}
		for i, x := range idx {
			switch {
			case x < first:
				out[i], stored = stored[0], stored[1:]
			case x-first < int64(len(added)):
				out[i] = added[x-first]
			default:
				return nil, fmt.Errorf("%w: stored hash %d", ErrRange, x)
			}
		}
		return out, nil
	})
	leaves := make([][]byte, len(batch))
	for i, r := range batch {
		leaves[i] = r.leaf
		h, err := tlog.StoredHashes(n+int64(i), r.leaf, read)
		if err != nil {
			answer(0, fmt.Errorf("translog: %w", err))
			return
		}
		added = append(added, h...)
	}
	if err := l.store.Append(ctx, n, leaves, added); err != nil {
		answer(0, err)
		return
	}
	answer(n, nil)
}

// Size returns the number of leaves in the log.
func (l *Log) Size(ctx context.Context) (int64, error) { return l.store.Size(ctx) }

// Leaf returns the leaf at index.
func (l *Log) Leaf(ctx context.Context, index int64) ([]byte, error) {
	return l.store.ReadLeaf(ctx, index)
}

// Tree returns the current tree size and root hash, unsigned.
func (l *Log) Tree(ctx context.Context) (tlog.Tree, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.store.Size(ctx)
	if err != nil {
		return tlog.Tree{}, err
	}
	h, err := tlog.TreeHash(n, hashReader(ctx, l.store))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("translog: %w", err)
	}
	return tlog.Tree{N: n, Hash: h}, nil
}

// TreeHead returns the current tree head, signed as a note. The log signs
// each tree size once: while nothing is appended, TreeHead returns the
// same head without asking the signer (an HSM) again.
func (l *Log) TreeHead(ctx context.Context) ([]byte, error) {
	if l.signer == nil {
		return nil, errors.New("translog: log has no signer")
	}
	t, err := l.Tree(ctx)
	if err != nil {
		return nil, err
	}
	l.headMu.Lock()
	defer l.headMu.Unlock()
	if l.head != nil && l.headSize == t.N {
		return bytes.Clone(l.head), nil
	}
	msg, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(t))}, l.signer)
	if err != nil {
		return nil, fmt.Errorf("translog: signing tree head: %w", err)
	}
	l.head, l.headSize = msg, t.N
	return bytes.Clone(msg), nil
}

// InclusionProof proves that leaf index is in the tree of treeSize leaves
// (0 <= index < treeSize <= Size).
func (l *Log) InclusionProof(ctx context.Context, index, treeSize int64) (tlog.RecordProof, error) {
	n, err := l.store.Size(ctx)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= treeSize || treeSize > n {
		return nil, fmt.Errorf("%w: index %d, tree size %d, log size %d", ErrRange, index, treeSize, n)
	}
	p, err := tlog.ProveRecord(treeSize, index, hashReader(ctx, l.store))
	if err != nil {
		return nil, fmt.Errorf("translog: %w", err)
	}
	return p, nil
}

// ConsistencyProof proves that the tree of oldSize leaves is a prefix of
// the tree of newSize leaves (0 <= oldSize <= newSize <= Size). From the
// empty tree, and between equal sizes, the proof is empty.
func (l *Log) ConsistencyProof(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, error) {
	n, err := l.store.Size(ctx)
	if err != nil {
		return nil, err
	}
	if oldSize < 0 || oldSize > newSize || newSize > n {
		return nil, fmt.Errorf("%w: old size %d, new size %d, log size %d", ErrRange, oldSize, newSize, n)
	}
	if oldSize == 0 || oldSize == newSize {
		return tlog.TreeProof{}, nil
	}
	p, err := tlog.ProveTree(newSize, oldSize, hashReader(ctx, l.store))
	if err != nil {
		return nil, fmt.Errorf("translog: %w", err)
	}
	return p, nil
}
