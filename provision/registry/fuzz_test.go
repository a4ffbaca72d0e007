package registry

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// FuzzReserve feeds untrusted station input to Reserve: every request is
// either refused with ErrInvalidRequest and changes nothing, or recorded;
// repeating it gives the same record; another key for the same UEID is a
// clone.
func FuzzReserve(f *testing.F) {
	f.Add([]byte("ueid-1"), []byte("spki-1"), []byte("spki-2"), "sku-a", "lot-1", "st-1")
	f.Add([]byte{}, []byte("k"), []byte("k"), "p", "l", "s")
	f.Add(bytes.Repeat([]byte{0xff}, MaxUEIDLen+1), []byte("k"), []byte("j"), "p", "l", "s")
	f.Add([]byte{0}, []byte{0}, []byte{0, 0}, "", "l", "s")
	f.Add([]byte("u"), bytes.Repeat([]byte{1}, MaxPublicKeyLen), []byte("k"), "p\x00", "l", string(make([]byte, MaxNameLen+1)))
	r, err := OpenSQLite(context.Background(), &SQLiteConfig{Path: filepath.Join(f.TempDir(), "r.db")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	f.Fuzz(func(t *testing.T, ueid, key, key2 []byte, product, lot, station string) {
		ctx := context.Background()
		rq := &ReserveRequest{UEID: ueid, PublicKey: key, Product: product, Lot: lot, Station: station}
		before, getErr := r.Get(ctx, ueid)
		rec, err := r.Reserve(ctx, rq)
		if rq.Validate() != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("invalid request: %v", err)
			}
			after, getErr2 := r.Get(ctx, ueid)
			if (getErr == nil) != (getErr2 == nil) || (before != nil && after.State != before.State) {
				t.Fatal("invalid request changed the registry")
			}
			return
		}
		if getErr == nil && !bytes.Equal(before.PublicKey, key) {
			if !errors.Is(err, ErrClone) {
				t.Fatalf("known UEID, other key: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		again, err := r.Reserve(ctx, rq)
		if err != nil || !bytes.Equal(again.PublicKey, rec.PublicKey) || again.State != rec.State {
			t.Fatalf("repeated Reserve: %+v, %v", again, err)
		}
		if len(key2) > 0 && len(key2) <= MaxPublicKeyLen && !bytes.Equal(key, key2) {
			rq.PublicKey = key2
			if _, err := r.Reserve(ctx, rq); !errors.Is(err, ErrClone) {
				t.Fatalf("clone not refused: %v", err)
			}
		}
	})
}
