package registry

import (
	"context"
	"database/sql"
	"fmt"
)

// stmtCache is the SQLite writer's querier: it prepares each distinct
// query once on the writer's connection and reuses the statement, since
// the writer runs the same few statements for every chip and preparing
// one costs as much as running it. It belongs to the writer goroutine
// alone and is not safe for concurrent use.
type stmtCache struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

// maxCachedStatements bounds the cache; queries are a fixed set of
// constants, so it is never reached in practice.
const maxCachedStatements = 64

func newStmtCache(conn *sql.Conn) *stmtCache {
	return &stmtCache{conn: conn, stmts: map[string]*sql.Stmt{}}
}

func (c *stmtCache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("registry: prepare: %w", err)
	}
	if len(c.stmts) < maxCachedStatements {
		c.stmts[query] = st
	}
	return st, nil
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext cannot return a preparation error by itself: it falls
// back to the connection, which reports it through Scan.
func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return c.conn.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// Close closes the prepared statements.
func (c *stmtCache) Close() {
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
}
