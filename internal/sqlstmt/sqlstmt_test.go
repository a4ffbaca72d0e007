package sqlstmt

import (
	"context"
	"database/sql"
	"testing"

	_ "modernc.org/sqlite"
)

// Statements are prepared once and reused; a query that does not prepare
// reports its error through the call, and the cache closes cleanly.
func TestCache(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+t.TempDir()+"/t.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := New(conn)
	defer c.Close()
	if _, err := c.ExecContext(ctx, "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := c.ExecContext(ctx, "INSERT INTO t (k, v) VALUES (?, ?)", i, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.stmts); n != 2 {
		t.Fatalf("%d statements cached, want 2 (one per distinct query)", n)
	}
	var count int
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&count); err != nil || count != 10 {
		t.Fatalf("count %d, %v", count, err)
	}
	rows, err := c.QueryContext(ctx, "SELECT k FROM t WHERE k < ?", 3)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
	if _, err := c.ExecContext(ctx, "NOT SQL"); err == nil {
		t.Fatal("a malformed statement ran")
	}
	var x int
	if err := c.QueryRowContext(ctx, "SELECT nope FROM nowhere").Scan(&x); err == nil {
		t.Fatal("a malformed query returned a row")
	}
	c.Close()
	if len(c.stmts) != 0 {
		t.Fatal("Close kept statements")
	}
}
