package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
)

var genTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

type fixture struct {
	reg      *registry.SQLite
	products map[string]*provision.ProductPolicy
	h        *catest.Hierarchy
	// certs by UEID (string), of the ISSUED and COMPLETE devices.
	certs map[string]*x509.Certificate
	state map[string]registry.State
}

// newFixture records devices in a fresh SQLite registry: for each product,
// complete COMPLETE devices, issued ISSUED devices and one ISSUING device,
// with IDevIDs from a catest hierarchy.
func newFixture(t testing.TB, complete, issued int) *fixture {
	t.Helper()
	ctx := context.Background()
	reg, err := registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: filepath.Join(t.TempDir(), "registry.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	local, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{reg: reg, h: h, products: map[string]*provision.ProductPolicy{},
		certs: map[string]*x509.Certificate{}, state: map[string]registry.State{}}
	for i, p := range h.Products {
		d := sha256.Sum256([]byte(p.Name))
		f.products[p.Name] = &provision.ProductPolicy{
			HWType: p.HWType, Chain: []*x509.Certificate{p.Certificate, h.Root},
			ReferenceValues: map[string]provision.LayerReference{
				"bootloader": {Digests: [][]byte{d[:]}, MinSVN: uint64(i + 1)},
				"app":        {Digests: [][]byte{d[:], d[:16]}, MinSVN: 0},
			},
		}
		for j := range complete + issued + 1 {
			key := catest.Key(t)
			ueid := catest.UEID(t)
			csr := catest.CSR(t, key, pkix.Name{})
			spki, err := x509.MarshalPKIXPublicKey(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := reg.Reserve(ctx, &registry.ReserveRequest{UEID: ueid, PublicKey: spki, Product: p.Name, Lot: "lot-1", Station: "st-1"}); err != nil {
				t.Fatal(err)
			}
			if j == complete+issued {
				continue // left ISSUING
			}
			iss, err := local.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: p.Name, UEID: ueid, CSR: csr})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := reg.MarkIssued(ctx, ueid, iss.Certificate.Raw, iss.Certificate.SerialNumber); err != nil {
				t.Fatal(err)
			}
			f.certs[string(ueid)] = iss.Certificate
			f.state[string(ueid)] = registry.Issued
			if j < complete {
				if _, err := reg.Complete(ctx, ueid); err != nil {
					t.Fatal(err)
				}
				f.state[string(ueid)] = registry.Complete
			}
		}
	}
	return f
}

func (f *fixture) write(t testing.TB, opts *export.Options) []byte {
	t.Helper()
	if opts == nil {
		opts = &export.Options{}
	}
	opts.Now = func() time.Time { return genTime }
	var buf bytes.Buffer
	if err := export.Write(t.Context(), &buf, f.reg, f.products, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteRead(t *testing.T) {
	f := newFixture(t, 3, 2)
	for name, tc := range map[string]struct {
		opts    export.Options
		devices int
	}{
		"all":           {export.Options{PageSize: 2}, 10},
		"one page":      {export.Options{}, 10},
		"complete only": {export.Options{CompleteOnly: true, PageSize: 3}, 6},
		"product":       {export.Options{Product: "sku-b", PageSize: 1}, 5},
	} {
		t.Run(name, func(t *testing.T) {
			doc := f.write(t, &tc.opts)
			e, err := export.Read(bytes.NewReader(doc))
			if err != nil {
				t.Fatalf("%v\n%s", err, doc)
			}
			if e.Version != export.Version || !e.Generated.Equal(genTime) {
				t.Errorf("version %d, generated %v", e.Version, e.Generated)
			}
			if len(e.Devices) != tc.devices {
				t.Fatalf("%d devices, want %d", len(e.Devices), tc.devices)
			}
			for _, d := range e.Devices {
				c, ok := f.certs[string(d.UEID)]
				if !ok {
					t.Fatalf("device %x is not an issued one", d.UEID)
				}
				if !d.Chain[0].Equal(c) || !d.Root().Equal(f.h.Root) || len(d.Chain) != 3 {
					t.Errorf("device %x: wrong chain", d.UEID)
				}
				if d.State != f.state[string(d.UEID)] || (tc.opts.CompleteOnly && d.State != registry.Complete) {
					t.Errorf("device %x: state %v", d.UEID, d.State)
				}
				if tc.opts.Product != "" && d.Product != tc.opts.Product {
					t.Errorf("device %x: product %q", d.UEID, d.Product)
				}
				if d.Issued.IsZero() || d.Issued.After(time.Now()) {
					t.Errorf("device %x: issued %v", d.UEID, d.Issued)
				}
			}
			for name, p := range e.Products {
				want := f.products[name].ReferenceValues
				if len(p.ReferenceValues) != len(want) {
					t.Fatalf("product %s: %d layers", name, len(p.ReferenceValues))
				}
				for l, ref := range want {
					got := p.ReferenceValues[l]
					if got.MinSVN != ref.MinSVN || len(got.Digests) != len(ref.Digests) || !bytes.Equal(got.Digests[0], ref.Digests[0]) {
						t.Errorf("product %s layer %s: %+v, want %+v", name, l, got, ref)
					}
				}
			}
			if tc.opts.Product != "" && len(e.Products) != 1 {
				t.Errorf("%d products exported for one", len(e.Products))
			}
		})
	}
}

func TestWriteUnknownProduct(t *testing.T) {
	f := newFixture(t, 1, 0)
	delete(f.products, "sku-b")
	err := export.Write(t.Context(), io.Discard, f.reg, f.products, nil)
	if !errors.Is(err, export.ErrUnknownProduct) {
		t.Fatalf("got %v, want ErrUnknownProduct", err)
	}
	if err := export.Write(t.Context(), io.Discard, f.reg, f.products, &export.Options{Product: "sku-c"}); !errors.Is(err, export.ErrUnknownProduct) {
		t.Fatalf("got %v, want ErrUnknownProduct", err)
	}
	f.products["sku-a"].ReferenceValues = nil
	if err := export.Write(t.Context(), io.Discard, f.reg, f.products, &export.Options{Product: "sku-a"}); err == nil {
		t.Fatal("exported a product without reference values")
	}
}

func TestWriteEmpty(t *testing.T) {
	f := newFixture(t, 0, 0)
	e, err := export.Read(bytes.NewReader(f.write(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Devices) != 0 || len(e.Products) != 2 {
		t.Fatalf("%d devices, %d products", len(e.Devices), len(e.Products))
	}
}

// doc is the export's wire form with its members in order, for mutations.
type doc struct {
	Version   any              `json:"version"`
	Generated any              `json:"generated"`
	Devices   []map[string]any `json:"devices"`
	Products  map[string]any   `json:"products"`
}

func TestReadRejects(t *testing.T) {
	f := newFixture(t, 2, 0)
	good := f.write(t, nil)
	mutate := func(fn func(d *doc)) []byte {
		var d doc
		if err := json.Unmarshal(good, &d); err != nil {
			t.Fatal(err)
		}
		fn(&d)
		b, err := json.Marshal(&d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := export.Read(bytes.NewReader(mutate(func(*doc) {}))); err != nil {
		t.Fatalf("unmutated: %v", err)
	}
	chain := func(d *doc, i int) []any { return d.Devices[i]["chain"].([]any) }
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":          {nil, export.ErrFormat},
		"not JSON":       {[]byte("{"), export.ErrFormat},
		"version":        {mutate(func(d *doc) { d.Version = 0 }), export.ErrVersion},
		"generated":      {mutate(func(d *doc) { d.Generated = "yesterday" }), export.ErrFormat},
		"trailing":       {append(bytes.Clone(good), "{}"...), export.ErrFormat},
		"order":          {bytes.Replace(good, []byte(`{"version":2,"generated":"2026-11-25T12:00:00Z"`), []byte(`{"generated":"2026-11-25T12:00:00Z","version":2`), 1), export.ErrFormat},
		"unknown member": {mutate(func(d *doc) { d.Devices[0]["lot"] = "x" }), export.ErrFormat},
		"state":          {mutate(func(d *doc) { d.Devices[0]["state"] = "issuing" }), export.ErrFormat},
		"ueid hex":       {mutate(func(d *doc) { d.Devices[0]["ueid"] = "zz" }), export.ErrFormat},
		"ueid other":     {mutate(func(d *doc) { d.Devices[0]["ueid"] = "00" }), export.ErrChain},
		"duplicate":      {mutate(func(d *doc) { d.Devices[1] = d.Devices[0] }), export.ErrFormat},
		"unsorted":       {mutate(func(d *doc) { d.Devices[0], d.Devices[1] = d.Devices[1], d.Devices[0] }), export.ErrFormat},
		"no root":        {mutate(func(d *doc) { d.Devices[0]["chain"] = chain(d, 0)[:2] }), export.ErrChain},
		"leaf only":      {mutate(func(d *doc) { d.Devices[0]["chain"] = chain(d, 0)[:1] }), export.ErrFormat},
		"long chain":     {mutate(func(d *doc) { d.Devices[0]["chain"] = append(chain(d, 0), chain(d, 0)...) }), export.ErrFormat},
		"leaf swapped": {mutate(func(d *doc) {
			c0, c1 := chain(d, 0), chain(d, 1)
			c0[0] = c1[0]
		}), export.ErrChain},
		"other product's CA": {mutate(func(d *doc) {
			for i := range d.Devices {
				if d.Devices[i]["product"] == "sku-a" {
					for j := range d.Devices {
						if d.Devices[j]["product"] == "sku-b" {
							chain(d, i)[1] = chain(d, j)[1]
							return
						}
					}
				}
			}
		}), export.ErrChain},
		"huge certificate": {mutate(func(d *doc) { chain(d, 0)[0] = strings.Repeat("A", 4*export.MaxCertSize) }), export.ErrTooLarge},
		"bad base64":       {mutate(func(d *doc) { chain(d, 0)[0] = "!!!!" }), export.ErrFormat},
		"bad certificate":  {mutate(func(d *doc) { chain(d, 0)[0] = "AAAA" }), export.ErrChain},
		"unknown product":  {mutate(func(d *doc) { delete(d.Products, d.Devices[0]["product"].(string)) }), export.ErrUnknownProduct},
		"no layers":        {mutate(func(d *doc) { d.Products["sku-a"] = map[string]any{"referenceValues": map[string]any{}} }), export.ErrFormat},
		"digest not hex":   {bytes.Replace(good, []byte(`"digests":["`), []byte(`"digests":["zz`), 1), export.ErrFormat},
		"products null":    {mutate(func(d *doc) { d.Products = nil }), export.ErrFormat},
		"products missing": {bytes.Replace(good, []byte(`],"products":`), []byte(`],"product":`), 1), export.ErrFormat},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := export.Read(bytes.NewReader(tc.b))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var fe *export.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%T is not a *FormatError", err)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	f := newFixture(t, 1, 1)
	srv := httptest.NewServer(export.Handler(f.reg, f.products, nil))
	defer srv.Close()

	resp, err := http.Get(srv.URL + export.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	e, err := export.Read(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Devices) != 4 {
		t.Fatalf("%d devices, want 4", len(e.Devices))
	}

	resp, err = http.Get(srv.URL + export.Path + "?product=sku-a&complete=1")
	if err != nil {
		t.Fatal(err)
	}
	e, err = export.Read(resp.Body)
	resp.Body.Close()
	if err != nil || len(e.Devices) != 1 {
		t.Fatalf("filtered: %v, %+v", err, e)
	}

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, export.Path, http.StatusMethodNotAllowed},
		{http.MethodGet, export.Path + "?product=sku-z", http.StatusNotFound},
		{http.MethodGet, "/v1/other", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
	}
}

// failingList fails registry.List after the first page.
type failingList struct {
	registry.Registry
	calls int
}

func (f *failingList) List(ctx context.Context, req *registry.ListRequest) ([]*registry.Record, error) {
	if f.calls++; f.calls > 1 {
		return nil, errors.New("database gone")
	}
	return f.Registry.List(ctx, req)
}

func TestWriteFailureIsTruncated(t *testing.T) {
	f := newFixture(t, 2, 0)
	var buf bytes.Buffer
	err := export.Write(t.Context(), &buf, &failingList{Registry: f.reg}, f.products, &export.Options{PageSize: 1})
	if err == nil {
		t.Fatal("no error")
	}
	if _, err := export.Read(&buf); !errors.Is(err, export.ErrFormat) {
		t.Fatalf("truncated export read: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := export.Write(ctx, io.Discard, f.reg, f.products, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}
