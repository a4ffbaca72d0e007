package provision

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/rootline/rootline/internal/pgtest"
	"github.com/rootline/rootline/provision/registry"
)

// opener makes a fresh, empty registry for one test and closes it when the
// test ends.
type opener func(t testing.TB) registry.Registry

// openSQLite makes a registry file in the test's own directory.
func openSQLite(t testing.TB) registry.Registry {
	t.Helper()
	r, err := registry.OpenSQLite(context.Background(), &registry.SQLiteConfig{Path: filepath.Join(t.TempDir(), "registry.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// openPostgres makes a database of its own for the test on the package's
// PostgreSQL server.
func openPostgres(t testing.TB) registry.Registry {
	t.Helper()
	dsn := pgtest.CreateDatabase(t, pgServer(t))
	r, err := registry.OpenPostgres(context.Background(), &registry.PostgresConfig{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// forEachBackend runs f once per registry backend, as subtests "sqlite" and
// "postgres".
func forEachBackend(t *testing.T, f func(t *testing.T, open opener)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { f(t, openSQLite) })
	t.Run("postgres", func(t *testing.T) { f(t, openPostgres) })
}

// The package's tests share one PostgreSQL server (starting one takes about
// a second); each test gets a database of its own on it. The server is
// started by the first test that asks for it and stopped by TestMain once
// every test has run.
var pg struct {
	once     sync.Once
	dsn      string
	skip     string // set when the server is missing locally
	fail     string // set when it is missing under CI=true or did not start
	cleanups []func()
}

// pgServer returns the DSN of the package's PostgreSQL server, starting it
// on first use. If it cannot be had, t is skipped or fails, as
// internal/testdep decides.
func pgServer(t testing.TB) string {
	t.Helper()
	pg.once.Do(startServer)
	switch {
	case pg.fail != "":
		t.Fatal(pg.fail)
	case pg.skip != "":
		t.Skip(pg.skip)
	}
	return pg.dsn
}

// startServer runs pgtest.Start with a serverTB, which belongs to no test,
// on a goroutine of its own so that Fatal and Skip can end it with
// runtime.Goexit, as they end a test.
func startServer() {
	tb := &serverTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pg.dsn = pgtest.Start(tb)
	}()
	<-done
	pg.skip, pg.fail, pg.cleanups = tb.skip, tb.fail, tb.cleanups
	if pg.skip != "" || pg.fail != "" {
		pg.dsn = ""
	}
}

// serverTB is the testing.TB pgtest.Start is given for the shared server:
// it keeps the cleanups for TestMain and the reason of a Fatal or a Skip
// for pgServer. The embedded testing.TB is nil: pgtest and testdep call
// only the methods below.
type serverTB struct {
	testing.TB
	mu       sync.Mutex
	skip     string
	fail     string
	cleanups []func()
}

func (tb *serverTB) Helper()                   {}
func (tb *serverTB) Name() string              { return "pgtest-server" }
func (tb *serverTB) Logf(string, ...any)       {}
func (tb *serverTB) Log(...any)                {}
func (tb *serverTB) Errorf(f string, a ...any) { tb.setFail(fmt.Sprintf(f, a...)) }
func (tb *serverTB) Error(a ...any)            { tb.setFail(fmt.Sprint(a...)) }
func (tb *serverTB) Fatalf(f string, a ...any) {
	tb.setFail(fmt.Sprintf(f, a...))
	runtime.Goexit()
}
func (tb *serverTB) Fatal(a ...any) { tb.setFail(fmt.Sprint(a...)); runtime.Goexit() }
func (tb *serverTB) Skipf(f string, a ...any) {
	tb.mu.Lock()
	tb.skip = fmt.Sprintf(f, a...)
	tb.mu.Unlock()
	runtime.Goexit()
}
func (tb *serverTB) Skip(a ...any) { tb.Skipf("%s", fmt.Sprint(a...)) }
func (tb *serverTB) SkipNow()      { tb.Skipf("skipped") }
func (tb *serverTB) FailNow()      { tb.Fatal("failed") }
func (tb *serverTB) Cleanup(f func()) {
	tb.mu.Lock()
	tb.cleanups = append(tb.cleanups, f)
	tb.mu.Unlock()
}

func (tb *serverTB) setFail(msg string) {
	tb.mu.Lock()
	if tb.fail == "" {
		tb.fail = "shared PostgreSQL server: " + msg
	}
	tb.mu.Unlock()
}

// TestMain stops the shared PostgreSQL server, if a test started it, after
// every test has run.
func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(pg.cleanups) - 1; i >= 0; i-- {
		pg.cleanups[i]()
	}
	os.Exit(code)
}
