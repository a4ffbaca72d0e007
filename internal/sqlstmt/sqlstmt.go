// Package sqlstmt caches prepared statements on one database/sql
// connection: the single writer of rootline's SQLite stores (the device
// registry, the verifier's verdicts) runs the same few statements for every
// chip or attestation, and preparing one costs as much as running it.
package sqlstmt

import (
	"context"
	"database/sql"
	"fmt"
)

// Cache prepares each distinct query once on its connection and reuses
// the statement. It belongs to the connection's one user (a writer
// goroutine) and is not safe for concurrent use. Transactions are run with
// explicit BEGIN, SAVEPOINT and COMMIT statements through it: a
// statement prepared on a connection cannot be reused inside a *sql.Tx.
type Cache struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

// maxCachedStatements bounds the cache; queries are a fixed set of
// constants, so it is never reached in practice.
const maxCachedStatements = 64

// New returns an empty cache over conn.
func New(conn *sql.Conn) *Cache {
	return &Cache{conn: conn, stmts: map[string]*sql.Stmt{}}
}

func (c *Cache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if len(c.stmts) < maxCachedStatements {
		c.stmts[query] = st
	}
	return st, nil
}

// ExecContext runs query with args, as sql.Conn.ExecContext does.
func (c *Cache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// QueryContext runs query with args, as sql.Conn.QueryContext does.
func (c *Cache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs query with args, as sql.Conn.QueryRowContext does.
// It cannot return a preparation error by itself: it falls back to the
// connection, which reports it through Scan.
func (c *Cache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return c.conn.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// Close closes the prepared statements.
func (c *Cache) Close() {
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
}
