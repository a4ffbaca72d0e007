package registry

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

func openSQLite(t *testing.T, path string) *SQLite {
	t.Helper()
	r, err := OpenSQLite(context.Background(), &SQLiteConfig{Path: path, Now: fixedClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestSQLiteBatchOfOne runs batches of one write by hand (the common case
// when stations are few): a write that fails after changing the database
// loses its changes, a clone's incident commits, and the writer goes on.
func TestSQLiteBatchOfOne(t *testing.T) {
	ctx := context.Background()
	r := openSQLite(t, filepath.Join(t.TempDir(), "r.db"))
	mustReserve(t, r, req(1))
	if err := r.SetQuota(ctx, ScopeStation, "st-1", 100); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	failing := func(ctx context.Context, q querier) (*Record, error, error) {
		if _, _, err := r.reserve(req(2))(ctx, q); err != nil {
			t.Errorf("reserve inside failing op: %v", err)
		}
		return nil, nil, boom
	}
	clone := req(1)
	clone.PublicKey = key(99)
	run := func(o op) writeRes {
		w := &writeReq{ctx: ctx, op: o, done: make(chan writeRes, 1)}
		// The writer goroutine is idle: the test may use its connection.
		r.runBatch([]*writeReq{w})
		return <-w.done
	}
	if res := run(failing); !errors.Is(res.err, boom) {
		t.Fatalf("failing write: %v", res.err)
	}
	if res := run(r.reserve(clone)); res.err != nil || !errors.Is(res.refusal, ErrClone) {
		t.Fatalf("clone: %v, %v", res.err, res.refusal)
	}
	if res := run(r.reserve(req(3))); res.err != nil || res.refusal != nil {
		t.Fatalf("good write after them: %v, %v", res.err, res.refusal)
	}
	for _, c := range []struct {
		i    int
		want error
	}{{1, nil}, {2, ErrNotFound}, {3, nil}} {
		if _, err := r.Get(ctx, ueid(c.i)); !errors.Is(err, c.want) {
			t.Errorf("UEID %d: %v, want %v", c.i, err, c.want)
		}
	}
	if in, _ := r.Incidents(ctx); len(in) != 1 {
		t.Errorf("incidents: %d", len(in))
	}
	// The failing write's quota spending was rolled back with it.
	if q := mustQuota(t, r, ScopeStation, "st-1"); q.Used != 1 {
		t.Errorf("quota used %d, want 1", q.Used)
	}
	// And the writer goroutine goes on.
	mustReserve(t, r, req(4))
	if q := mustQuota(t, r, ScopeStation, "st-1"); q.Used != 2 {
		t.Errorf("quota used %d, want 2", q.Used)
	}
}

// TestSQLiteBatchSavepoints runs one batch by hand: a write that fails
// after changing the database must lose its own changes only; a clone's
// incident and the other writes commit together.
func TestSQLiteBatchSavepoints(t *testing.T) {
	ctx := context.Background()
	r := openSQLite(t, filepath.Join(t.TempDir(), "r.db"))
	mustReserve(t, r, req(1))
	if err := r.SetQuota(ctx, ScopeStation, "st-1", 100); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	failing := func(ctx context.Context, q querier) (*Record, error, error) {
		if _, _, err := r.reserve(req(2))(ctx, q); err != nil {
			t.Errorf("reserve inside failing op: %v", err)
		}
		return nil, nil, boom
	}
	clone := req(1)
	clone.PublicKey = key(99)
	ops := []op{r.reserve(req(3)), failing, r.reserve(clone), r.reserve(req(4))}
	batch := make([]*writeReq, len(ops))
	for i, o := range ops {
		batch[i] = &writeReq{ctx: ctx, op: o, done: make(chan writeRes, 1)}
	}
	// No other write is in flight: the writer goroutine is idle, so the
	// test may use its connection directly.
	r.runBatch(batch)
	res := make([]writeRes, len(batch))
	for i, w := range batch {
		res[i] = <-w.done
	}
	if res[0].err != nil || res[3].err != nil {
		t.Fatalf("good writes failed: %v, %v", res[0].err, res[3].err)
	}
	if !errors.Is(res[1].err, boom) {
		t.Fatalf("failing write: %v", res[1].err)
	}
	if !errors.Is(res[2].refusal, ErrClone) {
		t.Fatalf("clone: %v", res[2].refusal)
	}
	for _, c := range []struct {
		i    int
		want error
	}{{1, nil}, {2, ErrNotFound}, {3, nil}, {4, nil}} {
		if _, err := r.Get(ctx, ueid(c.i)); !errors.Is(err, c.want) {
			t.Errorf("UEID %d: %v, want %v", c.i, err, c.want)
		}
	}
	if in, _ := r.Incidents(ctx); len(in) != 1 {
		t.Errorf("incidents: %d", len(in))
	}
	// The failing write's quota spending was rolled back with it.
	if q := mustQuota(t, r, ScopeStation, "st-1"); q.Used != 2 {
		t.Errorf("quota used %d, want 2", q.Used)
	}
}

// TestSQLiteGroupCommit checks that concurrent writes share transactions.
func TestSQLiteGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	r := openSQLite(t, path)
	before := r.batches.Load()
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Reserve(context.Background(), req(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	batches := r.batches.Load() - before
	t.Logf("%d concurrent writes in %d transactions", n, batches)
	if batches >= n {
		t.Errorf("%d writes took %d transactions: no grouping", n, batches)
	}
	var mode string
	if err := r.rdb.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no write-ahead log: %v", err)
	}
}

// TestSQLiteProcessCrash kills the service (os.Exit, no Close) after
// reserving and issuing, and checks the file on reopening.
func TestSQLiteProcessCrash(t *testing.T) {
	if path := os.Getenv("REGISTRY_CRASH_PATH"); path != "" {
		r, err := OpenSQLite(context.Background(), &SQLiteConfig{Path: path})
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		for i := range 5 {
			if _, err := r.Reserve(context.Background(), req(i)); err != nil {
				fmt.Println(err)
				os.Exit(2)
			}
		}
		if _, err := r.MarkIssued(context.Background(), ueid(2), cert(2), big.NewInt(2)); err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		os.Exit(3) // a crash: nothing closed, nothing completed
	}
	path := filepath.Join(t.TempDir(), "r.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteProcessCrash$")
	cmd.Env = append(os.Environ(), "REGISTRY_CRASH_PATH="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("crashing child: %v\n%s", err, out)
	}
	r := openSQLite(t, path)
	for i := range 5 {
		want := Issuing
		if i == 2 {
			want = Issued
		}
		rec, err := r.Get(context.Background(), ueid(i))
		if err != nil || rec.State != want {
			t.Fatalf("UEID %d after crash: %+v, %v; want %v", i, rec, err, want)
		}
	}
}

func TestSQLiteConfig(t *testing.T) {
	if _, err := OpenSQLite(context.Background(), &SQLiteConfig{}); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := OpenPostgres(context.Background(), &PostgresConfig{}); err == nil {
		t.Error("empty DSN accepted")
	}
}
