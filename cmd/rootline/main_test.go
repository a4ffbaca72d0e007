package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// The scripts in testdata/script run the real binary's commands, as a user
// would type them (see github.com/rogpeppe/go-internal/testscript).
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"rootline": main,
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}

func TestDemo(t *testing.T) {
	out, err := os.CreateTemp(t.TempDir(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := runDemo(t.Context(), out, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
}
