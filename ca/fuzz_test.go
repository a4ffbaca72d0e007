package ca_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

// FuzzParseCSR: ParseCSR never panics on hostile input, refuses with a
// RequestError, and what it accepts has a verifying signature, an
// accepted key, and makes an IDevID template.
func FuzzParseCSR(f *testing.F) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	f.Add(catest.CSR(f, catest.Key(f), pkix.Name{CommonName: "chip"}, pkix.Extension{Id: ca.OIDDiceTcbInfo, Value: catest.TcbInfo(f)}))
	f.Add(catest.CSR(f, ed, pkix.Name{}))
	files, _ := filepath.Glob("testdata/*.der")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := ca.ParseCSR(der)
		checked, cerr := ca.CheckCSR(der)
		var re, cre *ca.RequestError
		if (err == nil) != (cerr == nil) || (err != nil && (!errors.As(err, &re) || !errors.As(cerr, &cre) || re.Kind != cre.Kind)) {
			t.Fatalf("ParseCSR: %v, CheckCSR: %v", err, cerr)
		}
		if err != nil {
			if !errors.Is(err, ca.ErrBadRequest) {
				t.Fatalf("error %v is not a RequestError", err)
			}
			return
		}
		if !bytes.Equal(checked.PublicKeyInfo(), csr.RawSubjectPublicKeyInfo) {
			t.Fatal("CheckCSR and ParseCSR disagree on the key")
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature fails: %v", err)
		}
		c, err := ca.Check(&ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "p", UEID: bytes.Repeat([]byte{1}, 17), CSR: der},
			ca.Products{"p": catest.HWType})
		c2, err2 := ca.Check(&ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "p", UEID: bytes.Repeat([]byte{1}, 17), CSR: der, CheckedCSR: checked},
			ca.Products{"p": catest.HWType})
		if (err == nil) != (err2 == nil) || (err == nil && !bytes.Equal(c.CSR.Raw, c2.CSR.Raw)) {
			t.Fatalf("Check with and without the CheckedCSR: %v, %v", err, err2)
		}
		if err != nil {
			if errors.Is(err, ca.ErrInvalidField) { // a tcg-dice-Ueid of another device
				return
			}
			t.Fatalf("ParseCSR accepted what Check refuses: %v", err)
		}
		serial, _ := ca.NewSerial(rand.Reader)
		if _, err := c.Template(serial, time.Now(), nil); err != nil {
			t.Fatalf("no template for an accepted CSR: %v", err)
		}
	})
}

// FuzzParseHardwareModuleName: parsing is total and round-trips.
func FuzzParseHardwareModuleName(f *testing.F) {
	f.Add(mustHex(f, hmnKAT))
	san, _ := ca.MarshalStation("s", []string{"p"})
	f.Add(san)
	f.Fuzz(func(t *testing.T, san []byte) {
		hw, sn, err := ca.ParseHardwareModuleName(san)
		if err != nil {
			if !errors.Is(err, ca.ErrNoName) {
				t.Fatalf("error %v does not wrap ErrNoName", err)
			}
			return
		}
		again, err := ca.MarshalHardwareModuleName(hw, sn)
		if err != nil {
			t.Fatalf("cannot marshal what was parsed (%v, %x): %v", hw, sn, err)
		}
		hw2, sn2, err := ca.ParseHardwareModuleName(again)
		if err != nil || !hw2.Equal(hw) || !bytes.Equal(sn, sn2) {
			t.Fatalf("round trip: %v %x %v", hw2, sn2, err)
		}
	})
}

// FuzzParseStation: parsing is total and round-trips.
func FuzzParseStation(f *testing.F) {
	san, _ := ca.MarshalStation("line-1.fixture-07", []string{"sku-a", "sku-b"})
	f.Add(san)
	f.Add(mustHex(f, hmnKAT))
	f.Fuzz(func(t *testing.T, san []byte) {
		name, products, err := ca.ParseStation(san)
		if err != nil {
			if !errors.Is(err, ca.ErrNoName) {
				t.Fatalf("error %v does not wrap ErrNoName", err)
			}
			return
		}
		again, err := ca.MarshalStation(name, products)
		if err != nil {
			t.Fatalf("cannot marshal what was parsed (%q, %q): %v", name, products, err)
		}
		name2, products2, err := ca.ParseStation(again)
		if err != nil || name2 != name || !slices.Equal(products, products2) {
			t.Fatalf("round trip: %q %q %v", name2, products2, err)
		}
	})
}

// FuzzParseStore: the revocation file parser never panics.
func FuzzParseStore(f *testing.F) {
	f.Add([]byte(`{"version":1,"revoked":[{"serial":"a","reason":1,"time":"2026-01-01T00:00:00Z"}],"crlNumbers":{"sku-a":3}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"revoked":[{"serial":"0a","reason":8}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ca.ParseStoreForTest(b)
	})
}
