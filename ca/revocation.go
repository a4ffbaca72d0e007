package ca

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rootline/rootline/internal/atomicfile"
)

// Revocation is one revoked certificate.
type Revocation struct {
	Serial *big.Int
	// Reason is the RFC 5280, §5.3.1, CRLReason code (see [CheckReason]).
	Reason int
	// Time is when it was revoked.
	Time time.Time
}

// CRLReason codes (RFC 5280, §5.3.1) that [CheckReason] accepts.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonPrivilegeWithdrawn   = 9
)

// CheckReason accepts the CRLReason codes that apply to the end-entity
// certificates of this CA, revoked for good: unspecified (0),
// keyCompromise (1), affiliationChanged (3), superseded (4),
// cessationOfOperation (5) and privilegeWithdrawn (9). It refuses
// cACompromise (2, for CA certificates), certificateHold (6: a hold is
// never released here), 7 (unused), removeFromCRL (8, delta CRLs only)
// and aACompromise (10, attribute certificates). Errors wrap
// [ErrBadReason].
func CheckReason(reason int) error {
	switch reason {
	case ReasonUnspecified, ReasonKeyCompromise, ReasonAffiliationChanged, ReasonSuperseded,
		ReasonCessationOfOperation, ReasonPrivilegeWithdrawn:
		return nil
	}
	return fmt.Errorf("%w: %d (want 0, 1, 3, 4, 5 or 9; RFC 5280, §5.3.1)", ErrBadReason, reason)
}

// RevocationStore keeps the revocations of a [Local] CA and numbers its
// CRLs. [MemoryStore] and [FileStore] implement it; the provisioning
// registry can implement it on its database. Implementations are safe for
// concurrent use.
type RevocationStore interface {
	// Revoke records r. If r.Serial is revoked already it returns an
	// error wrapping [ErrAlreadyRevoked] and changes nothing.
	Revoke(ctx context.Context, r Revocation) error
	// Revoked returns every recorded revocation, oldest first.
	Revoked(ctx context.Context) ([]Revocation, error)
	// NextCRLNumber records and returns the next CRL number of the named
	// issuing CA: 1 the first time, then each greater than the one before
	// (RFC 5280, §5.2.3: "monotonically increasing").
	NextCRLNumber(ctx context.Context, issuer string) (*big.Int, error)
}

// storeState is the content of a store, and the JSON of a FileStore.
type storeState struct {
	Version    int               `json:"version"`
	Revoked    []storedRevoked   `json:"revoked"`
	CRLNumbers map[string]uint64 `json:"crlNumbers"`
}

type storedRevoked struct {
	Serial string    `json:"serial"` // lowercase hex, no leading zeros
	Reason int       `json:"reason"`
	Time   time.Time `json:"time"`
}

func (s *storeState) clone() *storeState {
	c := &storeState{Version: 1, Revoked: slices.Clone(s.Revoked), CRLNumbers: make(map[string]uint64, len(s.CRLNumbers))}
	for k, v := range s.CRLNumbers {
		c.CRLNumbers[k] = v
	}
	return c
}

func (s *storeState) has(serial string) bool {
	return slices.ContainsFunc(s.Revoked, func(r storedRevoked) bool { return r.Serial == serial })
}

func (s *storeState) revoke(r Revocation) error {
	if err := CheckSerial(r.Serial); err != nil {
		return err
	}
	if err := CheckReason(r.Reason); err != nil {
		return err
	}
	if r.Time.IsZero() {
		return fmt.Errorf("%w: zero revocation time", ErrRevocationStore)
	}
	hs := r.Serial.Text(16)
	if s.has(hs) {
		return fmt.Errorf("%w: serial %s", ErrAlreadyRevoked, hs)
	}
	if len(s.Revoked) >= maxRevocations {
		return fmt.Errorf("%w: more than %d revocations", ErrRevocationStore, maxRevocations)
	}
	s.Revoked = append(s.Revoked, storedRevoked{Serial: hs, Reason: r.Reason, Time: r.Time.UTC().Truncate(time.Second)})
	return nil
}

func (s *storeState) list() []Revocation {
	out := make([]Revocation, len(s.Revoked))
	for i, r := range s.Revoked {
		n, _ := new(big.Int).SetString(r.Serial, 16) // checked when stored or loaded
		out[i] = Revocation{Serial: n, Reason: r.Reason, Time: r.Time}
	}
	return out
}

func (s *storeState) nextCRLNumber(issuer string) (*big.Int, error) {
	if issuer == "" || len(issuer) > MaxNameLen {
		return nil, fmt.Errorf("%w: bad issuer name", ErrRevocationStore)
	}
	n := s.CRLNumbers[issuer]
	if n == math.MaxUint64 {
		return nil, fmt.Errorf("%w: CRL numbers of %s exhausted", ErrRevocationStore, issuer)
	}
	if _, ok := s.CRLNumbers[issuer]; !ok && len(s.CRLNumbers) >= maxIssuers {
		return nil, fmt.Errorf("%w: more than %d issuers", ErrRevocationStore, maxIssuers)
	}
	s.CRLNumbers[issuer] = n + 1
	return new(big.Int).SetUint64(n + 1), nil
}

// Bounds on a store.
const (
	maxRevocations = 1 << 20
	maxIssuers     = 1 << 10
	maxStoreFile   = 128 << 20
)

// MemoryStore is a [RevocationStore] in memory, for tests and for CAs whose
// revocations live elsewhere. The zero value is empty and ready.
type MemoryStore struct {
	mu sync.Mutex
	s  *storeState
}

var _ RevocationStore = (*MemoryStore)(nil)

func (m *MemoryStore) state() *storeState {
	if m.s == nil {
		m.s = &storeState{Version: 1, CRLNumbers: map[string]uint64{}}
	}
	return m.s
}

// Revoke implements [RevocationStore].
func (m *MemoryStore) Revoke(ctx context.Context, r Revocation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state().revoke(r)
}

// Revoked implements [RevocationStore].
func (m *MemoryStore) Revoked(ctx context.Context) ([]Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state().list(), nil
}

// NextCRLNumber implements [RevocationStore].
func (m *MemoryStore) NextCRLNumber(ctx context.Context, issuer string) (*big.Int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state().nextCRLNumber(issuer)
}

// FileStore is a [RevocationStore] in one JSON file, rewritten atomically
// (internal/atomicfile) on every change, so a crash leaves the old content
// or the new. Each change takes an exclusive lock on PATH.lock and reads
// the file again first, so several processes (the CLI's revoke and crl
// commands) may share it. A change that cannot be written changes
// nothing.
type FileStore struct {
	path string
	mu   sync.Mutex
}

var _ RevocationStore = (*FileStore)(nil)

// OpenFileStore opens the store in path, creating it (empty) if it does
// not exist. The file is untrusted input: a corrupt one is refused with an
// error wrapping [ErrRevocationStore].
func OpenFileStore(path string) (*FileStore, error) {
	f := &FileStore{path: path}
	err := f.update(func(*storeState) error { return nil })
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Path returns the store's file.
func (f *FileStore) Path() string { return f.path }

// load reads and checks the file; a missing file is an empty store.
func (f *FileStore) load() (*storeState, bool, error) {
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return &storeState{Version: 1, CRLNumbers: map[string]uint64{}}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrRevocationStore, err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxStoreFile+1))
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrRevocationStore, err)
	}
	s, err := parseStore(b)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %v", ErrRevocationStore, f.path, err)
	}
	return s, true, nil
}

// parseStore reads an untrusted store file.
func parseStore(b []byte) (*storeState, error) {
	if len(b) > maxStoreFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStoreFile)
	}
	var s storeState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.Version != 1 {
		return nil, fmt.Errorf("version %d, want 1", s.Version)
	}
	if len(s.Revoked) > maxRevocations || len(s.CRLNumbers) > maxIssuers {
		return nil, errors.New("too many entries")
	}
	seen := make(map[string]bool, len(s.Revoked))
	for _, r := range s.Revoked {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok || n.Text(16) != r.Serial || CheckSerial(n) != nil {
			return nil, fmt.Errorf("bad serial %q", clip(r.Serial))
		}
		if seen[r.Serial] {
			return nil, fmt.Errorf("serial %s listed twice", r.Serial)
		}
		seen[r.Serial] = true
		if err := CheckReason(r.Reason); err != nil {
			return nil, err
		}
		if r.Time.IsZero() {
			return nil, fmt.Errorf("serial %s has no revocation time", r.Serial)
		}
	}
	for k := range s.CRLNumbers {
		if k == "" || len(k) > MaxNameLen {
			return nil, fmt.Errorf("bad issuer name %q", clip(k))
		}
	}
	if s.CRLNumbers == nil {
		s.CRLNumbers = map[string]uint64{}
	}
	return &s, nil
}

// update applies change to the current content under the lock and writes
// the result if change succeeds.
func (f *FileStore) update(change func(*storeState) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	unlock, err := lockFile(f.path + ".lock")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRevocationStore, err)
	}
	defer unlock()
	cur, exists, err := f.load()
	if err != nil {
		return err
	}
	next := cur.clone()
	if err := change(next); err != nil {
		return err
	}
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRevocationStore, err)
	}
	if exists {
		if old, err := json.MarshalIndent(cur, "", "  "); err == nil && string(old) == string(b) {
			return nil // nothing changed
		}
	}
	if err := atomicfile.Write(f.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrRevocationStore, err)
	}
	return nil
}

// Revoke implements [RevocationStore].
func (f *FileStore) Revoke(ctx context.Context, r Revocation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.update(func(s *storeState) error { return s.revoke(r) })
}

// Revoked implements [RevocationStore].
func (f *FileStore) Revoked(ctx context.Context) ([]Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, _, err := f.load()
	if err != nil {
		return nil, err
	}
	return s.list(), nil
}

// NextCRLNumber implements [RevocationStore].
func (f *FileStore) NextCRLNumber(ctx context.Context, issuer string) (*big.Int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var n *big.Int
	err := f.update(func(s *storeState) error {
		var err error
		n, err = s.nextCRLNumber(issuer)
		return err
	})
	return n, err
}

// Hex formats a serial number as this package's CLI and logs do: lowercase
// hex without leading zeros.
func Hex(serial *big.Int) string {
	if serial == nil {
		return "<nil>"
	}
	return serial.Text(16)
}

// ParseHex parses a serial number written by [Hex] (an even or odd number
// of hex digits, optionally with "0x", upper or lower case). The result is
// checked as a serial number ([ErrBadSerial]).
func ParseHex(s string) (*big.Int, error) {
	t := s
	if len(t) > 2 && (t[:2] == "0x" || t[:2] == "0X") {
		t = t[2:]
	}
	if len(t) == 0 || len(t) > 40 {
		return nil, fmt.Errorf("%w: %q is not 1 to 40 hex digits", ErrBadSerial, clip(s))
	}
	if len(t)%2 == 1 {
		t = "0" + t
	}
	b, err := hex.DecodeString(t)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not hex", ErrBadSerial, clip(s))
	}
	n := new(big.Int).SetBytes(b)
	if err := CheckSerial(n); err != nil {
		return nil, err
	}
	return n, nil
}
