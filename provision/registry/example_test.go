package registry_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"

	"github.com/rootline/rootline/provision/registry"
)

func Example() {
	dir, err := os.MkdirTemp("", "registry-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	reg, err := registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: filepath.Join(dir, "registry.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()

	if err := reg.SetQuota(ctx, registry.ScopeLot, "lot-7", 1000); err != nil {
		log.Fatal(err)
	}
	req := &registry.ReserveRequest{
		UEID: []byte{0x01, 0x02}, PublicKey: []byte("DER SubjectPublicKeyInfo"),
		Product: "sku-a", Lot: "lot-7", Station: "station-3",
	}
	rec, err := reg.Reserve(ctx, req) // step 5: recorded before signing
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.State)
	rec, _ = reg.MarkIssued(ctx, req.UEID, []byte("DER IDevID certificate"), big.NewInt(42))
	fmt.Println(rec.State)
	rec, _ = reg.Complete(ctx, req.UEID) // step 6: the chip holds its chain
	fmt.Println(rec.State)

	clone := *req
	clone.PublicKey = []byte("another key")
	_, err = reg.Reserve(ctx, &clone)
	fmt.Println(errors.Is(err, registry.ErrClone))
	incidents, _ := reg.Incidents(ctx)
	fmt.Println(len(incidents))
	// Output:
	// ISSUING
	// ISSUED
	// COMPLETE
	// true
	// 1
}
