package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rootline/rootline/internal/testdep"

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
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// require PROGRAM...: fail when a program is missing. Scripts
			// put a "[!exec:PROGRAM] [!ci] skip" line before it, so that
			// a developer's machine skips and CI=true fails.
			"require": func(ts *testscript.TestScript, neg bool, args []string) {
				for _, prog := range args {
					if _, err := exec.LookPath(prog); err != nil {
						ts.Fatalf("%s is required and missing; run make deps", prog)
					}
				}
			},
		},
		Condition: func(cond string) (bool, error) {
			if cond == "ci" {
				return testdep.CI(), nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

func TestDemo(t *testing.T) {
	out, err := os.CreateTemp(t.TempDir(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := runDemo(t.Context(), out, t.TempDir(), nil, 3); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Part 4: the factory", "whose identity is injected", "the token holds no injected device key", "Part 5: the field", "status: affirming", "operational certificate:", "reason: rollback"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
}
