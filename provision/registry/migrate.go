package registry

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Schema migrations, one file per version: migrations/<dialect>/NNNN_name.sql.
// Each is applied once, in its own transaction, and its version recorded
// in schema_migrations.
//
//go:embed migrations
var migrationFS embed.FS

type migration struct {
	version int
	sql     string
}

func migrations(dialectName string) ([]migration, error) {
	dir := path.Join("migrations", dialectName)
	entries, err := migrationFS.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("registry: migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		prefix, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("registry: migration %s has no version", e.Name())
		}
		b, err := migrationFS.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("registry: migrations: %w", err)
		}
		out = append(out, migration{v, string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("registry: migration versions not consecutive at %d", m.version)
		}
	}
	return out, nil
}

type beginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// migrate brings the schema to the newest version. On PostgreSQL an
// advisory lock keeps replicas starting together from racing.
func migrate(ctx context.Context, db beginner, d dialect, now func() time.Time) error {
	ms, err := migrations(d.name)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("registry: migrate: %w", err)
	}
	defer tx.Rollback()
	if d.dollar {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(8427301)`); err != nil {
			return fmt.Errorf("registry: migrate: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT NOT NULL PRIMARY KEY, applied_ns BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("registry: migrate: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("registry: migrate: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("registry: database schema version %d is newer than this program's %d", current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("registry: migration %d: %w", m.version, err)
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO schema_migrations (version, applied_ns) VALUES (?, ?)`),
			m.version, now().UnixNano()); err != nil {
			return fmt.Errorf("registry: migration %d: %w", m.version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("registry: migrate: %w", err)
	}
	return nil
}
