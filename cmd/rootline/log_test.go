package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/rootline/rootline/provision/translog"
)

// rootline log fetch downloads what rootline log verify checks, from the
// log's HTTP API. (It calls newLogCommand directly: it runs whether or not
// the command is wired into the root.)
func TestLogFetch(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	st := translog.NewMemStore()
	l, _ := translog.New(st, signer)
	for _, c := range []string{"zero", "one", "two", "three"} {
		if _, err := l.Append(t.Context(), []byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := l.TreeHead(t.Context())
	dir := t.TempDir()
	oldFile := filepath.Join(dir, "old.note")
	os.WriteFile(oldFile, old, 0o644)
	l.Append(t.Context(), []byte("four"))

	srv := httptest.NewServer(translog.Handler(l, nil))
	defer srv.Close()
	run := func(args ...string) (string, error) {
		cmd := newLogCommand(&globals{logLevel: "warn", logFormat: "text"})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(t.Context())
		return out.String(), err
	}
	got := filepath.Join(dir, "got")
	out, err := run("fetch", "--url", srv.URL, "--out", got, "--index", "1", "--old", "4")
	if err != nil || !strings.Contains(out, "head: 5 leaves") {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(got, "cert.der")); string(b) != "one" {
		t.Fatalf("cert.der = %q", b)
	}
	out, err = run("verify", "--key", vkey, "--head", filepath.Join(got, "head.note"),
		"--cert", filepath.Join(got, "cert.der"), "--index", "1", "--proof", filepath.Join(got, "inclusion.bin"))
	if err != nil || !strings.HasPrefix(out, "OK: certificate is leaf 1") {
		t.Fatalf("verify inclusion: %v\n%s", err, out)
	}
	out, err = run("verify", "--key", vkey, "--old", oldFile, "--new", filepath.Join(got, "head.note"),
		"--proof", filepath.Join(got, "consistency.bin"))
	if err != nil || !strings.HasPrefix(out, "OK: the tree of 5 leaves extends the tree of 4 leaves") {
		t.Fatalf("verify consistency: %v\n%s", err, out)
	}
	// Out of range on the server: a clear error, not a file.
	if _, err := run("fetch", "--url", srv.URL, "--out", filepath.Join(dir, "bad"), "--index", "9"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("fetch of a missing leaf: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad", "cert.der")); err == nil {
		t.Fatal("a failed fetch wrote cert.der")
	}
}

// rootline log serve serves a FileStore log until its context ends; fetch
// and verify work against it.
func TestLogServe(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	run := func(ctx context.Context, args ...string) (string, error) {
		cmd := newLogCommand(&globals{logLevel: "warn", logFormat: "text"})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	out, err := run(t.Context(), "keygen", "--name", "log", "--out", file("log.key"))
	if err != nil {
		t.Fatal(err)
	}
	vkey := strings.TrimSpace(strings.TrimPrefix(out, "verifier key: "))
	os.WriteFile(file("a.der"), []byte("a"), 0o644)
	os.WriteFile(file("b.der"), []byte("b"), 0o644)
	if _, err := run(t.Context(), "append", "--dir", file("log"), file("a.der"), file("b.der")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := run(ctx, "serve", "--dir", file("log"), "--signing-key", file("log.key"),
			"--listen", "127.0.0.1:0", "--addr-file", file("addr"))
		done <- err
	}()
	var addr []byte
	for range 500 {
		if addr, err = os.ReadFile(file("addr")); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatal("serve did not start")
	}
	// The store is locked while served.
	if _, err := run(t.Context(), "append", "--dir", file("log"), file("a.der")); !errors.Is(err, translog.ErrInUse) {
		t.Errorf("append while served: %v, want ErrInUse", err)
	}
	url := "http://" + strings.TrimSpace(string(addr))
	if out, err := run(t.Context(), "fetch", "--url", url, "--out", file("got"), "--index", "1"); err != nil {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	out, err = run(t.Context(), "verify", "--key", vkey, "--head", file("got/head.note"),
		"--cert", file("b.der"), "--index", "1", "--proof", file("got/inclusion.bin"))
	if err != nil || !strings.HasPrefix(out, "OK") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// FuzzHeadSize: fetch reads the size of an untrusted, not yet verified
// head; no input panics, and a size is only ever non-negative.
func FuzzHeadSize(f *testing.F) {
	f.Add([]byte("go.sum database tree\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— log AAAAAAAA\n"))
	f.Add([]byte("go.sum database tree\n-1\nAAAA\n\n— log AAAA\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := headSize(b); err == nil && n < 0 {
			t.Fatalf("size %d", n)
		}
	})
}
