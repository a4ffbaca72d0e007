package main

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
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
	// The floor counts the chips' own algorithm, and the root's.
	if !bytes.Contains(out, []byte("service: 6 ed25519 verif., 1 p256 verif.; chip: 2 ed25519 sign., 2 ed25519 verif., 2 p256 verif.; hsm: 1 p256 sign.")) {
		t.Errorf("no floor line with the chips' work:\n%s", out)
	}
}

func TestSignatureFloor(t *testing.T) {
	work := onChipSignatures(pluton.Ed25519, pluton.ECDSAP256, pluton.ECDSAP384)
	costs := sigCosts{pluton.Ed25519: {20 * time.Microsecond, 50 * time.Microsecond}, pluton.ECDSAP256: {40 * time.Microsecond, 80 * time.Microsecond},
		pluton.ECDSAP384: {0, 300 * time.Microsecond}}
	cpu, most := costs.floor(work)
	// 8 Ed25519 verifications, 2 P-256 ones, 1 P-384 one; 2 Ed25519 and 1 P-256 signatures.
	want := 8*50*time.Microsecond + 2*80*time.Microsecond + 300*time.Microsecond + 2*20*time.Microsecond + 40*time.Microsecond
	if cpu != want {
		t.Errorf("floor = %s, want %s", cpu, want)
	}
	if got := float64(benchCores()) / want.Seconds(); most != got {
		t.Errorf("at most %f/s, want %f", most, got)
	}
	if _, _, err := rawSigner(pluton.MLDSA65); err == nil {
		t.Error("rawSigner(ML-DSA-65): no error")
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
