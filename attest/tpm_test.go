package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
	"github.com/rootline/rootline/provision"
)

// tpmDevice is a device on a TPM (swtpm), provisioned by the factory
// (provision.Service.ProvisionTPM), holding its IDevID chain, and
// registered with the verifier through the registry export.
type tpmDevice struct {
	*device.Device
	ueid  []byte
	chain [][]byte
}

// newTPMDevice makes a device on a fresh swtpm that booted OS SVN osSVN,
// through the whole factory flow. The env's vendor must sign with ECDSA
// P-256, so that the layer digests are of the quoted SHA-256 bank.
func (e *env) newTPMDevice(osSVN uint64) *tpmDevice {
	t, ctx := e.t, e.ctx
	t.Helper()
	fw := e.images(osSVN)
	f := e.newFactory(fw, nil)
	sw := tpmtest.Start(t)
	d, err := device.InitTPM(ctx, t.TempDir(), &device.InitRequest{Product: product, RootKeyHash: e.vendor.RootHash}, &device.TPMOptions{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	// The factory boots the same firmware the device runs in the field:
	// a TPM's PCRs take another boot only after a TPM reset.
	if _, err := d.Boot(ctx, fw); err != nil {
		t.Fatal(err)
	}
	nonce, err := f.svc.Nonce(ctx, f.station)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := d.FactoryRequestTPM(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.ProvisionTPM(ctx, f.station, &provision.TPMRequest{
		Request:   provision.Request{UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: product, Lot: "lot-1"},
		IAKPublic: fr.IAKPublic, IDevIDPublic: fr.IDevIDPublic,
		CertifyAttest: fr.CertifyAttest, CertifySignature: fr.CertifySignature,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.InstallIdentity(ctx, res.Chain); err != nil {
		t.Fatal(err)
	}
	if err := d.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Confirm(ctx, f.station, fr.UEID); err != nil {
		t.Fatal(err)
	}
	rec, err := f.reg.Get(ctx, fr.UEID)
	if err != nil || !bytes.Equal(rec.TPMIAK, fr.IAKPublic) {
		t.Fatalf("the registry did not record the IAK: %v", err)
	}
	f.publish(e)
	return &tpmDevice{Device: d, ueid: fr.UEID, chain: res.Chain}
}

// resign signs claims as the device would, with its TPM's IDevID key and
// its IDevID chain: evidence the device's software could make.
func (d *tpmDevice) resign(t testing.TB, c *evidence.Claims) []byte {
	t.Helper()
	signer, err := d.TPM().IDevIDSigner(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := evidence.Sign(rand.Reader, signer, pluton.ECDSAP256, c, d.chain)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func claimsOf(t testing.TB, tok []byte) *evidence.Claims {
	t.Helper()
	p, err := evidence.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	return p.Claims
}

func TestAttestTPM(t *testing.T) {
	e := newEnv(t, &envOptions{vendorAlg: pluton.ECDSAP256})
	d := e.newTPMDevice(2)
	if r := e.lookup(d.ueid); r.Kind != KindTPM || r.IAK == nil || r.DeviceIDKey == nil {
		t.Fatalf("the export gave the verifier %+v", r)
	}
	for i := range 2 { // the second with the IDevID chain cached
		res := e.attest(&Request{Evidence: e.evidence(d.Device)})
		if res.Status != StatusAffirming || len(res.Reasons) != 0 || res.Release != "r2" || !bytes.Equal(res.UEID, d.ueid) {
			t.Fatalf("attestation %d: %s %v %+v", i, res.Status, res.Reasons, res)
		}
	}
	ver, err := e.v.Verify(e.ctx, &Request{Evidence: e.evidence(d.Device), IDevIDChain: e.lookup(d.ueid).IDevIDChain})
	if err != nil {
		t.Fatal(err)
	}
	if ver.Kind() != KindTPM || ver.IDevID().SerialNumber == nil || !bytes.Equal(ver.Chain()[0].Raw, d.chain[0]) {
		t.Fatal("Verified does not report the device on a TPM")
	}
	st, err := e.store.State(e.ctx, d.ueid)
	if err != nil || st == nil || st.SVNs["os"] != 2 {
		t.Fatalf("state %+v, %v", st, err)
	}
}

// TestRefusalsTPM: evidence of a device on a TPM that its software could
// make (signed by the IDevID key, which any software on the device may
// use) but that the TPM did not vouch for, and records that do not fit.
// Each is refused with its code and changes nothing.
func TestRefusalsTPM(t *testing.T) {
	e := newEnv(t, &envOptions{vendorAlg: pluton.ECDSAP256})
	d := e.newTPMDevice(2)
	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
		t.Fatalf("%s %v", res.Status, res.Reasons)
	}
	good := e.lookup(d.ueid)
	// fresh returns the claims of a fresh token of the device.
	fresh := func() *evidence.Claims { return claimsOf(t, e.evidence(d.Device)) }
	bank := device.EvidenceBank

	t.Run("tampered register", func(t *testing.T) {
		// A register the quote covers, and no event log to contradict it:
		// the quote's pcrDigest does not match.
		c := fresh()
		c.Registers[bank][1] = bytes.Repeat([]byte{0xee}, bank.Size())
		c.EventLog = nil
		checkRefused(t, e, d.ueid, &Request{Evidence: d.resign(t, c)}, CodeQuote, false)
	})
	t.Run("tampered register and log", func(t *testing.T) {
		c := fresh()
		c.Registers[bank][1] = bytes.Repeat([]byte{0xee}, bank.Size())
		checkRefused(t, e, d.ueid, &Request{Evidence: d.resign(t, c)}, CodeEventLog, false)
	})
	t.Run("tampered quote", func(t *testing.T) {
		c := fresh()
		c.TPMQuote.Attest[len(c.TPMQuote.Attest)-1] ^= 1
		checkRefused(t, e, d.ueid, &Request{Evidence: d.resign(t, c)}, CodeQuote, false)
	})
	t.Run("quote of another nonce", func(t *testing.T) {
		old, c := fresh(), fresh()
		c.TPMQuote = old.TPMQuote
		checkRefused(t, e, d.ueid, &Request{Evidence: d.resign(t, c)}, CodeQuote, false)
	})
	t.Run("quote of fewer PCRs", func(t *testing.T) {
		c := fresh()
		c.TPMQuote.PCRs = c.TPMQuote.PCRs[:1]
		checkRefused(t, e, d.ueid, &Request{Evidence: d.resign(t, c)}, CodeQuote, false)
	})
	t.Run("no quote", func(t *testing.T) {
		c := fresh()
		c.TPMQuote = nil
		checkRefused(t, e, d.ueid, &Request{Evidence: d.resign(t, c)}, CodeQuote, false)
	})
	t.Run("layer not quoted", func(t *testing.T) {
		// The software claims a layer digest the TPM never measured.
		c := fresh()
		c.Layers[1].Digest = bytes.Repeat([]byte{0x11}, len(c.Layers[1].Digest))
		checkRefused(t, e, d.ueid, &Request{Evidence: d.resign(t, c)}, CodeQuote, false)
	})
	t.Run("x5chain without its root", func(t *testing.T) {
		signer, err := d.TPM().IDevIDSigner(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := evidence.Sign(rand.Reader, signer, pluton.ECDSAP256, fresh(), d.chain[:2])
		if err != nil {
			t.Fatal(err)
		}
		checkRefused(t, e, d.ueid, &Request{Evidence: tok}, CodeChain, false)
	})

	// Records that do not fit the device; the good one put back after each.
	records := map[string]struct {
		mutate func(r *DeviceRecord)
		want   Code
	}{
		"another IAK": {func(r *DeviceRecord) { r.IAK = otherIAK(t) }, CodeIdentity},
		"no IAK":      {func(r *DeviceRecord) { r.IAK = nil }, CodeRecord},
		"bad IAK":     {func(r *DeviceRecord) { r.IAK = r.IAK[:len(r.IAK)-1] }, CodeRecord},
		"IAK not restricted": {func(r *DeviceRecord) {
			a, err := tpm2.Unmarshal[tpm2.TPMTPublic](r.IAK)
			if err != nil {
				t.Fatal(err)
			}
			a.ObjectAttributes.Restricted = false
			r.IAK = tpm2.Marshal(a)
		}, CodeRecord},
		"another DeviceID key":   {func(r *DeviceRecord) { r.DeviceIDKey = otherSPKI(t) }, CodeRecord},
		"registered as DICE":     {func(r *DeviceRecord) { r.Kind = KindDICE }, CodeIdentity},
		"registered as injected": {func(r *DeviceRecord) { r.Kind = KindInjected }, CodeIdentity},
		"unknown kind":           {func(r *DeviceRecord) { r.Kind = "pluton" }, CodeRecord},
		"another IDevID": {func(r *DeviceRecord) {
			other := e.newDevice(2) // an emulated device's IDevID chain
			r.IDevIDChain = other.chain
		}, CodeIdentity},
	}
	for _, name := range sortedKeys(records) {
		tc := records[name]
		t.Run(name, func(t *testing.T) {
			bad := *good
			bad.IAK, bad.IDevIDChain = bytes.Clone(good.IAK), slices.Clone(good.IDevIDChain)
			tc.mutate(&bad)
			e.devices.Put(&bad)
			defer e.devices.Put(good)
			checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, tc.want, false)
		})
	}

	// The device still attests, from the state it had.
	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
		t.Fatalf("after the refusals: %s %v", res.Status, res.Reasons)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// otherIAK returns the TPMT_PUBLIC of an IAK of no TPM: a software key
// with an IAK's attributes.
func otherIAK(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	area := tpm2.Marshal(tpm2.TPMTPublic{
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
	})
	if _, err := tpm.ParseIAKPublic(area); err != nil {
		t.Fatal(err)
	}
	return area
}

func otherSPKI(t testing.TB) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}
