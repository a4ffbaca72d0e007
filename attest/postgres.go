package attest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// PostgresConfig configures OpenPostgres.
type PostgresConfig struct {
	// DSN, e.g. postgres://rootline@db.example/attest?sslmode=verify-full.
	DSN string
	// MaxConns bounds the connection pool; 0 means 16.
	MaxConns int
	// MaxAttempts bounds the tries of a write that meets a serialization
	// failure, a deadlock or a concurrent first insertion; 0 means 100.
	MaxAttempts int
}

// Validate checks c.
func (c *PostgresConfig) Validate() error {
	if c.DSN == "" {
		return fmt.Errorf("%w: PostgreSQL DSN is empty", ErrConfig)
	}
	if c.MaxConns < 0 || c.MaxAttempts < 0 {
		return fmt.Errorf("%w: negative MaxConns or MaxAttempts", ErrConfig)
	}
	return nil
}

// Postgres is the Store shared by several verifier replicas.
//
// Record is one READ COMMITTED transaction that locks the device's state
// row (SELECT ... FOR UPDATE) before comparing the new state with it, so
// that two replicas accepting the same device queue on that row. A device
// with no state row yet has nothing to lock: its row is inserted ON
// CONFLICT DO NOTHING, and the loser of that race runs again and then finds
// the row. State reads the database every time (no cache: other replicas
// write too).
type Postgres struct {
	db          *sql.DB
	maxAttempts int
}

var _ Store = (*Postgres)(nil)

const postgresSchema = `
CREATE TABLE IF NOT EXISTS attest_verdicts (
	id       BIGSERIAL PRIMARY KEY,
	ueid     BYTEA  NOT NULL,
	time     BIGINT NOT NULL, -- Unix nanoseconds
	status   TEXT   NOT NULL,
	reasons  TEXT   NOT NULL, -- JSON [{code, detail}]
	product  TEXT   NOT NULL,
	release  TEXT   NOT NULL,
	accepted TEXT             -- JSON DeviceState, or NULL
);
CREATE INDEX IF NOT EXISTS attest_verdicts_by_device ON attest_verdicts (ueid, id DESC);
CREATE TABLE IF NOT EXISTS attest_device_state (
	ueid    BYTEA  PRIMARY KEY,
	state   TEXT   NOT NULL, -- JSON DeviceState
	verdict BIGINT NOT NULL REFERENCES attest_verdicts (id)
);
`

// OpenPostgres connects to the database and creates the tables if needed.
func OpenPostgres(ctx context.Context, cfg *PostgresConfig) (*Postgres, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("attest: connecting to PostgreSQL: %w", err)
	}
	n := cfg.MaxConns
	if n == 0 {
		n = 16
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	if _, err := db.ExecContext(ctx, postgresSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("attest: creating the schema: %w", err)
	}
	p := &Postgres{db: db, maxAttempts: cfg.MaxAttempts}
	if p.maxAttempts == 0 {
		p.maxAttempts = 100
	}
	return p, nil
}

// Close closes the connection pool.
func (p *Postgres) Close() error { return p.db.Close() }

var errRetry = errors.New("attest: retry")

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, errRetry) || errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// Record implements Store.
func (p *Postgres) Record(ctx context.Context, v *Verdict) error {
	if err := checkVerdict(v); err != nil {
		return err
	}
	var last error
	for attempt := range p.maxAttempts {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(rand.IntN(1000*min(attempt, 20))) * time.Microsecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		id, err := p.record(ctx, v)
		if err == nil {
			v.ID = id
			return nil
		}
		if !retryable(err) {
			return err
		}
		last = err
	}
	return fmt.Errorf("attest: store: giving up after %d attempts: %w", p.maxAttempts, last)
}

func (p *Postgres) record(ctx context.Context, v *Verdict) (id int64, err error) {
	reasons, err := json.Marshal(nonNil(v.Reasons))
	if err != nil {
		return 0, err
	}
	tx, err := p.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, fmt.Errorf("attest: store: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var accepted []byte
	exists := false
	if v.Accepted != nil {
		var old []byte
		err := tx.QueryRowContext(ctx, "SELECT state FROM attest_device_state WHERE ueid = $1 FOR UPDATE", v.UEID).Scan(&old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return 0, fmt.Errorf("attest: store: %w", err)
		default:
			exists = true
			var prev DeviceState
			if err := json.Unmarshal(old, &prev); err != nil {
				return 0, fmt.Errorf("attest: store: device state: %w", err)
			}
			if why := v.Accepted.Below(&prev); why != "" {
				return 0, fmt.Errorf("%w: %s", ErrRollback, why)
			}
		}
		if accepted, err = json.Marshal(v.Accepted); err != nil {
			return 0, err
		}
	}
	if err := tx.QueryRowContext(ctx,
		"INSERT INTO attest_verdicts (ueid, time, status, reasons, product, release, accepted) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
		v.UEID, v.Time.UnixNano(), string(v.Status), string(reasons), v.Product, v.Release, nullString(accepted)).Scan(&id); err != nil {
		return 0, fmt.Errorf("attest: store: %w", err)
	}
	if accepted != nil {
		if exists {
			_, err = tx.ExecContext(ctx, "UPDATE attest_device_state SET state = $2, verdict = $3 WHERE ueid = $1", v.UEID, string(accepted), id)
		} else {
			var res sql.Result
			res, err = tx.ExecContext(ctx, "INSERT INTO attest_device_state (ueid, state, verdict) VALUES ($1, $2, $3) ON CONFLICT (ueid) DO NOTHING", v.UEID, string(accepted), id)
			if err == nil {
				if n, _ := res.RowsAffected(); n == 0 {
					err = errRetry // another replica inserted it first
				}
			}
		}
		if err != nil {
			if !errors.Is(err, errRetry) {
				err = fmt.Errorf("attest: store: %w", err)
			}
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("attest: store: %w", err)
	}
	return id, nil
}

// State implements Store.
func (p *Postgres) State(ctx context.Context, ueid []byte) (*DeviceState, error) {
	var b []byte
	err := p.db.QueryRowContext(ctx, "SELECT state FROM attest_device_state WHERE ueid = $1", ueid).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("attest: store: %w", err)
	}
	var st DeviceState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("attest: store: device state: %w", err)
	}
	return &st, nil
}

// Verdicts implements Store.
func (p *Postgres) Verdicts(ctx context.Context, ueid []byte, before int64, limit int) ([]*Verdict, error) {
	if err := checkPage(limit); err != nil {
		return nil, err
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := p.db.QueryContext(ctx,
		"SELECT id, time, status, reasons, product, release, accepted FROM attest_verdicts WHERE ueid = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
		ueid, before, limit)
	if err != nil {
		return nil, fmt.Errorf("attest: store: %w", err)
	}
	return scanVerdicts(rows, ueid)
}
