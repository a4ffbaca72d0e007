package measure

import (
	"bytes"
	"crypto"
	"errors"
	"testing"
)

// FuzzParseLog checks that ParseLog never panics, refuses with a
// *ParseError wrapping ErrMalformed, and that whatever it accepts marshals
// back to the same bytes, replays, and restores to registers whose log is
// the same. Seeds: rootline's own logs (testdata/fuzz/FuzzParseLog holds a
// few malformed ones).
func FuzzParseLog(f *testing.F) {
	for _, banks := range [][]crypto.Hash{nil, {crypto.SHA256}, {crypto.SHA384}, {crypto.SHA384, crypto.SHA256}} {
		f.Add(marshal(f, sampleRegisters(f, banks...).Log()))
	}
	r, err := New()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(marshal(f, r.Log()))
	h := goodHeader()
	h.vendorInfo = []byte("rootline")
	h.platformClass = 1
	w := &logBuilder{}
	w.header(h)
	w.record(23, uint32(EVSeparator), both([]byte{1, 0, 0, 0}), []byte{1, 0, 0, 0})
	f.Add(w.Bytes())

	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLog(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrMalformed) || pe.Reason == nil {
				t.Fatalf("error %v (%T)", err, err)
			}
			if l != nil {
				t.Fatal("a Log along with an error")
			}
			_ = err.Error()
			return
		}
		out, err := l.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-marshalled:\n%x\nparsed:\n%x", out, b)
		}
		if len(l.Events()) > MaxEvents {
			t.Fatalf("%d events", len(l.Events()))
		}
		values, err := l.Replay()
		if err != nil {
			t.Fatal(err)
		}
		r, err := Restore(l)
		if err != nil {
			t.Fatal(err)
		}
		if again := marshal(t, r.Log()); !bytes.Equal(again, b) {
			t.Fatal("the restored log differs")
		}
		want := map[crypto.Hash]map[int][]byte{}
		for _, h := range l.Banks() {
			want[h] = map[int][]byte{}
			for i, v := range values[h] {
				want[h][i] = v
			}
		}
		if err := l.Verify(want); err != nil {
			t.Fatal(err)
		}
	})
}
