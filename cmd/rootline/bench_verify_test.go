package main

import (
	"bytes"
	"regexp"
	"testing"
)

func TestBenchVerify(t *testing.T) {
	var out, errOut bytes.Buffer
	cmd := newBenchVerifyCommand(&globals{logLevel: "warn", logFormat: "text"})
	cmd.SetArgs([]string{"--devices", "4", "--concurrency", "3", "--duration", "500ms", "--dir", t.TempDir()})
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("bench verify: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	t.Logf("stdout:\n%s", &out)
	for _, re := range []string{
		`(?m)^devices +4$`,
		`(?m)^deviceid-alg +p256 `,
		`(?m)^attestations/s +[0-9]+ `,
		`(?m)^latency +p50 \S+ +p90 \S+ +p99 \S+ +max \S+$`,
		`(?m)^ecdsa verify/s +[0-9]+ `,
		`(?m)^ratio +[0-9.]+ of verify/s ÷ 1 `,
		`(?m)^floor +[0-9.]+ ms of CPU per attestation in signatures alone \(verifier: 1 p256 verif., 1 p256 sign.; device: 1 p256 sign., 1 p256 verif.\)$`,
		`(?m)^https +[0-9.]+ ms of CPU per attestation `,
		`(?m)^ceiling +[0-9]+ attestations/s `,
		`(?m)^ratio +[0-9.]+ \(attestations/s / that ceiling\)$`,
	} {
		if !regexp.MustCompile(re).Match(out.Bytes()) {
			t.Errorf("stdout does not match %s:\n%s", re, &out)
		}
	}
	if !bytes.Contains(errOut.Bytes(), []byte("preparing devices [==============================] 4/4")) {
		t.Errorf("stderr has no finished progress line:\n%q", &errOut)
	}
}

// TestBenchVerifyEd25519 runs a tiny bench of chips whose DICE keys are
// Ed25519 (Open DICE's default profile): the verifier must affirm their
// evidence (benchAttest fails the run on any other verdict).
func TestBenchVerifyEd25519(t *testing.T) {
	var out, errOut bytes.Buffer
	cmd := newBenchVerifyCommand(&globals{logLevel: "warn", logFormat: "text"})
	cmd.SetArgs([]string{"--devices", "2", "--concurrency", "2", "--duration", "200ms", "--store", "memory",
		"--deviceid-alg", "ed25519", "--dir", t.TempDir()})
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("bench verify: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	for _, re := range []string{
		`(?m)^deviceid-alg +ed25519 `,
		`(?m)^attestations +[1-9][0-9]* in `,
	} {
		if !regexp.MustCompile(re).Match(out.Bytes()) {
			t.Errorf("stdout does not match %s:\n%s", re, &out)
		}
	}
}

func TestBenchVerifyFlags(t *testing.T) {
	for _, args := range [][]string{{"--devices", "0"}, {"--concurrency", "0"}, {"--duration", "0s"}, {"--store", "redis"},
		{"--deviceid-alg", "mldsa65"}, {"--deviceid-alg", "rsa"}} {
		cmd := newBenchVerifyCommand(&globals{logLevel: "warn", logFormat: "text"})
		cmd.SetArgs(append([]string{"--dir", t.TempDir()}, args...))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.ExecuteContext(t.Context()); err == nil {
			t.Errorf("bench verify %v: no error", args)
		}
	}
}
