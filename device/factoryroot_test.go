package device

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/pluton"
)

// A chip fused with its factory root's hash installs only an IDevID chain
// ending with that root: a chain from another CA, though it certifies the
// chip's own key, is refused and changes nothing.
func TestFactoryRootPinned(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	factory := catest.NewHierarchy(t, "sku-a")
	rogue := catest.NewHierarchy(t, "sku-a")
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		pin, err := FactoryRootHash(factory.Root, h)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Init(ctx, t.TempDir(), &InitRequest{Product: "sku-a", RootKeyHash: v.RootHash, FactoryRootHash: pin}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
			t.Fatal(err)
		}
		fr, err := d.FactoryRequest(ctx, []byte("factory nonce 0123"))
		if err != nil {
			t.Fatal(err)
		}
		issue := func(hier *catest.Hierarchy) [][]byte {
			l, err := ca.NewLocal(&ca.LocalOptions{Root: hier.Root, Products: hier.Products})
			if err != nil {
				t.Fatal(err)
			}
			return issueIdentity(t, l, "sku-a", fr.UEID, fr.CSR)
		}
		state := filepath.Join(d.Dir(), ChipFile)
		before, _ := os.ReadFile(state)
		err = d.InstallIdentity(ctx, issue(rogue))
		if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "factory root") {
			t.Fatalf("%v: a chain of another CA: %v, want ErrIdentity naming the factory root", h, err)
		}
		if after, _ := os.ReadFile(state); !bytes.Equal(before, after) {
			t.Fatalf("%v: a refused chain changed the chip", h)
		}
		if err := d.InstallIdentity(ctx, issue(factory)); err != nil {
			t.Fatalf("%v: the factory's chain: %v", h, err)
		}
		if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Provisioned {
			t.Fatalf("%v: lifecycle %v", h, lc)
		}
	}
	if _, err := FactoryRootHash(factory.Root, crypto.SHA1); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("SHA-1: %v", err)
	}
}
