package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"sync"
	"time"

	"github.com/rootline/rootline/internal/sqlstmt"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// SQLiteConfig configures OpenSQLite.
type SQLiteConfig struct {
	// Path of the database file, created if missing.
	Path string
	// MaxBatch bounds how many writes share one transaction; 0 means 256.
	MaxBatch int
	// StateCacheSize bounds the devices whose accepted state is kept in
	// memory; 0 means DefaultStateCacheSize, negative disables the cache.
	StateCacheSize int
	// GatherWait bounds how long the writer, holding a write, waits for
	// more to share its transaction (and its fsync) when writes came
	// while it wrote the last batch and have lately come at least one
	// per GatherWait; 0 means DefaultGatherWait, negative never waits.
	// A write's latency grows by at most GatherWait; a lone caller's
	// writes, or sparse ones, never wait.
	GatherWait time.Duration
}

// DefaultStateCacheSize is the default SQLiteConfig.StateCacheSize.
const DefaultStateCacheSize = 1 << 16

// gatherEnough is the batch size at which the writer stops waiting for
// more writes (see writer).
const gatherEnough = 8

// DefaultGatherWait is the default SQLiteConfig.GatherWait. With 16
// concurrent attestations on 2 cores (about 2,500 verdicts/s) the yield
// and this wait take the writes per COMMIT from about 1.1 to about 2.4,
// which saves more CPU per verdict than any other change to the store,
// and the throughput it frees lowers latency more than the wait adds to
// it. A longer wait gathers more when the cores are saturated, but costs
// throughput when they are not: with 4 concurrent attestations, 1ms took
// about 10% off their rate.
const DefaultGatherWait = 500 * time.Microsecond

// Validate checks c.
func (c *SQLiteConfig) Validate() error {
	if c.Path == "" {
		return fmt.Errorf("%w: SQLite path is empty", ErrConfig)
	}
	if c.MaxBatch < 0 {
		return fmt.Errorf("%w: negative MaxBatch", ErrConfig)
	}
	return nil
}

// SQLite is the Store in one SQLite file (WAL mode).
//
// Writes go through one goroutine that gathers those waiting into one
// transaction (group commit: one fsync for many verdicts, prepared
// statements). A write refused with ErrRollback writes nothing and fails
// alone; a write whose statement fails has the batch written again with
// each write in its own SAVEPOINT, so that it fails alone too. A write's
// result is returned only after COMMIT (synchronous=FULL: durable).
// Reads use a pool of read-only connections alongside.
//
// The accepted state of recently seen devices is also kept in memory (a
// bounded LRU, updated on COMMIT), since Verify reads it on every
// attestation: the store must then be the only writer of its file. The
// rollback check of Record always reads the database, in the transaction.
type SQLite struct {
	states     *lru[stateEntry]
	wdb, rdb   *sql.DB
	wconn      *sql.Conn
	wq         *sqlstmt.Cache // the writer's prepared statements, on wconn
	maxBatch   int
	gatherWait time.Duration // 0: never wait
	reqs       chan *sqliteWrite
	quit       chan struct{}
	done       chan struct{}

	// commits and writes count the writer's transactions and the writes
	// they held; only the writer touches them (tests read them after
	// Close).
	commits, writes int

	mu     sync.RWMutex
	closed bool
}

var _ Store = (*SQLite)(nil)

// stateEntry is a cached accepted state, the verdict that set it and its
// encoding as stored (device_state.state).
type stateEntry struct {
	st      *DeviceState // nil: none
	verdict int64
	enc     []byte // st's JSON as stored; nil if st is nil
}

// newerState says whether v comes from a later verdict than old, so that
// a read racing a commit cannot put back an older state.
func newerState(old, v stateEntry) bool { return v.verdict > old.verdict }

type sqliteWrite struct {
	ctx  context.Context
	v    *Verdict
	done chan error
}

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS verdicts (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	ueid     BLOB    NOT NULL,
	time     INTEGER NOT NULL, -- Unix nanoseconds
	status   TEXT    NOT NULL,
	reasons  TEXT    NOT NULL, -- JSON [{code, detail}]
	product  TEXT    NOT NULL,
	release  TEXT    NOT NULL,
	accepted TEXT              -- JSON DeviceState, or NULL
);
CREATE INDEX IF NOT EXISTS verdicts_by_device ON verdicts (ueid, id DESC);
CREATE TABLE IF NOT EXISTS device_state (
	ueid    BLOB    PRIMARY KEY,
	state   TEXT    NOT NULL, -- JSON DeviceState
	verdict INTEGER NOT NULL REFERENCES verdicts (id)
);
PRAGMA user_version = 1;
`

func sqliteDSN(path string, readOnly bool) string {
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		v.Add("_pragma", "query_only(1)")
	}
	return "file:" + path + "?" + v.Encode()
}

// OpenSQLite opens (creating if needed) the store in cfg.Path.
func OpenSQLite(ctx context.Context, cfg *SQLiteConfig) (*SQLite, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &SQLite{maxBatch: cfg.MaxBatch, gatherWait: cfg.GatherWait,
		reqs: make(chan *sqliteWrite, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	if s.maxBatch == 0 {
		s.maxBatch = 256
	}
	switch {
	case s.gatherWait == 0:
		s.gatherWait = DefaultGatherWait
	case s.gatherWait < 0:
		s.gatherWait = 0
	}
	size := cfg.StateCacheSize
	if size == 0 {
		size = DefaultStateCacheSize
	}
	s.states = newLRU[stateEntry](size)
	var err error
	fail := func(err error) (*SQLite, error) {
		if s.wconn != nil {
			s.wconn.Close()
		}
		if s.wdb != nil {
			s.wdb.Close()
		}
		return nil, fmt.Errorf("attest: opening %s: %w", cfg.Path, err)
	}
	if s.wdb, err = sql.Open("sqlite", sqliteDSN(cfg.Path, false)); err != nil {
		return fail(err)
	}
	s.wdb.SetMaxOpenConns(1)
	if s.wconn, err = s.wdb.Conn(ctx); err != nil {
		return fail(err)
	}
	var version int
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fail(err)
	}
	if version > 1 {
		return fail(fmt.Errorf("schema version %d is newer than this program's (1)", version))
	}
	if _, err := s.wconn.ExecContext(ctx, sqliteSchema); err != nil {
		return fail(err)
	}
	if s.rdb, err = sql.Open("sqlite", sqliteDSN(cfg.Path, true)); err != nil {
		return fail(err)
	}
	s.rdb.SetMaxOpenConns(8)
	s.wq = sqlstmt.New(s.wconn)
	go s.writer()
	return s, nil
}

// Close stops the writer (after the writes already submitted) and closes
// the database.
func (s *SQLite) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	<-s.done
	s.wq.Close() // the writer has returned: the cache is ours
	return errors.Join(s.wconn.Close(), s.wdb.Close(), s.rdb.Close())
}

// Record implements Store.
func (s *SQLite) Record(ctx context.Context, v *Verdict) error {
	if err := checkVerdict(v); err != nil {
		return err
	}
	w := &sqliteWrite{ctx: ctx, v: v, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- w:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	// The write is in the writer's hands: wait for COMMIT even if ctx
	// ends, so the caller never misreports a stored verdict.
	return <-w.done
}

// writer runs the batches until Close.
//
// A batch is the write that woke the writer and those that join it:
// first those already queued or sent by the goroutines runnable now
// (runtime.Gosched lets them run until they block; when nothing else is
// runnable it returns at once), then, if the batch is still small, writes
// came while the last batch was being written and have lately come at
// least one per gatherWait, those that come within gatherWait, until the
// batch holds gatherEnough. Every COMMIT costs an fsync and WAL frames for
// each page it changed, whatever the number of writes it holds: with 16
// attestations in flight on 2 cores, batches taken only from the queue
// hold about one write.
func (s *SQLite) writer() {
	defer close(s.done)
	batch := make([]*sqliteWrite, 0, s.maxBatch)
	// The wait ends once the batch holds gatherEnough writes: each then
	// pays an eighth of the COMMIT or less, and waiting for more would
	// only add latency.
	enough := min(gatherEnough, s.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// gap estimates the time between writes: a moving average of each
	// batch's span (from one batch's start to the next) over its writes.
	// A span is capped, so that after an idle spell the estimate comes
	// back within a few batches.
	gap, last := time.Duration(-1), time.Time{}
	for {
		// A write already queued came while the last batch was being
		// written: others are writing too. A lone caller's next write
		// comes only after its last one's COMMIT, and never waits.
		queued := len(s.reqs) > 0
		select {
		case w := <-s.reqs:
			batch = append(batch[:0], w)
		case <-s.quit:
			// Close holds the lock: nobody is sending any more.
			for {
				select {
				case w := <-s.reqs:
					s.commit([]*sqliteWrite{w})
				default:
					return
				}
			}
		}
		start := time.Now()
		runtime.Gosched()
	gather:
		for len(batch) < s.maxBatch {
			select {
			case w := <-s.reqs:
				batch = append(batch, w)
			default:
				break gather
			}
		}
		if s.gatherWait > 0 && len(batch) < enough && queued && gap >= 0 && gap <= s.gatherWait {
			timer.Reset(s.gatherWait)
		wait:
			for len(batch) < enough {
				select {
				case w := <-s.reqs:
					batch = append(batch, w)
				case <-timer.C:
					break wait
				}
			}
			timer.Stop()
		}
		if !last.IsZero() {
			g := min(start.Sub(last), 8*s.gatherWait+time.Millisecond) / time.Duration(len(batch))
			if gap < 0 {
				gap = g
			} else {
				gap += (g - gap) / 8
			}
		}
		last = start
		s.commit(batch)
	}
}

// commit writes a batch in one transaction and reports each write's
// result. A write refused by the rollback check writes nothing (the check
// reads the database, in the transaction, before the write's first
// statement), so the writes need no SAVEPOINT of their own; if a statement
// fails, the whole transaction is rolled back and the batch is written
// again with each write in its own SAVEPOINT, so that the failing write
// fails alone.
func (s *SQLite) commit(batch []*sqliteWrite) {
	s.commits++
	s.writes += len(batch)
	if !s.commitBatch(batch, false) {
		s.commitBatch(batch, true)
	}
}

// commitBatch is commit's transaction, with each write in a SAVEPOINT if
// savepoints. Without them, a failing statement rolls the transaction
// back and commitBatch returns false without reporting anything;
// otherwise it reports every write's result and returns true.
func (s *SQLite) commitBatch(batch []*sqliteWrite, savepoints bool) bool {
	ctx := context.Background()
	errs := make([]error, len(batch))
	finish := func(err error) bool {
		for i, w := range batch {
			if err != nil {
				errs[i] = err
			}
			w.done <- errs[i]
		}
		return true
	}
	// An explicit transaction on the writer's connection, so that its
	// prepared statements (sqlstmt) are reused: a *sql.Tx would prepare
	// every statement again.
	q := s.wq
	rollback := func() { q.ExecContext(ctx, "ROLLBACK") }
	if _, err := q.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return finish(fmt.Errorf("attest: store: %w", err))
	}
	ids := make([]int64, len(batch))
	encs := make([][]byte, len(batch)) // the accepted states as stored
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if !savepoints {
			var failed bool
			ids[i], encs[i], failed, errs[i] = s.write(ctx, q, w.v)
			if failed {
				rollback()
				return false
			}
			continue
		}
		if _, err := q.ExecContext(ctx, "SAVEPOINT w"); err != nil {
			rollback()
			return finish(fmt.Errorf("attest: store: %w", err))
		}
		ids[i], encs[i], _, errs[i] = s.write(ctx, q, w.v)
		if errs[i] != nil {
			if _, err := q.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
				rollback()
				return finish(fmt.Errorf("attest: store: %w", err))
			}
		}
		if _, err := q.ExecContext(ctx, "RELEASE w"); err != nil {
			rollback()
			return finish(fmt.Errorf("attest: store: %w", err))
		}
	}
	if _, err := q.ExecContext(ctx, "COMMIT"); err != nil {
		rollback()
		return finish(fmt.Errorf("attest: store: %w", err))
	}
	for i, w := range batch {
		if errs[i] == nil {
			w.v.ID = ids[i]
			if w.v.Accepted != nil {
				s.states.putIf(sha256.Sum256(w.v.UEID), stateEntry{w.v.Accepted.clone(), ids[i], encs[i]}, newerState)
			}
		}
	}
	return finish(nil)
}

// write writes one verdict in the transaction: the rollback check, then
// the verdict and the new state, and returns the verdict's ID and the new
// state as stored. A write the check refuses (err wraps ErrRollback) or
// that cannot be encoded has written nothing; failed says that a statement
// failed after the check, which may have left part of the write.
//
// The check compares with the state the database holds, read in the
// transaction. Decoding it is skipped when its bytes are those of the
// cached state (the encoding this store wrote, or read, with it): the
// decoding is a function of the bytes alone, so the cached state is the
// one decoding would give. A state changed behind the store's back thus
// never escapes the check; it only costs a decoding.
func (s *SQLite) write(ctx context.Context, tx *sqlstmt.Cache, v *Verdict) (id int64, accepted []byte, failed bool, err error) {
	reasons := []byte("[]")
	if len(v.Reasons) > 0 {
		if reasons, err = json.Marshal(v.Reasons); err != nil {
			return 0, nil, false, err
		}
	}
	if v.Accepted != nil {
		var old []byte
		err := tx.QueryRowContext(ctx, "SELECT state FROM device_state WHERE ueid = ?", v.UEID).Scan(&old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return 0, nil, true, fmt.Errorf("attest: store: %w", err)
		default:
			prev, err := s.decodeState(v.UEID, old)
			if err != nil {
				return 0, nil, false, err
			}
			if why := v.Accepted.Below(prev); why != "" {
				return 0, nil, false, fmt.Errorf("%w: %s", ErrRollback, why)
			}
		}
		if accepted, err = json.Marshal(v.Accepted); err != nil {
			return 0, nil, false, err
		}
	}
	res, err := tx.ExecContext(ctx,
		"INSERT INTO verdicts (ueid, time, status, reasons, product, release, accepted) VALUES (?, ?, ?, ?, ?, ?, ?)",
		v.UEID, v.Time.UnixNano(), string(v.Status), string(reasons), v.Product, v.Release, nullString(accepted))
	if err != nil {
		return 0, nil, true, fmt.Errorf("attest: store: %w", err)
	}
	if id, err = res.LastInsertId(); err != nil {
		return 0, nil, true, fmt.Errorf("attest: store: %w", err)
	}
	if accepted != nil {
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO device_state (ueid, state, verdict) VALUES (?, ?, ?) ON CONFLICT (ueid) DO UPDATE SET state = excluded.state, verdict = excluded.verdict",
			v.UEID, string(accepted), id); err != nil {
			return 0, nil, true, fmt.Errorf("attest: store: %w", err)
		}
	}
	return id, accepted, false, nil
}

// decodeState returns the device state stored as b (device_state.state):
// the cached state if b is its stored encoding, else b decoded. The
// result is only read, never changed.
func (s *SQLite) decodeState(ueid, b []byte) (*DeviceState, error) {
	if e, ok := s.states.get(sha256.Sum256(ueid)); ok && e.st != nil && bytes.Equal(e.enc, b) {
		return e.st, nil
	}
	st := new(DeviceState)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("attest: store: device state: %w", err)
	}
	return st, nil
}

func nonNil(r []Reason) []Reason {
	if r == nil {
		return []Reason{}
	}
	return r
}

func nullString(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// State implements Store.
func (s *SQLite) State(ctx context.Context, ueid []byte) (*DeviceState, error) {
	key := sha256.Sum256(ueid)
	if e, ok := s.states.get(key); ok {
		return e.st.clone(), nil
	}
	var b []byte
	var verdict int64
	err := s.rdb.QueryRowContext(ctx, "SELECT state, verdict FROM device_state WHERE ueid = ?", ueid).Scan(&b, &verdict)
	if errors.Is(err, sql.ErrNoRows) {
		s.states.putIf(key, stateEntry{}, newerState)
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("attest: store: %w", err)
	}
	var st DeviceState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("attest: store: device state: %w", err)
	}
	s.states.putIf(key, stateEntry{st.clone(), verdict, b}, newerState)
	return &st, nil
}

// Verdicts implements Store.
func (s *SQLite) Verdicts(ctx context.Context, ueid []byte, before int64, limit int) ([]*Verdict, error) {
	if err := checkPage(limit); err != nil {
		return nil, err
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.rdb.QueryContext(ctx,
		"SELECT id, time, status, reasons, product, release, accepted FROM verdicts WHERE ueid = ? AND id < ? ORDER BY id DESC LIMIT ?",
		ueid, before, limit)
	if err != nil {
		return nil, fmt.Errorf("attest: store: %w", err)
	}
	return scanVerdicts(rows, ueid)
}

// scanVerdicts reads the rows of a Verdicts query.
func scanVerdicts(rows *sql.Rows, ueid []byte) ([]*Verdict, error) {
	defer rows.Close()
	var out []*Verdict
	for rows.Next() {
		v := &Verdict{UEID: append([]byte(nil), ueid...)}
		var t int64
		var status, reasons string
		var accepted sql.NullString
		if err := rows.Scan(&v.ID, &t, &status, &reasons, &v.Product, &v.Release, &accepted); err != nil {
			return nil, fmt.Errorf("attest: store: %w", err)
		}
		v.Time, v.Status = time.Unix(0, t).UTC(), Status(status)
		if err := json.Unmarshal([]byte(reasons), &v.Reasons); err != nil {
			return nil, fmt.Errorf("attest: store: verdict %d: %w", v.ID, err)
		}
		if accepted.Valid {
			v.Accepted = new(DeviceState)
			if err := json.Unmarshal([]byte(accepted.String), v.Accepted); err != nil {
				return nil, fmt.Errorf("attest: store: verdict %d: %w", v.ID, err)
			}
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
