package main

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/internal/testdep"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct{ q, want int }{{50, 50}, {90, 90}, {99, 99}, {100, 100}, {1, 1}} {
		if got := percentile(d, tc.q); got != time.Duration(tc.want) {
			t.Errorf("percentile(1..100, %d) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile([7], 99) = %d", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil, 50) = %d", got)
	}
}

func TestBenchProvision(t *testing.T) {
	out, errOut := runBenchForTest(t, "--stepca=false")
	if bytes.Contains(out, []byte("step-ca")) {
		t.Errorf("--stepca=false ran step-ca:\n%s", out)
	}
	if !bytes.Contains(errOut, []byte("preparing chips    [==============================] 10/10")) {
		t.Errorf("stderr has no finished preparation line:\n%q", errOut)
	}
}

// Chips with Ed25519 DICE keys provision as P-256 ones do.
func TestBenchProvisionEd25519Chips(t *testing.T) {
	out, _ := runBenchForTest(t, "--stepca=false", "--deviceid-alg", "ed25519", "--root-alg", "p256")
	if !bytes.Contains(out, []byte("chips' DICE keys ed25519")) {
		t.Errorf("output:\n%s", out)
	}
}

func TestBenchProvisionStepCA(t *testing.T) {
	if findStepCA() == "" {
		testdep.Missing(t, "step-ca")
	}
	out, errOut := runBenchForTest(t, "--stepca")
	for _, re := range []string{
		`(?m)^step-ca +10 IDevIDs, 2 clients, \S+$`,
		`(?m)^certs/s +[0-9.]+$`,
		`(?m)^ratio +[0-9.]+ `,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("stdout does not match %s:\n%s", re, out)
		}
	}
	if !bytes.Contains(errOut, []byte("step-ca issuing    [==============================] 10/10")) {
		t.Errorf("stderr has no finished step-ca progress line:\n%q", errOut)
	}
}

// runBenchForTest runs bench provision for 10 chips and 2 stations, checks
// its figures and counts, and returns its stdout and stderr.
func runBenchForTest(t *testing.T, args ...string) (stdout, stderr []byte) {
	t.Helper()
	if _, err := hsm.FindSoftHSM(); err != nil {
		testdep.Missing(t, "SoftHSM2")
	}
	var out, errOut bytes.Buffer
	cmd := newBenchCommand(&globals{logLevel: "warn", logFormat: "text"})
	cmd.SetArgs(append([]string{"provision", "--chips", "10", "--stations", "2", "--dir", t.TempDir()}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("bench provision: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	t.Logf("stdout:\n%s", &out)
	for _, re := range []string{
		`(?m)^chips +10$`,
		`(?m)^stations +2$`,
		`(?m)^elapsed +\S+$`,
		`(?m)^chips/s +[0-9.]+$`,
		`(?m)^latency +p50 \S+ +p90 \S+ +p99 \S+ +max \S+$`,
		`(?m)^registry +10 COMPLETE, 0 ISSUING, 0 ISSUED, 0 incidents$`,
		`(?m)^log +10 leaves$`,
	} {
		if !regexp.MustCompile(re).Match(out.Bytes()) {
			t.Errorf("stdout does not match %s:\n%s", re, &out)
		}
	}
	if !bytes.Contains(errOut.Bytes(), []byte("provisioning chips [==============================] 10/10")) {
		t.Errorf("stderr has no finished progress line:\n%q", &errOut)
	}
	return out.Bytes(), errOut.Bytes()
}

func TestBenchProvisionFlags(t *testing.T) {
	for _, args := range [][]string{{"--chips", "0"}, {"--stations", "0"}, {"--chips", "100001"}, {"--stations", "257"},
		{"--deviceid-alg", "mldsa65"}, {"--deviceid-alg", "rsa"}} {
		cmd := newBenchCommand(&globals{logLevel: "warn", logFormat: "text"})
		cmd.SetArgs(append([]string{"provision", "--dir", t.TempDir()}, args...))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.ExecuteContext(t.Context()); err == nil {
			t.Errorf("bench provision %v: no error", args)
		}
	}
}
