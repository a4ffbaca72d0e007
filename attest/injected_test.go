package attest

import (
	"bytes"
	"crypto/x509"
	"testing"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/hsminject"
)

// injectedDevice is an emulated device of an injected identity, made by
// the real factory flow: the factory HSM (SoftHSM2 through package hsm)
// made its device key and wrapped it for the chip, the IDevID certifies
// that key, and the chip installed both (provision.Service.ProvisionInjected,
// device.InstallInjected); registered with the verifier through the export.
type injectedDevice struct {
	*device.Device
	ueid     []byte
	chain    [][]byte
	deviceID []byte // SPKI of the chip's DeviceID key
}

func (e *env) newInjectedDevice(osSVN uint64) *injectedDevice {
	t, ctx := e.t, e.ctx
	t.Helper()
	uri, _ := hsmtest.NewSoftHSM(t)
	m, err := hsm.Open(ctx, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	fw := e.images(osSVN)
	f := e.newFactory(fw, hsminject.New(m, nil))
	d, err := device.Init(ctx, t.TempDir(), &device.InitRequest{Product: product, RootKeyHash: e.vendor.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(ctx, fw); err != nil {
		t.Fatal(err)
	}
	nonce, err := f.svc.Nonce(ctx, f.station)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := d.TransportRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.ProvisionInjected(ctx, f.station, &provision.InjectedRequest{UEID: tr.UEID, Product: product, Lot: "lot-1",
		Evidence: tr.Evidence, TransportStatement: tr.TransportStatement, TransportSignature: tr.TransportSignature})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.InstallInjected(ctx, res.Key, res.Secrets, res.Chain); err != nil {
		t.Fatal(err)
	}
	if err := d.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Confirm(ctx, f.station, tr.UEID); err != nil {
		t.Fatal(err)
	}
	id, err := d.Chip().Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	devID, err := x509.MarshalPKIXPublicKey(id.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(res.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(leaf.RawSubjectPublicKeyInfo, devID) {
		t.Fatal("the IDevID certifies the DeviceID key, not the injected one")
	}
	f.publish(e)
	return &injectedDevice{Device: d, ueid: tr.UEID, chain: res.Chain, deviceID: devID}
}

func TestAttestInjected(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newInjectedDevice(2)
	rec := e.lookup(d.ueid)
	if rec.Kind != KindInjected || !bytes.Equal(rec.DeviceIDKey, d.deviceID) || rec.IAK != nil {
		t.Fatalf("the export gave the verifier %+v", rec)
	}
	for i := range 2 {
		res := e.attest(&Request{Evidence: e.evidence(d.Device)})
		if res.Status != StatusAffirming || len(res.Reasons) != 0 || res.Release != "r2" || !bytes.Equal(res.UEID, d.ueid) {
			t.Fatalf("attestation %d: %s %v", i, res.Status, res.Reasons)
		}
	}
	ver, err := e.v.Verify(e.ctx, &Request{Evidence: e.evidence(d.Device), IDevIDChain: rec.IDevIDChain})
	if err != nil {
		t.Fatal(err)
	}
	if ver.Kind() != KindInjected || !bytes.Equal(ver.IDevID().Raw, d.chain[0]) {
		t.Fatal("Verified does not report the injected device")
	}
}

// TestRefusalsInjected: records of an injected device that do not bind
// its DICE chain to its IDevID are refused, and change nothing.
func TestRefusalsInjected(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newInjectedDevice(2)
	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
		t.Fatalf("%s %v", res.Status, res.Reasons)
	}
	good := e.lookup(d.ueid)
	other := e.newDevice(2) // an emulated device of an on-chip identity
	records := map[string]struct {
		mutate func(r *DeviceRecord)
		want   Code
	}{
		// The registered DeviceID key swapped: the DICE chain is not the
		// registered chip's.
		"another DeviceID key": {func(r *DeviceRecord) { r.DeviceIDKey = otherSPKI(t) }, CodeIdentity},
		// The IDevID's key in its place (what a verifier that binds by
		// the IDevID's key would use): not the DICE chain's either.
		"the IDevID's key as DeviceID key": {func(r *DeviceRecord) {
			leaf, _ := x509.ParseCertificate(r.IDevIDChain[0])
			r.DeviceIDKey = leaf.RawSubjectPublicKeyInfo
		}, CodeIdentity},
		"no DeviceID key":     {func(r *DeviceRecord) { r.DeviceIDKey = nil }, CodeRecord},
		"bad DeviceID key":    {func(r *DeviceRecord) { r.DeviceIDKey = []byte{0x30, 0} }, CodeRecord},
		"registered as DICE":  {func(r *DeviceRecord) { r.Kind = KindDICE }, CodeIdentity},
		"registered as TPM":   {func(r *DeviceRecord) { r.Kind = KindTPM; r.IAK = otherIAK(t) }, CodeIdentity},
		"another IDevID":      {func(r *DeviceRecord) { r.IDevIDChain = other.chain }, CodeIdentity},
		"IDevID chain broken": {func(r *DeviceRecord) { r.IDevIDChain = r.IDevIDChain[:1] }, CodeChain},
	}
	for _, name := range sortedKeys(records) {
		tc := records[name]
		t.Run(name, func(t *testing.T) {
			bad := *good
			tc.mutate(&bad)
			e.devices.Put(&bad)
			defer e.devices.Put(good)
			checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, tc.want, false)
		})
	}
	// A DICE device registered as injected with its own DeviceID key is
	// still bound (the key is the DICE chain's); with another key it is not.
	r := e.lookup(other.ueid)
	certs, err := other.Certificates(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Kind, r.DeviceIDKey = KindInjected, certs[len(certs)-1].RawSubjectPublicKeyInfo
	e.devices.Put(r)
	if res := e.attest(&Request{Evidence: e.evidence(other.Device)}); res.Status != StatusAffirming {
		t.Fatalf("%s %v", res.Status, res.Reasons)
	}
	r.DeviceIDKey = otherSPKI(t)
	e.devices.Put(r)
	checkRefused(t, e, other.ueid, &Request{Evidence: e.evidence(other.Device)}, CodeIdentity, false)

	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
		t.Fatalf("after the refusals: %s %v", res.Status, res.Reasons)
	}
}

// TestDICERecord: a record of kind "dice" with the registered DeviceID key
// (a version 2 export) affirms when that key is the IDevID's, and is
// refused as an unusable record when it is not.
func TestDICERecord(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newDevice(2)
	r := e.lookup(d.ueid)
	r.Kind, r.DeviceIDKey = KindDICE, d.idevid.RawSubjectPublicKeyInfo
	e.devices.Put(r)
	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
		t.Fatalf("%s %v", res.Status, res.Reasons)
	}
	r.DeviceIDKey = otherSPKI(t)
	e.devices.Put(r)
	checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, CodeRecord, false)
}
