package attest

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestSQLiteBatchFailure: in one batch, a write the rollback check refuses
// fails alone, and a write whose second statement fails (a trigger refuses
// its device_state row, after its verdict row was inserted) fails alone
// too, leaving nothing of it; the other writes of the batch are committed,
// with their IDs and states.
func TestSQLiteBatchFailure(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "b.db")
	s, err := OpenSQLite(ctx, &SQLiteConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	state := func(n uint64) *DeviceState {
		return &DeviceState{Counters: map[string]uint64{"c": n}, SVNs: map[string]uint64{"app": n}}
	}
	verdict := func(ueid string, n uint64) *Verdict {
		return &Verdict{UEID: []byte(ueid), Time: time.Now(), Status: StatusAffirming, Product: "p", Accepted: state(n)}
	}
	if err := s.Record(ctx, verdict("rolled-back", 5)); err != nil {
		t.Fatal(err)
	}
	// Another connection adds a trigger that refuses one device's state.
	db, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER refuse_bad BEFORE INSERT ON device_state
		WHEN NEW.ueid = CAST('bad' AS BLOB) BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	writes := []*sqliteWrite{
		{ctx: ctx, v: verdict("good-1", 1)},
		{ctx: ctx, v: verdict("rolled-back", 4)},
		{ctx: ctx, v: verdict("bad", 1)},
		{ctx: ctx, v: verdict("good-2", 1)},
	}
	for _, w := range writes {
		w.done = make(chan error, 1)
	}
	s.commit(writes) // the writer goroutine is idle: no other write is submitted
	errs := make([]error, len(writes))
	for i, w := range writes {
		errs[i] = <-w.done
	}
	if errs[0] != nil || errs[3] != nil {
		t.Fatalf("good writes failed: %v, %v", errs[0], errs[3])
	}
	if !errors.Is(errs[1], ErrRollback) {
		t.Fatalf("rollback: %v", errs[1])
	}
	if errs[2] == nil || errors.Is(errs[2], ErrRollback) {
		t.Fatalf("failing write: %v", errs[2])
	}
	if writes[0].v.ID == 0 || writes[3].v.ID <= writes[0].v.ID || writes[1].v.ID != 0 || writes[2].v.ID != 0 {
		t.Fatalf("IDs %d %d %d %d", writes[0].v.ID, writes[1].v.ID, writes[2].v.ID, writes[3].v.ID)
	}
	for _, c := range []struct {
		ueid     string
		verdicts int
		state    uint64 // 0: none
	}{{"good-1", 1, 1}, {"good-2", 1, 1}, {"rolled-back", 1, 5}, {"bad", 0, 0}} {
		vs, err := s.Verdicts(ctx, []byte(c.ueid), 0, MaxPage)
		if err != nil || len(vs) != c.verdicts {
			t.Fatalf("%s: %d verdicts, %v", c.ueid, len(vs), err)
		}
		// Read the database, not the state cache.
		var st []byte
		err = s.rdb.QueryRowContext(ctx, "SELECT state FROM device_state WHERE ueid = ?", []byte(c.ueid)).Scan(&st)
		switch {
		case c.state == 0 && !errors.Is(err, sql.ErrNoRows):
			t.Fatalf("%s: state %s, %v", c.ueid, st, err)
		case c.state != 0 && err != nil:
			t.Fatalf("%s: %v", c.ueid, err)
		}
		got, err := s.State(ctx, []byte(c.ueid))
		if err != nil || c.state == 0 && got != nil || c.state != 0 && (got == nil || got.Counters["c"] != c.state) {
			t.Fatalf("%s: state %+v, %v", c.ueid, got, err)
		}
	}
}
