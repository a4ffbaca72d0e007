package measure

import (
	"bytes"
	"crypto"
	"errors"
	"testing"
)

// TestParsedFrom: a parsed Log knows the bytes it came from (a copy: the
// caller's buffer changing later changes nothing), a Log made otherwise
// knows none, and the replay a parsed Log keeps gives Verify the same
// answers as a fresh one.
func TestParsedFrom(t *testing.T) {
	r := sampleRegisters(t)
	b := marshal(t, r.Log())
	l, err := ParseLog(bytes.Clone(b))
	if err != nil {
		t.Fatal(err)
	}
	if !l.ParsedFrom(b) {
		t.Fatal("a parsed log does not know its bytes")
	}
	other := bytes.Clone(b)
	other[len(other)-1] ^= 1
	for name, x := range map[string][]byte{"changed": other, "shorter": b[:len(b)-1], "longer": append(bytes.Clone(b), 0), "nil": nil} {
		if l.ParsedFrom(x) {
			t.Errorf("%s: ParsedFrom", name)
		}
	}
	if r.Log().ParsedFrom(b) {
		t.Error("a log of Registers claims to be parsed")
	}
	var nilLog *Log
	if nilLog.ParsedFrom(b) {
		t.Error("nil log")
	}
	if again, err := Restore(l); err != nil || again.Log().ParsedFrom(b) {
		t.Errorf("Restore: %v, or its copy claims to be parsed", err)
	}

	// The parse owns its bytes.
	buf := bytes.Clone(b)
	l2, err := ParseLog(buf)
	if err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if !l2.ParsedFrom(b) || !bytes.Equal(marshal(t, l2), b) {
		t.Fatal("the parsed log changed with its input buffer")
	}

	want := map[crypto.Hash]map[int][]byte{}
	for _, h := range r.Banks() {
		vals, err := r.Values(h)
		if err != nil {
			t.Fatal(err)
		}
		want[h] = map[int][]byte{0: vals[0], 4: vals[4], 23: vals[23]}
	}
	for i := range 3 { // the first call computes the replay, the next reuse it
		if err := l.Verify(want); err != nil {
			t.Fatalf("Verify %d: %v", i, err)
		}
	}
	bad := map[crypto.Hash]map[int][]byte{crypto.SHA256: {4: bytes.Repeat([]byte{1}, 32)}}
	for i := range 2 {
		var re *ReplayError
		if err := l.Verify(bad); !errors.As(err, &re) || len(re.Mismatched) != 1 || re.Mismatched[0] != 4 {
			t.Fatalf("Verify of a wrong value %d: %v", i, err)
		}
	}
	// Replay's result is the caller's: changing it changes nothing.
	got, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	clear(got[crypto.SHA256][4])
	if err := l.Verify(want); err != nil {
		t.Fatalf("Verify after the caller changed Replay's result: %v", err)
	}
}
