package export_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/provision/export"
)

// FuzzRead: Read never panics, and what it accepts holds its promises.
func FuzzRead(f *testing.F) {
	fx := newFixture(f, 2, 1)
	f.Add(fx.write(f, nil))
	f.Add(fx.write(f, &export.Options{Product: "sku-a"}))
	addKinds(f, fx) // an injected device and one on a TPM (version 2 members)
	f.Add(fx.write(f, nil))
	f.Add([]byte(`{"version":2,"generated":"2026-11-25T12:00:00Z","devices":[],"products":{}}`))
	f.Add([]byte(`{"version":2,"generated":"2026-11-25T12:00:00Z","devices":[{"ueid":"01","product":"p","state":"issued","chain":["AA==","AA=="],"issued":"2026-11-25T12:00:00Z","kind":"tpm","deviceIDKey":"AA==","iak":"AA=="}],"products":{"p":{"referenceValues":{"os":{"digests":["ab"],"minSVN":1}}}}}`))
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
			switch {
			case e.Version == export.Version1:
				if d.Kind != "" || d.DeviceIDKey != nil || d.IAK != nil {
					t.Fatal("version 1 device with version 2 members")
				}
				continue
			case d.Kind != export.KindDICE && d.Kind != export.KindInjected && d.Kind != export.KindTPM:
				t.Fatalf("kind %q", d.Kind)
			case d.Kind == export.KindTPM:
				iak, err := tpm.ParseIAKPublic(d.IAK)
				if err != nil {
					t.Fatal(err)
				}
				if u, _ := tpm.UEID(iak); !bytes.Equal(u, d.UEID) {
					t.Fatal("a TPM device's UEID is not its IAK's")
				}
			case d.IAK != nil:
				t.Fatal("IAK of a device not on a TPM")
			}
			pub, err := x509.ParsePKIXPublicKey(d.DeviceIDKey)
			if err != nil {
				t.Fatal(err)
			}
			if k, ok := d.Chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }); d.Kind != export.KindInjected && (!ok || !k.Equal(pub)) {
				t.Fatal("DeviceID key of a DICE or TPM device is not its IDevID's")
			}
		}
	})
}
