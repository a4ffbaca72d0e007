package attest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MaxPage bounds the verdicts one Verdicts call returns.
const MaxPage = 1000

// Verdict is one attestation's outcome as the Store keeps it.
type Verdict struct {
	// ID orders a device's verdicts: set by Store.Record, increasing.
	ID      int64
	UEID    []byte
	Time    time.Time
	Status  Status
	Reasons []Reason
	Product string
	// Release is the release the device was found to run, if any.
	Release string
	// Accepted, if not nil, is the state the verdict accepted (affirming
	// and warning verdicts only): Record makes it the device's state.
	Accepted *DeviceState
}

// Store keeps the verdicts and each device's accepted state.
// Implementations are safe for concurrent use.
type Store interface {
	// Record stores v and sets v.ID. If v.Accepted is not nil it becomes
	// the device's accepted state in the same transaction; if any of its
	// values is lower than (or missing from) the stored state's, Record
	// stores nothing and returns an error wrapping ErrRollback.
	Record(ctx context.Context, v *Verdict) error
	// State returns the device's accepted state, or nil if none.
	State(ctx context.Context, ueid []byte) (*DeviceState, error)
	// Verdicts returns the device's verdicts, newest first: at most limit
	// (1 to MaxPage) with an ID lower than before (0 for the newest). The
	// next page starts before the last ID returned.
	Verdicts(ctx context.Context, ueid []byte, before int64, limit int) ([]*Verdict, error)
	// Close releases the store.
	Close() error
}

func checkVerdict(v *Verdict) error {
	if len(v.UEID) == 0 || len(v.UEID) > 64 {
		return fmt.Errorf("attest: verdict with a UEID of %d bytes", len(v.UEID))
	}
	if v.Accepted != nil && v.Status != StatusAffirming && v.Status != StatusWarning {
		return fmt.Errorf("attest: a %s verdict cannot accept a state", v.Status)
	}
	return nil
}

func checkPage(limit int) error {
	if limit < 1 || limit > MaxPage {
		return fmt.Errorf("attest: page of %d verdicts (1 to %d)", limit, MaxPage)
	}
	return nil
}

// MemoryStore is a Store in memory, for tests and single-process demos.
type MemoryStore struct {
	mu       sync.Mutex
	nextID   int64
	verdicts map[string][]*Verdict
	states   map[string]*DeviceState
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{verdicts: map[string][]*Verdict{}, states: map[string]*DeviceState{}}
}

func cloneVerdict(v *Verdict) *Verdict {
	c := *v
	c.UEID = bytes.Clone(v.UEID)
	c.Reasons = slices.Clone(v.Reasons)
	c.Accepted = v.Accepted.clone()
	return &c
}

// Record implements Store.
func (m *MemoryStore) Record(ctx context.Context, v *Verdict) error {
	if err := checkVerdict(v); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := string(v.UEID)
	if v.Accepted != nil {
		if why := v.Accepted.Below(m.states[k]); why != "" {
			return fmt.Errorf("%w: %s", ErrRollback, why)
		}
		m.states[k] = v.Accepted.clone()
	}
	m.nextID++
	v.ID = m.nextID
	m.verdicts[k] = append(m.verdicts[k], cloneVerdict(v))
	return nil
}

// State implements Store.
func (m *MemoryStore) State(ctx context.Context, ueid []byte) (*DeviceState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.states[string(ueid)].clone(), nil
}

// Verdicts implements Store.
func (m *MemoryStore) Verdicts(ctx context.Context, ueid []byte, before int64, limit int) ([]*Verdict, error) {
	if err := checkPage(limit); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Verdict
	vs := m.verdicts[string(ueid)]
	for i := len(vs) - 1; i >= 0 && len(out) < limit; i-- {
		if before == 0 || vs[i].ID < before {
			out = append(out, cloneVerdict(vs[i]))
		}
	}
	return out, nil
}

// Close implements Store.
func (m *MemoryStore) Close() error { return nil }
