package attest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rootline/rootline/internal/pgtest"
)

func storeBackends(t *testing.T) map[string]func(t *testing.T) Store {
	var server string
	return map[string]func(t *testing.T) Store{
		"postgres": func(t *testing.T) Store {
			if server == "" {
				server = pgtest.Start(t)
			}
			s, err := OpenPostgres(context.Background(), &PostgresConfig{DSN: pgtest.CreateDatabase(t, server)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"memory": func(t *testing.T) Store { return NewMemoryStore() },
		"sqlite": func(t *testing.T) Store {
			s, err := OpenSQLite(context.Background(), &SQLiteConfig{Path: filepath.Join(t.TempDir(), "a.db"), MaxBatch: 8})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func TestStore(t *testing.T) {
	for name, open := range storeBackends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			ueid := []byte("the-first-device")
			if st, err := s.State(ctx, ueid); err != nil || st != nil {
				t.Fatalf("new device: %v, %v", st, err)
			}
			st := &DeviceState{Counters: map[string]uint64{"os": 2}, SVNs: map[string]uint64{"os": 2, "app": 1}}
			ok := &Verdict{UEID: ueid, Time: time.Unix(100, 0), Status: StatusAffirming, Product: "p", Release: "r", Accepted: st}
			if err := s.Record(ctx, ok); err != nil || ok.ID == 0 {
				t.Fatal(err)
			}
			// Lower, or missing, values are refused and nothing is stored.
			for _, low := range []*DeviceState{
				{Counters: map[string]uint64{"os": 1}, SVNs: map[string]uint64{"os": 2, "app": 1}},
				{Counters: map[string]uint64{"os": 2}, SVNs: map[string]uint64{"os": 2}},
			} {
				if err := s.Record(ctx, &Verdict{UEID: ueid, Time: time.Unix(101, 0), Status: StatusWarning, Accepted: low}); !errors.Is(err, ErrRollback) {
					t.Fatalf("%v, want ErrRollback", err)
				}
			}
			// Contraindicated verdicts are stored but cannot set a state.
			bad := &Verdict{UEID: ueid, Time: time.Unix(102, 0), Status: StatusContraindicated, Reasons: []Reason{{CodeRollback, "x"}}}
			if err := s.Record(ctx, bad); err != nil {
				t.Fatal(err)
			}
			if err := s.Record(ctx, &Verdict{UEID: ueid, Status: StatusContraindicated, Accepted: st}); err == nil {
				t.Fatal("a contraindicated verdict set a state")
			}
			got, err := s.State(ctx, ueid)
			if err != nil || !statesEqual(got, st) {
				t.Fatalf("state %+v, %v", got, err)
			}
			vs, err := s.Verdicts(ctx, ueid, 0, 10)
			if err != nil || len(vs) != 2 || vs[0].ID != bad.ID || vs[1].ID != ok.ID {
				t.Fatalf("verdicts %+v, %v", vs, err)
			}
			if vs[0].Reasons[0] != (Reason{CodeRollback, "x"}) || vs[0].Accepted != nil || !vs[1].Time.Equal(time.Unix(100, 0)) ||
				vs[1].Release != "r" || !statesEqual(vs[1].Accepted, st) {
				t.Fatalf("verdicts read back %+v %+v", vs[0], vs[1])
			}
			if _, err := s.Verdicts(ctx, ueid, 0, 0); err == nil {
				t.Fatal("page of 0")
			}
			if _, err := s.Verdicts(ctx, ueid, 0, MaxPage+1); err == nil {
				t.Fatal("page too large")
			}
			// Many concurrent writers: all stored, IDs unique.
			var wg sync.WaitGroup
			var mu sync.Mutex
			ids := map[int64]bool{}
			for i := range 64 {
				wg.Go(func() {
					u := []byte(fmt.Sprintf("device-%07d", i%4))
					v := &Verdict{UEID: u, Time: time.Now(), Status: StatusAffirming,
						Accepted: &DeviceState{Counters: map[string]uint64{"c": uint64(i)}}}
					err := s.Record(ctx, v)
					if err != nil && !errors.Is(err, ErrRollback) {
						t.Error(err)
					}
					if err == nil {
						mu.Lock()
						ids[v.ID] = true
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			n := 0
			for i := range 4 {
				vs, _ := s.Verdicts(ctx, []byte(fmt.Sprintf("device-%07d", i)), 0, MaxPage)
				n += len(vs)
				for j := 1; j < len(vs); j++ {
					if vs[j].ID >= vs[j-1].ID {
						t.Fatal("not newest first")
					}
				}
			}
			if n != len(ids) {
				t.Fatalf("%d verdicts stored, %d recorded", n, len(ids))
			}
		})
	}
}

func TestSQLiteReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a.db")
	s, err := OpenSQLite(ctx, &SQLiteConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	st := &DeviceState{Counters: map[string]uint64{"os": 3}, SVNs: map[string]uint64{"os": 3}}
	if err := s.Record(ctx, &Verdict{UEID: []byte("device-1"), Status: StatusAffirming, Accepted: st}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, &Verdict{UEID: []byte("device-1"), Status: StatusAffirming}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	s, err = OpenSQLite(ctx, &SQLiteConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.State(ctx, []byte("device-1"))
	if err != nil || !statesEqual(got, st) {
		t.Fatalf("%+v, %v", got, err)
	}
}

// TestAttestPostgres runs attestations, concurrent ones and a rollback
// against the PostgreSQL store.
func TestAttestPostgres(t *testing.T) {
	s, err := OpenPostgres(context.Background(), &PostgresConfig{DSN: pgtest.CreateDatabase(t, pgtest.Start(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := newEnv(t, &envOptions{store: s})
	d := e.newDevice(2)
	toks := make([][]byte, 8)
	for i := range toks {
		toks[i] = e.evidence(d.Device)
	}
	var wg sync.WaitGroup
	for _, tok := range toks {
		wg.Go(func() {
			if res, err := e.v.Attest(context.Background(), &Request{Evidence: tok}); err != nil || res.Status != StatusAffirming {
				t.Error(err, res)
			}
		})
	}
	wg.Wait()
	if sn := e.snapshot(d.ueid); sn.verdicts != 8 || sn.state.SVNs["os"] != 2 {
		t.Fatalf("%+v", sn)
	}
	st, _ := s.State(e.ctx, d.ueid)
	st.SVNs["os"] = 9
	if err := s.Record(e.ctx, &Verdict{UEID: d.ueid, Status: StatusAffirming, Accepted: st}); err != nil {
		t.Fatal(err)
	}
	checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, CodeRollback, true)
}
