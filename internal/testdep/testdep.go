// Package testdep lets tests declare the outside programs they need.
//
// When a program is missing, the test is skipped on a developer's machine
// (with the command that installs it) but fails when CI=true: CI must never
// pass by skipping. `make deps` installs everything the tests need.
package testdep

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CI reports whether the tests run under CI (CI=true or CI=1).
func CI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// LookPath finds program on PATH or in rootline's tool cache
// ($XDG_CACHE_HOME/rootline/bin). If it is missing the test is skipped, or
// fails under CI.
func LookPath(t testing.TB, program string) string {
	t.Helper()
	if p, err := exec.LookPath(program); err == nil {
		return p
	}
	if dir, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(dir, "rootline", "bin", program)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, program)
	return ""
}

// Missing reports a missing dependency: a skip locally, a failure in CI.
func Missing(t testing.TB, what string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s is required and missing (CI=true: not skipping); run `make deps`", what)
	}
	t.Skipf("%s is missing; run `make deps` to install it", what)
}
