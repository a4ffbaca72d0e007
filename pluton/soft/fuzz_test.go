package soft

import (
	"bytes"
	"context"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// FuzzUnmarshalState feeds hostile state files to the decoder: it never
// panics, and whatever it accepts re-encodes to the same bytes (the
// encoding is deterministic, so an accepted file has one form).
func FuzzUnmarshalState(f *testing.F) {
	ctx := context.Background()
	c, path := fusedChip(f)
	f.Add(fileBytes(f, path))
	c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.Ed25519, Usage: pluton.UsageSign})
	c.IncrementCounter(ctx, pluton.App("x"), "boot")
	f.Add(fileBytes(f, path))
	blank, _ := marshalState(&chipState{NextHandle: 2})
	f.Add(blank)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := unmarshalState(data)
		if err != nil {
			if st != nil {
				t.Fatal("state returned with an error")
			}
			return
		}
		again, err := marshalState(st)
		if err != nil {
			t.Fatalf("accepted state does not re-encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("round trip changed the file")
		}
	})
}

// FuzzDecodePayload skips the checksum (which a fuzzer cannot forge) and
// attacks the CBOR decoder and the invariant checks directly.
func FuzzDecodePayload(f *testing.F) {
	ctx := context.Background()
	c, _ := fusedChip(f)
	c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP384, Usage: pluton.UsageSign})
	c.AdvanceCounter(ctx, pluton.OS, "svn/os", 7)
	p, _ := encMode.Marshal(c.state)
	f.Add(p)
	p, _ = encMode.Marshal(&chipState{NextHandle: 2})
	f.Add(p)
	f.Fuzz(func(t *testing.T, payload []byte) {
		st, err := decodePayload(payload)
		if err != nil {
			return
		}
		again, err := encMode.Marshal(st)
		if err != nil || !bytes.Equal(again, payload) {
			t.Fatalf("accepted payload does not round-trip: %v", err)
		}
		if _, err := marshalState(st); err != nil {
			t.Fatalf("accepted payload cannot be written back: %v", err)
		}
	})
}
