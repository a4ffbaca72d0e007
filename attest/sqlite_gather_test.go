package attest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestSQLiteRollbackReadsDatabase: the rollback check compares with the
// state the database holds, not the cached one. A state raised behind the
// store's back (another connection) refuses a write the cached state
// would let through, and a state stored with other bytes that decode to
// the cached state is decoded, not matched by its bytes.
func TestSQLiteRollbackReadsDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := OpenSQLite(ctx, &SQLiteConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ueid := []byte("device-behind-the-back")
	verdict := func(n uint64) *Verdict {
		return &Verdict{UEID: ueid, Time: time.Now(), Status: StatusAffirming,
			Accepted: &DeviceState{Counters: map[string]uint64{"c": n}, SVNs: map[string]uint64{"app": n}}}
	}
	if err := s.Record(ctx, verdict(5)); err != nil {
		t.Fatal(err)
	}
	if st, err := s.State(ctx, ueid); err != nil || st.Counters["c"] != 5 { // cached now
		t.Fatalf("%+v, %v", st, err)
	}
	other, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	set := func(state string) {
		t.Helper()
		if _, err := other.ExecContext(ctx, "UPDATE device_state SET state = ? WHERE ueid = ?", state, ueid); err != nil {
			t.Fatal(err)
		}
	}
	set(`{"counters":{"c":9},"svns":{"app":9}}`)
	if err := s.Record(ctx, verdict(6)); !errors.Is(err, ErrRollback) {
		t.Fatalf("below the stored state: %v, want ErrRollback", err)
	}
	if err := s.Record(ctx, verdict(9)); err != nil {
		t.Fatalf("at the stored state: %v", err)
	}
	// The same state as cached (9), in other bytes: decoded and compared.
	set(`{"svns": {"app": 9}, "counters": {"c": 9}}`)
	if err := s.Record(ctx, verdict(8)); !errors.Is(err, ErrRollback) {
		t.Fatalf("below the stored state: %v, want ErrRollback", err)
	}
	set(`{"svns": {"app": 12}, "counters": {"c": 12}}`)
	if err := s.Record(ctx, verdict(11)); !errors.Is(err, ErrRollback) {
		t.Fatalf("below the stored state: %v, want ErrRollback", err)
	}
	set(`not JSON`)
	if err := s.Record(ctx, verdict(20)); err == nil || errors.Is(err, ErrRollback) {
		t.Fatalf("an undecodable stored state: %v", err)
	}
}

// TestSQLiteGather: concurrent writes share transactions, with or without
// the gathering wait, and each is stored once with its own ID and the
// rollback check applied; a lone writer's write is committed alone.
func TestSQLiteGather(t *testing.T) {
	for _, wait := range []time.Duration{-1, 0, 2 * time.Millisecond} {
		t.Run(fmt.Sprint(wait), func(t *testing.T) {
			ctx := context.Background()
			s, err := OpenSQLite(ctx, &SQLiteConfig{Path: filepath.Join(t.TempDir(), "g.db"), GatherWait: wait})
			if err != nil {
				t.Fatal(err)
			}
			// A lone writer: never waits (the estimate of the time
			// between writes is that of one round trip each).
			start := time.Now()
			for i := range 5 {
				if err := s.Record(ctx, &Verdict{UEID: []byte("lone"), Status: StatusAffirming,
					Accepted: &DeviceState{Counters: map[string]uint64{"c": uint64(i)}}}); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("5 lone writes in %v", time.Since(start))
			const writers, each = 16, 20
			var wg sync.WaitGroup
			var mu sync.Mutex
			ids := map[int64]bool{}
			refused := 0
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						// Two writers per device, so that some writes are
						// refused as rollbacks within a batch.
						v := &Verdict{UEID: fmt.Appendf(nil, "dev-%d", w/2), Status: StatusAffirming,
							Accepted: &DeviceState{Counters: map[string]uint64{"c": uint64(i)}}}
						err := s.Record(ctx, v)
						mu.Lock()
						switch {
						case errors.Is(err, ErrRollback):
							refused++
						case err != nil:
							t.Error(err)
						case ids[v.ID]:
							t.Errorf("ID %d twice", v.ID)
						default:
							ids[v.ID] = true
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			stored := 0
			for d := range writers / 2 {
				vs, err := s.Verdicts(ctx, fmt.Appendf(nil, "dev-%d", d), 0, MaxPage)
				if err != nil {
					t.Fatal(err)
				}
				stored += len(vs)
				st, err := s.State(ctx, fmt.Appendf(nil, "dev-%d", d))
				if err != nil || st.Counters["c"] != each-1 {
					t.Fatalf("dev-%d: %+v, %v", d, st, err)
				}
			}
			if stored != len(ids) || len(ids)+refused != writers*each {
				t.Fatalf("%d stored, %d recorded, %d refused", stored, len(ids), refused)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d writes in %d transactions", s.writes, s.commits)
			if s.writes != 5+writers*each || s.commits >= s.writes {
				t.Fatalf("%d writes in %d transactions", s.writes, s.commits)
			}
		})
	}
}
