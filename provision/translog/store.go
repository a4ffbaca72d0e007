package translog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/rootline/rootline/internal/atomicfile"
)

// Store holds a log's leaves and its stored hashes (tlog's layout: the
// hash of every complete subtree, indexed by tlog.StoredHashIndex). It is
// append-only. The registry database can implement it; [FileStore] and
// [MemStore] are the two here.
type Store interface {
	// Size returns the number of leaves.
	Size(ctx context.Context) (int64, error)
	// ReadHashes returns the stored hashes at the given indexes, which
	// must all be below tlog.StoredHashCount(Size).
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// ReadLeaf returns the leaf at index (below Size).
	ReadLeaf(ctx context.Context, index int64) ([]byte, error)
	// Append adds leaves n, n+1, …, where n must equal Size, with the
	// stored hashes they add (those tlog.StoredHashes returns for each,
	// in order). Each leaf is atomic with its hashes: after a crash a
	// leaf is in the store with its hashes or not at all, and if leaf
	// n+i is, so are the leaves before it. Append returns once all are
	// durable; a Store commits a batch at the cost of one.
	Append(ctx context.Context, n int64, leaves [][]byte, hashes []tlog.Hash) error
}

func checkAppend(size, n int64, leaves [][]byte, hashes []tlog.Hash) error {
	if n != size {
		return fmt.Errorf("%w: append at %d to a log of %d leaves", ErrRange, n, size)
	}
	if len(leaves) == 0 {
		return fmt.Errorf("%w: no leaf to append", ErrRange)
	}
	end := n + int64(len(leaves))
	if int64(len(hashes)) != tlog.StoredHashCount(end)-tlog.StoredHashCount(n) {
		return fmt.Errorf("translog: %d stored hashes for leaves %d to %d, want %d", len(hashes), n, end-1, tlog.StoredHashCount(end)-tlog.StoredHashCount(n))
	}
	for _, leaf := range leaves {
		if len(leaf) == 0 || len(leaf) > MaxLeafSize {
			return ErrLeafSize
		}
	}
	return nil
}

// MemStore is a Store in memory, for tests and benchmarks.
type MemStore struct {
	mu     sync.Mutex
	leaves [][]byte
	hashes []tlog.Hash
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{} }

func (m *MemStore) Size(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.leaves)), nil
}

func (m *MemStore) ReadHashes(_ context.Context, idx []int64) ([]tlog.Hash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("%w: stored hash %d", ErrRange, x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *MemStore) ReadLeaf(_ context.Context, index int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index < 0 || index >= int64(len(m.leaves)) {
		return nil, fmt.Errorf("%w: leaf %d", ErrRange, index)
	}
	return append([]byte(nil), m.leaves[index]...), nil
}

func (m *MemStore) Append(_ context.Context, n int64, leaves [][]byte, hashes []tlog.Hash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := checkAppend(int64(len(m.leaves)), n, leaves, hashes); err != nil {
		return err
	}
	for _, leaf := range leaves {
		m.leaves = append(m.leaves, append([]byte(nil), leaf...))
	}
	m.hashes = append(m.hashes, hashes...)
	return nil
}

// Files of a FileStore's directory.
const (
	hashesFile = "hashes" // stored hashes, 32 bytes each, in tlog's order
	leavesFile = "leaves" // leaves, each a 4-byte big-endian length and the bytes
)

// FileStore is a Store in two append-only files of a directory. One
// FileStore at a time may open a directory: OpenFileStore takes an
// exclusive advisory lock (flock, on Unix) and refuses with ErrInUse.
//
// Append writes the new stored hashes, fsyncs, then writes the leaves and
// fsyncs: each leaf is its own commit point. On open, a torn leaf at the end of
// the leaves file is cut off, then stored hashes beyond those of the
// complete leaves are cut off (an append that crashed before its commit);
// fewer hashes than the leaves need, or a last leaf whose hash is not the
// stored one, is ErrCorrupt.
type FileStore struct {
	mu      sync.Mutex
	hashes  *os.File
	leaves  *os.File
	offsets []int64 // offset of each leaf's length prefix
	end     int64   // size of the leaves file
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens the store in dir, creating dir's files if missing,
// and recovers from an append that a crash interrupted.
func OpenFileStore(dir string) (_ *FileStore, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("translog: %w", err)
	}
	s := &FileStore{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.hashes, err = os.OpenFile(filepath.Join(dir, hashesFile), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("translog: %w", err)
	}
	if s.leaves, err = os.OpenFile(filepath.Join(dir, leavesFile), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("translog: %w", err)
	}
	if err := lockExclusive(s.leaves); err != nil {
		return nil, err
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return nil, err
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileStore) recover() error {
	fi, err := s.leaves.Stat()
	if err != nil {
		return fmt.Errorf("translog: %w", err)
	}
	size := fi.Size()
	var off int64
	var hdr [4]byte
	for off < size {
		if size-off < 4 {
			break
		}
		if _, err := s.leaves.ReadAt(hdr[:], off); err != nil {
			return fmt.Errorf("translog: %w", err)
		}
		l := int64(binary.BigEndian.Uint32(hdr[:]))
		if l == 0 || l > MaxLeafSize {
			return fmt.Errorf("%w: leaf %d at offset %d has length %d", ErrCorrupt, len(s.offsets), off, l)
		}
		if off+4+l > size {
			break
		}
		s.offsets = append(s.offsets, off)
		off += 4 + l
	}
	if off < size { // a torn last leaf: its append never committed
		if err := truncateSync(s.leaves, off); err != nil {
			return err
		}
	}
	s.end = off
	n := int64(len(s.offsets))
	want := tlog.StoredHashCount(n) * tlog.HashSize
	hi, err := s.hashes.Stat()
	if err != nil {
		return fmt.Errorf("translog: %w", err)
	}
	switch {
	case hi.Size() < want:
		return fmt.Errorf("%w: %d bytes of stored hashes for %d leaves, want %d", ErrCorrupt, hi.Size(), n, want)
	case hi.Size() > want:
		if err := truncateSync(s.hashes, want); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	// The last leaf's stored hash must be its record hash.
	leaf, err := s.readLeaf(n - 1)
	if err != nil {
		return err
	}
	h, err := s.readHashes([]int64{tlog.StoredHashIndex(0, n-1)})
	if err != nil {
		return err
	}
	if h[0] != tlog.RecordHash(leaf) {
		return fmt.Errorf("%w: leaf %d does not match its stored hash", ErrCorrupt, n-1)
	}
	return nil
}

func truncateSync(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("translog: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("translog: %w", err)
	}
	return nil
}

// Close closes the files.
func (s *FileStore) Close() error {
	var errs []error
	if s.hashes != nil {
		errs = append(errs, s.hashes.Close())
	}
	if s.leaves != nil {
		errs = append(errs, s.leaves.Close())
	}
	return errors.Join(errs...)
}

func (s *FileStore) Size(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.offsets)), nil
}

func (s *FileStore) ReadHashes(_ context.Context, idx []int64) ([]tlog.Hash, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readHashes(idx)
}

func (s *FileStore) readHashes(idx []int64) ([]tlog.Hash, error) {
	count := tlog.StoredHashCount(int64(len(s.offsets)))
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= count {
			return nil, fmt.Errorf("%w: stored hash %d of %d", ErrRange, x, count)
		}
		if _, err := s.hashes.ReadAt(out[i][:], x*tlog.HashSize); err != nil {
			return nil, fmt.Errorf("translog: %w", err)
		}
	}
	return out, nil
}

func (s *FileStore) ReadLeaf(_ context.Context, index int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readLeaf(index)
}

func (s *FileStore) readLeaf(index int64) ([]byte, error) {
	if index < 0 || index >= int64(len(s.offsets)) {
		return nil, fmt.Errorf("%w: leaf %d", ErrRange, index)
	}
	off := s.offsets[index]
	end := s.end
	if index+1 < int64(len(s.offsets)) {
		end = s.offsets[index+1]
	}
	b := make([]byte, end-off)
	if _, err := s.leaves.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("translog: %w", err)
	}
	return b[4:], nil
}

func (s *FileStore) Append(_ context.Context, n int64, leaves [][]byte, hashes []tlog.Hash) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := checkAppend(int64(len(s.offsets)), n, leaves, hashes); err != nil {
		return err
	}
	hoff := tlog.StoredHashCount(n) * tlog.HashSize
	defer func() {
		if err != nil { // undo, best effort: recovery on open does it too
			s.hashes.Truncate(hoff)
			s.leaves.Truncate(s.end)
		}
	}()
	if _, err := s.hashes.WriteAt(MarshalProof(hashes), hoff); err != nil {
		return fmt.Errorf("translog: %w", err)
	}
	if err := s.hashes.Sync(); err != nil {
		return fmt.Errorf("translog: %w", err)
	}
	size := 0
	for _, leaf := range leaves {
		size += 4 + len(leaf)
	}
	rec := make([]byte, 0, size)
	offsets := make([]int64, len(leaves))
	for i, leaf := range leaves {
		offsets[i] = s.end + int64(len(rec))
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(leaf)))
		rec = append(rec, leaf...)
	}
	if _, err := s.leaves.WriteAt(rec, s.end); err != nil {
		return fmt.Errorf("translog: %w", err)
	}
	if err := s.leaves.Sync(); err != nil {
		return fmt.Errorf("translog: %w", err)
	}
	s.offsets = append(s.offsets, offsets...)
	s.end += int64(len(rec))
	return nil
}
