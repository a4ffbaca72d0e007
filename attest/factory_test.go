package attest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"path/filepath"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/translog"
)

// factory is the real factory of package provision in front of the env's
// CA: a SQLite registry, an issuance log, a station of the product. Its
// registry reaches the verifier as in the field, through the export
// (provision/export, Write then Read).
type factory struct {
	svc      *provision.Service
	reg      *registry.SQLite
	station  provision.Station
	products map[string]*provision.ProductPolicy
}

// newFactory makes the factory of the env's product, whose test firmware
// is fw; with inj, the product's identity is injected by inj.
func (e *env) newFactory(fw *device.Images, inj provision.Injector) *factory {
	t, ctx := e.t, e.ctx
	t.Helper()
	reg, err := registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: filepath.Join(t.TempDir(), "registry.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	_, logKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := translog.NewSigner("log.rootline.test", logKey)
	if err != nil {
		t.Fatal(err)
	}
	log, err := translog.New(translog.NewMemStore(), signer)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]provision.LayerReference{}
	for _, img := range [][]byte{fw.Bootloader, fw.OS, fw.App} {
		p, err := boot.ParseImage(img)
		if err != nil {
			t.Fatal(err)
		}
		refs[string(p.Manifest.Layer)] = provision.LayerReference{Digests: [][]byte{p.Manifest.Digest}, MinSVN: 1}
	}
	p := e.h.Products[0]
	policy := &provision.ProductPolicy{HWType: p.HWType, Chain: []*x509.Certificate{p.Certificate, e.h.Root}, ReferenceValues: refs}
	if inj != nil {
		policy.Identity = provision.Injected
		policy.Injection = &provision.InjectionPolicy{Injector: inj}
	}
	f := &factory{reg: reg, station: provision.Station{Name: "st-1", Products: []string{product}},
		products: map[string]*provision.ProductPolicy{product: policy}}
	f.svc, err = provision.New(&provision.Config{
		Registry: reg, Issuer: e.ca, Log: log, Products: f.products,
		NonceKey: bytes.Repeat([]byte{7}, 32),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// publish exports the factory's registry and registers every device of
// the export with the verifier, active, as the field's registry would.
func (f *factory) publish(e *env) {
	t := e.t
	t.Helper()
	var buf bytes.Buffer
	if err := export.Write(e.ctx, &buf, f.reg, f.products, nil); err != nil {
		t.Fatal(err)
	}
	ex, err := export.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ex.Devices {
		e.devices.Put(exportRecord(d))
	}
}

// exportRecord is the verifier's record of a device of the export.
func exportRecord(d *export.Device) *DeviceRecord {
	r := &DeviceRecord{UEID: d.UEID, Product: d.Product, State: RegistryActive,
		Kind: IdentityKind(d.Kind), DeviceIDKey: d.DeviceIDKey, IAK: d.IAK}
	for _, c := range d.Chain {
		r.IDevIDChain = append(r.IDevIDChain, c.Raw)
	}
	return r
}

// lookup returns the verifier's record of ueid.
func (e *env) lookup(ueid []byte) *DeviceRecord {
	e.t.Helper()
	r, err := e.devices.Lookup(context.Background(), ueid)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}
