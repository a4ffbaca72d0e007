package ca_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/rootline/rootline/ca"
)

func TestNewSerial(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s, err := ca.NewSerial(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sign() <= 0 || s.BitLen() > 127 {
			t.Fatalf("serial %x: want positive, at most 127 bits", s)
		}
		if seen[s.String()] {
			t.Fatalf("serial %x drawn twice", s)
		}
		seen[s.String()] = true
	}
	// The top bit is cleared, not the whole draw discarded.
	s, err := ca.NewSerial(bytes.NewReader(bytes.Repeat([]byte{0xff}, 16)))
	if err != nil || s.BitLen() != 127 {
		t.Errorf("all-ones draw: %x, %v", s, err)
	}
	// Zero is drawn again; 0x80 then zeros is zero once the top bit goes.
	zeroThenOne := append(append([]byte{0x80}, make([]byte, 15)...), append(make([]byte, 15), 1)...)
	s, err = ca.NewSerial(bytes.NewReader(zeroThenOne))
	if err != nil || s.Int64() != 1 {
		t.Errorf("zero draw: %v, %v; want 1 from the second draw", s, err)
	}
	// A failing source is an error, not a weak serial.
	if _, err := ca.NewSerial(bytes.NewReader(make([]byte, 5))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short source: %v", err)
	}
}
