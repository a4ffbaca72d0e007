package ca_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

// The HardwareModuleName SAN, assembled by hand from RFC 5280, §4.2.1.6,
// and RFC 4108, §5 (X.690 DER): hwType 1.3.6.1.4.1.32473.1.1 (32473 is
// 0x81 0xfd 0x59 in base 128), hwSerialNum 0102030405060708.
const hmnKAT = "3026" + // GeneralNames SEQUENCE, 38 bytes
	"a024" + // otherName [0], 36 bytes
	"06082b06010505070804" + // type-id id-on-hardwareModuleName
	"a018" + // value [0] EXPLICIT, 24 bytes
	"3016" + // HardwareModuleName SEQUENCE, 22 bytes
	"060a2b0601040181fd590101" + // hwType
	"04080102030405060708" // hwSerialNum OCTET STRING

func TestHardwareModuleNameKAT(t *testing.T) {
	got, err := ca.MarshalHardwareModuleName(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != hmnKAT {
		t.Errorf("got  %x\nwant %s", got, hmnKAT)
	}
	hw, sn, err := ca.ParseHardwareModuleName(got)
	if err != nil || hw.String() != "1.3.6.1.4.1.32473.1.1" || hex.EncodeToString(sn) != "0102030405060708" {
		t.Errorf("parse: %v %x %v", hw, sn, err)
	}
}

// TestHardwareModuleNameOpenSSL: OpenSSL's own encoder (the SAN of
// testdata/othername.csr.der, see testdata/README.md) gives the same bytes.
func TestHardwareModuleNameOpenSSL(t *testing.T) {
	csr, err := x509.ParseCertificateRequest(readTestdata(t, "othername.csr.der"))
	if err != nil {
		t.Fatal(err)
	}
	var san []byte
	for _, e := range csr.Extensions {
		if e.Id.String() == "2.5.29.17" {
			san = e.Value
		}
	}
	serial, _ := hex.DecodeString("01000102030405060708090a0b0c0d0e0f")
	want, err := ca.MarshalHardwareModuleName(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}, serial)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(san, want) {
		t.Errorf("OpenSSL %x\nours    %x", san, want)
	}
}

// TestNamesZcrypto: zcrypto (zlint's parser, an independent DER reader)
// finds the otherNames of issued certificates where they should be.
func TestNamesZcrypto(t *testing.T) {
	h := catest.NewHierarchy(t, "sku-a", "sku-b")
	l := newLocal(t, h, nil, nil)
	reqs := catest.Requests(t)
	for _, name := range []string{"idevid", "station"} {
		iss, err := l.Issue(t.Context(), reqs[name])
		if err != nil {
			t.Fatal(err)
		}
		zc, err := zx509.ParseCertificate(iss.Certificate.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if len(zc.OtherNames) != 1 {
			t.Fatalf("%s: %d otherNames", name, len(zc.OtherNames))
		}
		on := zc.OtherNames[0]
		switch name {
		case "idevid":
			var v struct {
				HWType asn1.ObjectIdentifier
				Serial []byte
			}
			if _, err := asn1.Unmarshal(on.Value.Bytes, &v); err != nil {
				t.Fatal(err)
			}
			if on.TypeID.String() != ca.OIDHardwareModuleName.String() || !v.HWType.Equal(h.Products[0].HWType) || !bytes.Equal(v.Serial, reqs[name].UEID) {
				t.Errorf("zcrypto reads %v %v %x", on.TypeID, v.HWType, v.Serial)
			}
		case "station":
			var v struct {
				Name     string `asn1:"utf8"`
				Products []string
			}
			if _, err := asn1.Unmarshal(on.Value.Bytes, &v); err != nil {
				t.Fatal(err)
			}
			if on.TypeID.String() != ca.OIDStation.String() || v.Name != reqs[name].Station || !slices.Equal(v.Products, reqs[name].Products) {
				t.Errorf("zcrypto reads %v %s %v", on.TypeID, v.Name, v.Products)
			}
		}
	}
}

// TestOIDRootline: the arc is the UUID's seven groups under Microsoft's
// GUID arc, 1.2.840.113556.1.8000.2554.
func TestOIDRootline(t *testing.T) {
	u := strings.ReplaceAll("a217ee50-bb67-4ebc-8a19-90e2e90a28f6", "-", "")
	want := "1.2.840.113556.1.8000.2554"
	for _, g := range []string{u[0:4], u[4:8], u[8:12], u[12:16], u[16:20], u[20:26], u[26:32]} {
		n, _ := strconv.ParseUint(g, 16, 32)
		want += fmt.Sprintf(".%d", n)
	}
	if ca.OIDRootline.String() != want || ca.OIDStation.String() != want+".1" {
		t.Errorf("OIDRootline %v, OIDStation %v, want %s(.1)", ca.OIDRootline, ca.OIDStation, want)
	}
}

func TestStationRoundTrip(t *testing.T) {
	san, err := ca.MarshalStation("line-1.fixture-07", []string{"sku-a", "sku-b"})
	if err != nil {
		t.Fatal(err)
	}
	name, products, err := ca.ParseStation(san)
	if err != nil || name != "line-1.fixture-07" || !slices.Equal(products, []string{"sku-a", "sku-b"}) {
		t.Errorf("%s %v %v", name, products, err)
	}
	// Neither parser finds the other's name.
	if _, _, err := ca.ParseHardwareModuleName(san); !errors.Is(err, ca.ErrNoName) {
		t.Errorf("HardwareModuleName in a station SAN: %v", err)
	}
	hmn, _ := hex.DecodeString(hmnKAT)
	if _, _, err := ca.ParseStation(hmn); !errors.Is(err, ca.ErrNoName) {
		t.Errorf("station in an HMN SAN: %v", err)
	}
	for _, bad := range []struct {
		name     string
		products []string
	}{
		{"", []string{"a"}}, {"a b", []string{"a"}}, {"s", nil}, {"s", []string{""}},
		{"s", make([]string, ca.MaxStationProducts+1)}, {strings.Repeat("n", ca.MaxNameLen+1), []string{"a"}},
	} {
		if _, err := ca.MarshalStation(bad.name, bad.products); err == nil {
			t.Errorf("MarshalStation(%q, %q) succeeded", bad.name, bad.products)
		}
	}
	// A certificate without the SAN, or with two names.
	if _, _, err := ca.Station(&x509.Certificate{}); !errors.Is(err, ca.ErrNoName) {
		t.Errorf("no SAN: %v", err)
	}
	two, _ := asn1.Marshal([]asn1.RawValue{
		{FullBytes: mustHex(t, hmnKAT)[2:]}, {FullBytes: mustHex(t, hmnKAT)[2:]},
	})
	if _, _, err := ca.HardwareModuleName(&x509.Certificate{Extensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: two}}}); !errors.Is(err, ca.ErrNoName) {
		t.Errorf("two HardwareModuleNames: %v", err)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOIDCopies: the package's own copies equal the exported OIDs.
func TestOIDCopies(t *testing.T) {
	if ca.OIDStation.String() != ca.OIDRootline.String()+".1" {
		t.Errorf("OIDStation %v", ca.OIDStation)
	}
	san, _ := ca.MarshalStation("s", []string{"p"})
	hmn, _ := ca.MarshalHardwareModuleName(asn1.ObjectIdentifier{1, 2, 3}, []byte{1})
	for _, tc := range []struct {
		san []byte
		oid asn1.ObjectIdentifier
	}{{san, ca.OIDStation}, {hmn, ca.OIDHardwareModuleName}} {
		var names []asn1.RawValue
		asn1.Unmarshal(tc.san, &names)
		var on struct {
			ID asn1.ObjectIdentifier
			V  asn1.RawValue `asn1:"tag:0,explicit"`
		}
		if _, err := asn1.UnmarshalWithParams(names[0].FullBytes, &on, "tag:0"); err != nil || !on.ID.Equal(tc.oid) {
			t.Errorf("otherName type %v (%v), want %v", on.ID, err, tc.oid)
		}
	}
}
