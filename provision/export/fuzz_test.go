package export_test

import (
	"bytes"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/provision/export"
)

// FuzzRead: Read never panics, and what it accepts holds its promises.
func FuzzRead(f *testing.F) {
	fx := newFixture(f, 2, 1)
	f.Add(fx.write(f, nil))
	f.Add(fx.write(f, &export.Options{Product: "sku-a"}))
	f.Add([]byte(`{"version":1,"generated":"2026-11-25T12:00:00Z","devices":[],"products":{}}`))
	f.Add([]byte(`{"version":1,"generated":"2026-11-25T12:00:00Z","devices":[{"ueid":"01","product":"p","state":"issued","chain":["AA==","AA=="],"issued":"2026-11-25T12:00:00Z"}],"products":{"p":{"referenceValues":{"os":{"digests":["ab"],"minSVN":1}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := export.Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		for i, d := range e.Devices {
			if i > 0 && bytes.Compare(e.Devices[i-1].UEID, d.UEID) >= 0 {
				t.Fatal("devices out of order")
			}
			if len(d.Chain) < 2 || len(d.Chain) > export.MaxChainLen {
				t.Fatalf("chain of %d", len(d.Chain))
			}
			if _, sn, err := ca.HardwareModuleName(d.Chain[0]); err != nil || !bytes.Equal(sn, d.UEID) {
				t.Fatal("leaf does not name the UEID")
			}
			if e.Products[d.Product] == nil {
				t.Fatal("device of an unknown product")
			}
		}
	})
}
