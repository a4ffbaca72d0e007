package soft

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
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
	vt := transportOf(f, c, TransportP256)
	blob := wrapForChip(f, &WrappedBlob{Kind: BlobSecret, Transport: TransportP256, UEID: vt.UEID, Name: "join"}, vt.Public, make([]byte, 32))
	if err := c.InstallWrappedSecret(ctx, blob, pluton.OS); err != nil {
		f.Fatal(err)
	}
	f.Add(fileBytes(f, path)) // version 2
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

// FuzzParseWrappedBlob feeds hostile blobs to the parser: it never
// panics, and what it accepts re-encodes to the same bytes.
func FuzzParseWrappedBlob(f *testing.F) {
	c, _ := fusedChip(f)
	vt := transportOf(f, c, TransportP256)
	f.Add(wrapForChip(f, &WrappedBlob{Kind: BlobSecret, Transport: TransportP256, UEID: vt.UEID, Name: "join"}, vt.Public, make([]byte, 32)))
	f.Add(wrapForChip(f, &WrappedBlob{Kind: BlobKey, Transport: TransportP256, UEID: vt.UEID, Name: "idevid",
		KeyAlgorithm: pluton.ECDSAP256}, vt.Public, make([]byte, 138)))
	f.Add([]byte{0xa0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseWrappedBlob(data)
		if err != nil {
			if b != nil {
				t.Fatal("blob returned with an error")
			}
			if !errors.Is(err, ErrBlobMalformed) {
				t.Fatalf("error %v does not wrap ErrBlobMalformed", err)
			}
			return
		}
		again, err := b.Marshal()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzVerifyTransportKey feeds hostile statements (with a valid signature
// over each, so the decoder is reached) to the verifier.
func FuzzVerifyTransportKey(f *testing.F) {
	c, _ := fusedChip(f)
	nonce := bytes.Repeat([]byte{7}, 16)
	tk, err := c.TransportKey(context.Background(), TransportP256, nonce)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tk.Statement)
	f.Add([]byte{0xa0})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Fuzz(func(t *testing.T, st []byte) {
		d := sha256.Sum256(st)
		sig, _ := ecdsa.SignASN1(rand.Reader, key, d[:])
		v, err := VerifyTransportKey(st, sig, &key.PublicKey, nonce)
		if err != nil {
			if v != nil {
				t.Fatal("result with an error")
			}
			return
		}
		if v.Public == nil || len(v.UEID) == 0 {
			t.Fatal("accepted statement without key or UEID")
		}
	})
}
