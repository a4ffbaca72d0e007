package registry

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rootline/rootline/internal/pgtest"
)

// sqliteFactory makes a registry file in a fresh directory; each opener
// call opens it again and closes it at the end of the test (closing twice
// is harmless).
func sqliteFactory(t *testing.T) opener {
	path := filepath.Join(t.TempDir(), "registry.db")
	clock := fixedClock()
	return func(t *testing.T) Registry {
		t.Helper()
		r, err := OpenSQLite(context.Background(), &SQLiteConfig{Path: path, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
}

func postgresFactory(server string) factory {
	return func(t *testing.T) opener {
		dsn := pgtest.CreateDatabase(t, server)
		clock := fixedClock()
		return func(t *testing.T) Registry {
			t.Helper()
			r, err := OpenPostgres(context.Background(), &PostgresConfig{DSN: dsn, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		}
	}
}

func TestSQLite(t *testing.T) {
	runSuite(t, sqliteFactory)
}

func TestPostgres(t *testing.T) {
	runSuite(t, postgresFactory(pgtest.Start(t)))
}
