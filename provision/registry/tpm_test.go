package registry

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"testing"
)

// testTPMIAK runs a chip on a TPM through its life: the IAK recorded with
// the reservation, kept by a retry, by the transitions and a restart, and
// listed for export; bounds.
func testTPMIAK(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	iak := []byte("tpmt-public-of-the-iak")
	rq := req(1)
	rq.TPMIAK = iak
	rec := mustReserve(t, r, rq)
	if !bytes.Equal(rec.TPMIAK, iak) || rec.Injected != nil {
		t.Fatalf("Reserve: TPMIAK = %x, Injected = %+v", rec.TPMIAK, rec.Injected)
	}
	// A chip not on a TPM has none.
	if plain := mustReserve(t, r, req(2)); plain.TPMIAK != nil {
		t.Fatalf("plain record has TPMIAK = %x", plain.TPMIAK)
	}
	// A retry keeps the first IAK, whatever it sends.
	rq2 := req(1)
	rq2.TPMIAK = []byte("another")
	if rec := mustReserve(t, r, rq2); !bytes.Equal(rec.TPMIAK, iak) {
		t.Fatalf("Reserve again: TPMIAK = %x", rec.TPMIAK)
	}
	if _, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(1)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = open(t)
	rec, err := r.Complete(ctx, ueid(1))
	if err != nil || !bytes.Equal(rec.TPMIAK, iak) {
		t.Fatalf("Complete after restart: %v, TPMIAK = %x", err, rec.TPMIAK)
	}
	got, err := r.Get(ctx, ueid(1))
	if err != nil || !bytes.Equal(got.TPMIAK, iak) || !bytes.Equal(got.PublicKey, key(1)) {
		t.Fatalf("Get: %v, %+v", err, got)
	}
	list, err := r.List(ctx, &ListRequest{})
	if err != nil || len(list) != 2 || !bytes.Equal(list[0].TPMIAK, iak) || list[1].TPMIAK != nil {
		t.Fatalf("List: %v, %d records", err, len(list))
	}

	// Bounds: too long, or with an injected key (a TPM makes its own).
	long := req(3)
	long.TPMIAK = make([]byte, MaxTPMPublicLen+1)
	if _, err := r.Reserve(ctx, long); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("Reserve with a long IAK: %v", err)
	}
	both := req(3)
	both.TPMIAK, both.InjectLabel = iak, "inject-3"
	if _, err := r.Reserve(ctx, both); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("Reserve with an IAK and an inject label: %v", err)
	}
	if _, err := r.Get(ctx, ueid(3)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused reservation was recorded: %v", err)
	}
}
