// Package pgtest starts a throwaway PostgreSQL server for tests.
//
// The server comes from Debian's postgresql package
// (/usr/lib/postgresql/<version>/bin): initdb into a fresh directory, then
// postgres on 127.0.0.1 at a free port, with fsync off (the data is thrown
// away), trust authentication and no Unix socket. The server is stopped and
// its directory removed when the test ends. Debian's initdb refuses to run
// as root, so when the test runs as root the server runs as the "postgres"
// system user the package creates.
//
// When PostgreSQL is missing the test is skipped, or fails under CI=true
// (see internal/testdep).
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/rootline/rootline/internal/testdep"
)

// binDir finds the newest /usr/lib/postgresql/*/bin holding initdb and
// postgres.
func binDir() (string, bool) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, true
		}
	}
	return "", false
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Start starts a PostgreSQL server for the duration of t and returns the
// DSN of its "postgres" database, as superuser "postgres" with no password.
func Start(t testing.TB) string {
	t.Helper()
	bin, ok := binDir()
	if !ok {
		testdep.Missing(t, "PostgreSQL (/usr/lib/postgresql/*/bin/initdb, Debian package postgresql)")
		return ""
	}

	// The directory must be reachable by the server's user: t.TempDir's
	// parents are private to the test's user, so make our own.
	root, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}

	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			testdep.Missing(t, "the postgres system user (Debian package postgresql)")
			return ""
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(data, int(uid), int(gid)); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	command := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return cmd
	}

	out, err := command("initdb", "-D", data, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}

	// A free port can be taken between our probe and the server's bind;
	// try a few.
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		var logBuf lockedBuffer
		srv := command("postgres", "-D", data,
			"-c", "listen_addresses=127.0.0.1",
			"-c", "port="+strconv.Itoa(port),
			"-c", "unix_socket_directories=",
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=200",
			"-c", "shared_buffers=32MB")
		srv.Stdout = &logBuf
		srv.Stderr = &logBuf
		if err := srv.Start(); err != nil {
			t.Fatalf("pgtest: starting postgres: %v", err)
		}
		exited := make(chan struct{})
		go func() { srv.Wait(); close(exited) }()

		dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		if waitReady(dsn, exited, 30*time.Second) {
			t.Cleanup(func() {
				// SIGINT: "fast" shutdown.
				srv.Process.Signal(syscall.SIGINT)
				select {
				case <-exited:
				case <-time.After(20 * time.Second):
					srv.Process.Kill()
					<-exited
				}
			})
			return dsn
		}
		srv.Process.Kill()
		<-exited
		if !strings.Contains(logBuf.String(), "could not bind") &&
			!strings.Contains(logBuf.String(), "already in use") {
			t.Fatalf("pgtest: postgres did not start:\n%s", logBuf.String())
		}
	}
	t.Fatalf("pgtest: no free port for postgres after 5 attempts")
	return ""
}

var dbCounter atomic.Int64

// CreateDatabase creates a fresh, empty database on the server at dsn (as
// returned by Start) and returns its DSN. It is much cheaper than Start.
func CreateDatabase(t testing.TB, dsn string) string {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer db.Close()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1))
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return strings.Replace(dsn, "/postgres?", "/"+name+"?", 1)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(dsn string, exited <-chan struct{}, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		db, err := sql.Open("pgx", dsn)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
			if err == nil {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
