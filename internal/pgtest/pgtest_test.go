package pgtest

import (
	"database/sql"
	"testing"
)

func TestStart(t *testing.T) {
	dsn := Start(t)
	for _, d := range []string{dsn, CreateDatabase(t, dsn)} {
		db, err := sql.Open("pgx", d)
		if err != nil {
			t.Fatal(err)
		}
		var one int
		if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 on %s: %d, %v", d, one, err)
		}
		db.Close()
	}
}
