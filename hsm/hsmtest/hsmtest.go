// Package hsmtest gives tests a fresh SoftHSM2 token.
//
// SoftHSM2 reads its configuration file, named by SOFTHSM2_CONF, when a
// process first initialises it (C_Initialize), and PKCS#11 modules are
// process-wide. So [NewSoftHSM] sets SOFTHSM2_CONF with t.Setenv, which
// makes the test (and its parents) non-parallel, and it works only when no
// hsm.Module of an earlier test is still open in the process: close every
// Module before the test ends (t.Cleanup(func() { m.Close() })). It fails the
// test if SoftHSM2 was already loaded with another configuration.
package hsmtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/internal/testdep"
)

// Label is the label of the token NewSoftHSM creates.
const Label = "test"

// NewSoftHSM creates a SoftHSM2 token labelled [Label], alone in a
// directory of t.TempDir() with its own softhsm2.conf, and a random user
// PIN in a file (mode 0600). It returns the token's URI, with module-path
// and pin-source (file:PINFILE), and the PIN file's path.
//
// A missing SoftHSM2 skips the test, or fails it when CI=true (see
// internal/testdep); a build without PKCS#11 support skips it.
func NewSoftHSM(t testing.TB) (uri string, pinFile string) {
	t.Helper()
	testdep.LookPath(t, "softhsm2-util")
	module, err := hsm.FindSoftHSM()
	if err != nil {
		testdep.Missing(t, "SoftHSM2's PKCS#11 module (libsofthsm2.so)")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte(Config(tokens)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)

	r := make([]byte, 12)
	if _, err := rand.Read(r); err != nil {
		t.Fatal(err)
	}
	pinFile = filepath.Join(dir, "user.pin")
	if err := os.WriteFile(pinFile, []byte(hex.EncodeToString(r)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := hsm.InitToken(t.Context(), &hsm.InitTokenRequest{
		ModulePath: module,
		Label:      Label,
		PIN:        &hsm.FilePIN{Path: pinFile},
	})
	if errors.Is(err, hsm.ErrUnsupported) {
		// A build without cgo or with -tags nopkcs11: a skip locally, a
		// failure under CI=true.
		testdep.Missing(t, "PKCS#11 support (build with cgo, without -tags nopkcs11)")
	}
	if err != nil {
		t.Fatalf("hsmtest: initialising a SoftHSM2 token: %v (if an hsm.Module of an earlier test is still open, SoftHSM2 still uses that test's SOFTHSM2_CONF)", err)
	}
	if ents, _ := os.ReadDir(tokens); len(ents) == 0 {
		t.Fatal("hsmtest: SoftHSM2 did not create the token under " + tokens +
			": it was loaded earlier in this process with another SOFTHSM2_CONF (close every hsm.Module before the test that opened it ends)")
	}
	u.PINSource = "file:" + pinFile
	return u.String(), pinFile
}

// Config returns a softhsm2.conf that keeps tokens in tokenDir, as files,
// logging errors only.
func Config(tokenDir string) string {
	return "directories.tokendir = " + tokenDir + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n"
}
