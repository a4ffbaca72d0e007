package export_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
)

// softIAK returns a TPMT_PUBLIC with an IAK's attributes (TCG "TPM 2.0 Keys
// for Device Identity and Attestation", §7.3.4) for a software P-256 key,
// and the UEID a TPM with that IAK reports.
func softIAK(t testing.TB) (area, ueid []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k.PublicKey.Bytes() // 04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	pub := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: pt[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: pt[33:]},
		}),
	}
	area = tpm2.Marshal(pub)
	iak, err := tpm.ParseIAKPublic(area)
	if err != nil {
		t.Fatal(err)
	}
	if ueid, err = tpm.UEID(iak); err != nil {
		t.Fatal(err)
	}
	return area, ueid
}

// kindFixture adds to a fixture a complete injected device (the IDevID
// certifies an HSM key, the registry keeps the DeviceID key) and a
// complete device on a TPM (with its IAK), both of sku-a.
type kinds struct {
	injected, tpm          []byte // UEIDs
	injectedKey, deviceKey []byte // SPKIs of the injected device
	iak                    []byte
}

func addKinds(t testing.TB, f *fixture) *kinds {
	t.Helper()
	ctx := context.Background()
	local, err := ca.NewLocal(&ca.LocalOptions{Root: f.h.Root, Products: f.h.Products})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ueid []byte, key *ecdsa.PrivateKey) {
		iss, err := local.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, CSR: catest.CSR(t, key, pkix.Name{})})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.reg.MarkIssued(ctx, ueid, iss.Certificate.Raw, iss.Certificate.SerialNumber); err != nil {
			t.Fatal(err)
		}
		if _, err := f.reg.Complete(ctx, ueid); err != nil {
			t.Fatal(err)
		}
		f.certs[string(ueid)] = iss.Certificate
		f.state[string(ueid)] = registry.Complete
	}
	k := &kinds{injected: catest.UEID(t)}
	dev, hsm := catest.Key(t), catest.Key(t)
	k.deviceKey, _ = x509.MarshalPKIXPublicKey(dev.Public())
	k.injectedKey, _ = x509.MarshalPKIXPublicKey(hsm.Public())
	if _, err := f.reg.Reserve(ctx, &registry.ReserveRequest{UEID: k.injected, PublicKey: k.deviceKey, Product: "sku-a",
		Lot: "lot-1", Station: "st-1", InjectLabel: "inject-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.SetInjectedKey(ctx, k.injected, k.injectedKey); err != nil {
		t.Fatal(err)
	}
	issue(k.injected, hsm)

	k.iak, k.tpm = softIAK(t)
	idevid := catest.Key(t)
	spki, _ := x509.MarshalPKIXPublicKey(idevid.Public())
	if _, err := f.reg.Reserve(ctx, &registry.ReserveRequest{UEID: k.tpm, PublicKey: spki, Product: "sku-a",
		Lot: "lot-1", Station: "st-1", TPMIAK: k.iak}); err != nil {
		t.Fatal(err)
	}
	issue(k.tpm, idevid)
	return k
}

func TestWriteReadKinds(t *testing.T) {
	f := newFixture(t, 1, 1)
	k := addKinds(t, f)
	e, err := export.Read(bytes.NewReader(f.write(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != export.Version {
		t.Fatalf("version %d", e.Version)
	}
	seen := 0
	for _, d := range e.Devices {
		leaf, _ := x509.MarshalPKIXPublicKey(d.Chain[0].PublicKey)
		switch {
		case bytes.Equal(d.UEID, k.injected):
			seen++
			if d.Kind != export.KindInjected || !bytes.Equal(d.DeviceIDKey, k.deviceKey) || !bytes.Equal(leaf, k.injectedKey) || d.IAK != nil {
				t.Errorf("injected device: %+v", d)
			}
		case bytes.Equal(d.UEID, k.tpm):
			seen++
			if d.Kind != export.KindTPM || !bytes.Equal(d.DeviceIDKey, leaf) || !bytes.Equal(d.IAK, k.iak) {
				t.Errorf("TPM device: %+v", d)
			}
		default:
			if d.Kind != export.KindDICE || !bytes.Equal(d.DeviceIDKey, leaf) || d.IAK != nil {
				t.Errorf("DICE device %x: kind %q", d.UEID, d.Kind)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("%d of the injected and TPM devices exported", seen)
	}
}

// TestReadVersions: a version 1 document (without the keys) reads, with
// no kind; one with the version 2 members, or a version 2 without them,
// does not; each key is checked.
func TestReadVersions(t *testing.T) {
	f := newFixture(t, 2, 0)
	k := addKinds(t, f)
	good := f.write(t, nil)
	index := func(d *doc, ueid []byte) int {
		for i, dev := range d.Devices {
			if dev["ueid"] == hexOf(ueid) {
				return i
			}
		}
		t.Fatalf("no device %x", ueid)
		return -1
	}
	dice := func(d *doc) int {
		for i, dev := range d.Devices {
			if dev["kind"] == "dice" {
				return i
			}
		}
		t.Fatal("no DICE device")
		return -1
	}
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
	v1 := func(d *doc) {
		d.Version = 1
		for _, dev := range d.Devices {
			delete(dev, "kind")
			delete(dev, "deviceIDKey")
			delete(dev, "iak")
		}
	}
	e, err := export.Read(bytes.NewReader(mutate(v1)))
	if err != nil {
		t.Fatalf("version 1: %v", err)
	}
	for _, d := range e.Devices {
		if d.Kind != "" || d.DeviceIDKey != nil || d.IAK != nil {
			t.Fatalf("version 1 device %x has kind %q and keys", d.UEID, d.Kind)
		}
	}
	otherKey := base64.StdEncoding.EncodeToString(k.deviceKey)
	otherIAK, _ := softIAK(t)
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"version 3":           {mutate(func(d *doc) { d.Version = 3 }), export.ErrVersion},
		"version 1 with kind": {mutate(func(d *doc) { v1(d); d.Devices[0]["kind"] = "dice" }), export.ErrFormat},
		"version 1 with key":  {mutate(func(d *doc) { v1(d); d.Devices[0]["deviceIDKey"] = otherKey }), export.ErrFormat},
		"no kind":             {mutate(func(d *doc) { delete(d.Devices[0], "kind") }), export.ErrFormat},
		"unknown kind":        {mutate(func(d *doc) { d.Devices[0]["kind"] = "pluton" }), export.ErrFormat},
		"no key":              {mutate(func(d *doc) { delete(d.Devices[0], "deviceIDKey") }), export.ErrFormat},
		"key not base64":      {mutate(func(d *doc) { d.Devices[0]["deviceIDKey"] = "!!" }), export.ErrFormat},
		"key too long": {mutate(func(d *doc) {
			d.Devices[0]["deviceIDKey"] = base64.StdEncoding.EncodeToString(make([]byte, export.MaxKeySize+3))
		}), export.ErrFormat},
		"key not a key":         {mutate(func(d *doc) { d.Devices[0]["deviceIDKey"] = "AAAA" }), export.ErrIdentity},
		"dice key not IDevID's": {mutate(func(d *doc) { d.Devices[dice(d)]["deviceIDKey"] = otherKey }), export.ErrIdentity},
		"tpm key not IDevID's":  {mutate(func(d *doc) { d.Devices[index(d, k.tpm)]["deviceIDKey"] = otherKey }), export.ErrIdentity},
		"injected as dice":      {mutate(func(d *doc) { d.Devices[index(d, k.injected)]["kind"] = "dice" }), export.ErrIdentity},
		"injected with an IAK":  {mutate(func(d *doc) { d.Devices[index(d, k.injected)]["iak"] = d.Devices[index(d, k.tpm)]["iak"] }), export.ErrFormat},
		"tpm without IAK":       {mutate(func(d *doc) { delete(d.Devices[index(d, k.tpm)], "iak") }), export.ErrFormat},
		"tpm IAK not base64":    {mutate(func(d *doc) { d.Devices[index(d, k.tpm)]["iak"] = "!!" }), export.ErrFormat},
		"tpm IAK not an IAK":    {mutate(func(d *doc) { d.Devices[index(d, k.tpm)]["iak"] = "AAAA" }), export.ErrIdentity},
		"tpm another IAK":       {mutate(func(d *doc) { d.Devices[index(d, k.tpm)]["iak"] = base64.StdEncoding.EncodeToString(otherIAK) }), export.ErrIdentity},
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

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
