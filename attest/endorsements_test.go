package attest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const sampleEndorsements = `{
  "version": 1,
  "products": [{
    "product": "sku-a",
    "releases": [{
      "release": "2026.11.1",
      "layers": [{
        "layer": "os",
        "version": "1.4.0",
        "digests": [{"alg": "sha-256", "value": "` + "0001020304050607080900010203040506070809000102030405060708090001" + `"}],
        "min_svn": 3,
        "signer": "` + "aa01020304050607080900010203040506070809000102030405060708090001" + `"
      }],
      "vulnerable": "CVE-2026-0001"
    }]
  }]
}`

func TestReadEndorsements(t *testing.T) {
	e, err := ReadEndorsements(strings.NewReader(sampleEndorsements))
	if err != nil {
		t.Fatal(err)
	}
	l := e.Products[0].Releases[0].Layers[0]
	if l.MinSVN != 3 || l.Digests[0].Value[1] != 1 || l.Signer[0] != 0xaa || e.Products[0].Releases[0].Vulnerable != "CVE-2026-0001" {
		t.Fatalf("%+v", e)
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := ReadEndorsements(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := again.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("round trip")
	}
	d := "0001020304050607080900010203040506070809000102030405060708090001"
	for name, doc := range map[string]string{
		"version 2":         strings.Replace(sampleEndorsements, `"version": 1`, `"version": 2`, 1),
		"unknown member":    strings.Replace(sampleEndorsements, `"min_svn"`, `"extra": 1, "min_svn"`, 1),
		"trailing data":     sampleEndorsements + "{}",
		"uppercase hex":     strings.Replace(sampleEndorsements, "aa01", "AA01", 1),
		"short digest":      strings.Replace(sampleEndorsements, d+`"}]`, d[:62]+`"}]`, 1),
		"unknown alg":       strings.Replace(sampleEndorsements, "sha-256", "md5", 1),
		"sha-384 of 32":     strings.Replace(sampleEndorsements, "sha-256", "sha-384", 1),
		"bad layer name":    strings.Replace(sampleEndorsements, `"layer": "os"`, `"layer": "OS!"`, 1),
		"empty version":     strings.Replace(sampleEndorsements, `"1.4.0"`, `""`, 1),
		"negative svn":      strings.Replace(sampleEndorsements, `"min_svn": 3`, `"min_svn": -3`, 1),
		"not json":          "{",
		"no layers":         `{"version":1,"products":[{"product":"a","releases":[{"release":"r","layers":[]}]}]}`,
		"duplicate product": `{"version":1,"products":[{"product":"a","releases":[]},{"product":"a","releases":[]}]}`,
		"duplicate release": strings.Replace(sampleEndorsements, `"releases": [{`, `"releases": [{"release":"2026.11.1","layers":[{"layer":"os","version":"1","digests":[{"alg":"sha-256","value":"`+d+`"}],"min_svn":0,"signer":"`+d+`"}]},{`, 1),
		"oversized":         `{"version":1,"products":[],"x":"` + strings.Repeat("a", MaxEndorsementsSize) + `"}`,
		"short signer":      strings.Replace(sampleEndorsements, "aa0102", "aa", 1),
	} {
		if _, err := ReadEndorsements(strings.NewReader(doc)); !errors.Is(err, ErrEndorsements) {
			t.Errorf("%s: %v, want ErrEndorsements", name, err)
		}
	}
}

func TestUpdateProductRefusesBadInput(t *testing.T) {
	e := newEnv(t, &envOptions{memoryStore: true})
	before, _ := e.v.Endorsements().Marshal()
	if err := e.v.UpdateProduct(&ProductEndorsements{Product: "bad name!"}); !errors.Is(err, ErrEndorsements) {
		t.Fatal(err)
	}
	if err := e.v.SetEndorsements(&Endorsements{Version: 7}); !errors.Is(err, ErrEndorsements) {
		t.Fatal(err)
	}
	after, _ := e.v.Endorsements().Marshal()
	if !bytes.Equal(before, after) {
		t.Fatal("a refused update changed the endorsements")
	}
	// A second product is added beside the first.
	if err := e.v.UpdateProduct(&ProductEndorsements{Product: "sku-b"}); err != nil {
		t.Fatal(err)
	}
	if got := e.v.Endorsements(); len(got.Products) != 2 {
		t.Fatalf("%d products", len(got.Products))
	}
}

func FuzzReadEndorsements(f *testing.F) {
	f.Add([]byte(sampleEndorsements))
	f.Add([]byte(`{"version":1,"products":[]}`))
	f.Add([]byte(`{"version":1,"products":[{"product":"a","releases":[{"release":"r","layers":[{"layer":"os","version":"1","digests":[{"alg":"sha-512","value":"00"}],"min_svn":0,"signer":"00"}]}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ReadEndorsements(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrEndorsements) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// What is accepted marshals and reads back to the same document.
		m, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := ReadEndorsements(bytes.NewReader(m))
		if err != nil {
			t.Fatal(err)
		}
		m2, _ := e2.Marshal()
		if !bytes.Equal(m, m2) {
			t.Fatal("round trip")
		}
		compile(e) // never panics
	})
}
