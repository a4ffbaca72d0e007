package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go

	"github.com/rootline/rootline/internal/sqlstmt"
)

// SQLiteConfig configures OpenSQLite.
type SQLiteConfig struct {
	// Path of the database file, created if missing.
	Path string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxBatch bounds how many writes share one transaction; 0 means 256.
	MaxBatch int
}

// Validate checks the configuration.
func (c *SQLiteConfig) Validate() error {
	if c.Path == "" {
		return errors.New("registry: SQLite path is empty")
	}
	if c.MaxBatch < 0 {
		return errors.New("registry: negative MaxBatch")
	}
	return nil
}

// SQLite is the embedded registry: one file in WAL mode.
//
// Every write goes through one writer goroutine that gathers the writes
// waiting at that moment into one transaction ("group commit"), so that
// one fsync serves many chips. Before gathering, the writer yields once
// (runtime.Gosched): the callers that the previous COMMIT answered run on
// to their next write and join the batch. Without it, at GOMAXPROCS 2,
// nearly every write paid a COMMIT of its own, and a goroutine in fsync
// holds its P: half the process's CPU waited on the disk. Each write runs
// inside its own SAVEPOINT: when it fails, only its own changes are
// rolled back. Results are handed
// back only after COMMIT, so a caller never sees a write that may yet be
// lost. Reads use a separate pool of read-only connections, which WAL lets
// run alongside the writer.
type SQLite struct {
	ops
	wdb, rdb *sql.DB
	wconn    *sql.Conn
	wq       *sqlstmt.Cache // the writer's prepared statements, on wconn
	rq       *readStmts     // the readers' prepared statements, on rdb
	maxBatch int

	reqs chan *writeReq
	quit chan struct{}
	done chan struct{}

	mu     sync.RWMutex // held for reading while submitting; for writing to close
	closed bool

	batches, writes atomic.Int64 // committed transactions and the writes in them
}

var _ Registry = (*SQLite)(nil)

type writeReq struct {
	ctx  context.Context
	op   op
	done chan writeRes
}

type writeRes struct {
	rec     *Record
	refusal error
	err     error
}

func sqliteDSN(path string, readOnly bool) string {
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "foreign_keys(1)")
	// FULL: a COMMIT is durable when it returns (the WAL is synced).
	v.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		v.Add("_pragma", "query_only(1)")
	}
	return "file:" + path + "?" + v.Encode()
}

// OpenSQLite opens (creating if needed) the registry in the file at
// cfg.Path and brings its schema up to date.
func OpenSQLite(ctx context.Context, cfg *SQLiteConfig) (*SQLite, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &SQLite{
		ops:      ops{d: dialect{name: "sqlite"}, now: now},
		maxBatch: cfg.MaxBatch,
		reqs:     make(chan *writeReq, 1024),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if s.maxBatch == 0 {
		s.maxBatch = 256
	}
	var err error
	if s.wdb, err = sql.Open("sqlite", sqliteDSN(cfg.Path, false)); err != nil {
		return nil, fmt.Errorf("registry: opening %s: %w", cfg.Path, err)
	}
	s.wdb.SetMaxOpenConns(1)
	if s.wconn, err = s.wdb.Conn(ctx); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("registry: opening %s: %w", cfg.Path, err)
	}
	if err := migrate(ctx, s.wconn, s.d, now); err != nil {
		s.wconn.Close()
		s.wdb.Close()
		return nil, err
	}
	if s.rdb, err = sql.Open("sqlite", sqliteDSN(cfg.Path, true)); err != nil {
		s.wconn.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("registry: opening %s: %w", cfg.Path, err)
	}
	s.rdb.SetMaxOpenConns(maxReaders)
	// Keep every reader open: database/sql keeps 2 idle connections by
	// default, and opening another SQLite connection (and preparing the
	// statements on it again) costs more than the read it serves.
	s.rdb.SetMaxIdleConns(maxReaders)
	s.wq = sqlstmt.New(s.wconn)
	s.rq = &readStmts{db: s.rdb, stmts: map[string]*sql.Stmt{}}
	go s.writer()
	return s, nil
}

// writer runs the batches until Close.
func (s *SQLite) writer() {
	defer close(s.done)
	batch := make([]*writeReq, 0, s.maxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
			// Let the goroutines that are runnable now, typically
			// those the last COMMIT answered, run until they block:
			// the writes they send meanwhile join this transaction
			// instead of each paying a COMMIT (an fsync) of its own.
			// When nothing else is runnable, this returns at once.
			runtime.Gosched()
		gather:
			for len(batch) < s.maxBatch {
				select {
				case r := <-s.reqs:
					batch = append(batch, r)
				default:
					break gather
				}
			}
			s.runBatch(batch)
		case <-s.quit:
			// Close holds the lock: nobody is sending any more.
			for {
				select {
				case r := <-s.reqs:
					r.done <- writeRes{err: ErrClosed}
				default:
					return
				}
			}
		}
	}
}

// runBatch runs the writes in one transaction, each in a savepoint.
func (s *SQLite) runBatch(batch []*writeReq) {
	ctx := context.Background() // the batch outlives any one caller's context
	res := make([]writeRes, len(batch))
	fail := func(err error) {
		for _, r := range batch {
			r.done <- writeRes{err: err}
		}
	}
	if _, err := s.wq.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		fail(fmt.Errorf("registry: begin: %w", err))
		return
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			res[i].err = err // given up on before it started: not run
			continue
		}
		if _, err := s.wq.ExecContext(ctx, `SAVEPOINT w`); err != nil {
			res[i].err = fmt.Errorf("registry: savepoint: %w", err)
			continue
		}
		res[i].rec, res[i].refusal, res[i].err = r.op(ctx, s.wq)
		if res[i].err != nil {
			if _, err := s.wq.ExecContext(ctx, `ROLLBACK TO w`); err != nil {
				// The transaction can no longer be trusted to hold
				// only the other writes: abandon the whole batch.
				s.wq.ExecContext(ctx, `ROLLBACK`)
				fail(fmt.Errorf("registry: rollback to savepoint: %w", err))
				return
			}
		}
		if _, err := s.wq.ExecContext(ctx, `RELEASE w`); err != nil {
			s.wq.ExecContext(ctx, `ROLLBACK`)
			fail(fmt.Errorf("registry: release savepoint: %w", err))
			return
		}
	}
	if _, err := s.wq.ExecContext(ctx, `COMMIT`); err != nil {
		s.wq.ExecContext(ctx, `ROLLBACK`)
		fail(fmt.Errorf("registry: commit: %w", err))
		return
	}
	s.batches.Add(1)
	s.writes.Add(int64(len(batch)))
	for i, r := range batch {
		r.done <- res[i]
	}
}

func (s *SQLite) write(ctx context.Context, o op) (*Record, error) {
	r := &writeReq{ctx: ctx, op: o, done: make(chan writeRes, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		return nil, ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case res := <-r.done:
		if res.err != nil {
			return nil, res.err
		}
		if res.refusal != nil {
			return nil, res.refusal
		}
		return res.rec, nil
	case <-ctx.Done():
		// The write may still commit; repeating it gives the same answer.
		return nil, ctx.Err()
	}
}

func (s *SQLite) Reserve(ctx context.Context, req *ReserveRequest) (*Record, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return s.write(ctx, s.reserve(req))
}

func (s *SQLite) MarkIssued(ctx context.Context, ueid, certDER []byte, serial *big.Int) (*Record, error) {
	if err := validIssue(ueid, certDER, serial); err != nil {
		return nil, err
	}
	return s.write(ctx, s.markIssued(ueid, certDER, serial))
}

func (s *SQLite) SetInjectedKey(ctx context.Context, ueid, spki []byte) (*Record, error) {
	if err := validInjectedKey(ueid, spki); err != nil {
		return nil, err
	}
	return s.write(ctx, s.setInjectedKey(ueid, spki))
}

func (s *SQLite) MarkInjectedKeyDestroyed(ctx context.Context, ueid []byte) (*Record, error) {
	if err := validUEID(ueid); err != nil {
		return nil, err
	}
	return s.write(ctx, s.markInjectedKeyDestroyed(ueid))
}

func (s *SQLite) Complete(ctx context.Context, ueid []byte) (*Record, error) {
	if err := validUEID(ueid); err != nil {
		return nil, err
	}
	return s.write(ctx, s.complete(ueid))
}

func (s *SQLite) SetQuota(ctx context.Context, scope Scope, name string, limit int64) error {
	if err := validQuota(scope, name, limit); err != nil {
		return err
	}
	_, err := s.write(ctx, s.setQuota(scope, name, limit))
	return err
}

func (s *SQLite) Get(ctx context.Context, ueid []byte) (*Record, error) {
	if err := validUEID(ueid); err != nil {
		return nil, err
	}
	return s.get(ctx, s.rq, ueid)
}

func (s *SQLite) List(ctx context.Context, req *ListRequest) ([]*Record, error) {
	return s.list(ctx, s.rq, req)
}

func (s *SQLite) Incidents(ctx context.Context) ([]*Incident, error) {
	return s.incidents(ctx, s.rq)
}

func (s *SQLite) Quota(ctx context.Context, scope Scope, name string) (*Quota, error) {
	return s.quota(ctx, s.rq, scope, name)
}

// Close waits for the batch being written, refuses the writes still
// queued with ErrClosed, and closes the database.
func (s *SQLite) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	<-s.done
	s.wq.Close() // the writer has returned: the cache is ours
	s.rq.close()
	return errors.Join(s.wconn.Close(), s.wdb.Close(), s.rdb.Close())
}

func (s *SQLite) Stats(ctx context.Context) (*Stats, error) { return s.stats(ctx, s.rq) }

// maxReaders bounds the connections of the readers' pool.
const maxReaders = 8

// readStmts prepares each distinct read query once on the readers' pool
// and reuses the statement from every goroutine (a *sql.Stmt of a *sql.DB
// is prepared again by database/sql on each connection it runs on, once).
// Parsing and planning a query with modernc.org/sqlite costs about as much
// as running a read by primary key. The queries are the package's own
// constants, so the map stays small.
type readStmts struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

var _ querier = (*readStmts)(nil)

func (r *readStmts) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.stmts[query]; ok {
		return st, nil
	}
	if len(r.stmts) >= maxReadStatements {
		return nil, errors.New("registry: too many distinct read queries to cache")
	}
	st, err := r.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	r.stmts[query] = st
	return st, nil
}

// maxReadStatements bounds the cache (never reached: the queries are
// constants).
const maxReadStatements = 64

func (r *readStmts) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return r.db.ExecContext(ctx, query, args...) // readers do not write
}

func (r *readStmts) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return r.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// QueryContext and QueryRowContext fall back to the pool when the query
// cannot be prepared or cached; the pool then reports any error itself
// (through Scan for QueryRowContext).
func (r *readStmts) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return r.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (r *readStmts) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for q, st := range r.stmts {
		st.Close()
		delete(r.stmts, q)
	}
}
