package provision

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/translog"
)

// These tests run both identities side by side in one Service: sku-a's
// chips make their own key (Provision), sku-b's get one from a SoftHSM2
// token (ProvisionInjected), through the real CA, registry (SQLite and
// PostgreSQL), log, and emulated chips.

// NewHSMInjectorForTest is set by hsminject_test.go (package
// provision_test, which may import provision/hsminject without a cycle).
var NewHSMInjectorForTest func(*hsm.Module) Injector

var secretNames = []string{"fleet-key", "wifi-psk"}

// testInjector wraps the real Injector to count what it makes and to play
// failures: a missing mechanism, or a crash right after InjectKey.
type testInjector struct {
	Injector
	injected atomic.Int64
	mu       sync.Mutex
	// fail, when set, is returned by InjectKey and WrapKey instead of
	// calling the HSM.
	fail error
	// crashAfterInject makes InjectKey make the key and then fail, as a
	// process that dies before recording it.
	crashAfterInject bool
}

func (ti *testInjector) set(fail error, crash bool) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.fail, ti.crashAfterInject = fail, crash
}

func (ti *testInjector) state() (error, bool) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.fail, ti.crashAfterInject
}

func (ti *testInjector) InjectKey(ctx context.Context, req *InjectKeyRequest) (*WrappedKey, error) {
	fail, crash := ti.state()
	if fail != nil {
		return nil, fail
	}
	wk, err := ti.Injector.InjectKey(ctx, req)
	if err == nil {
		ti.injected.Add(1)
	}
	if err == nil && crash {
		return nil, errors.New("test: crashed after InjectKey")
	}
	return wk, err
}

func (ti *testInjector) WrapKey(ctx context.Context, req *InjectKeyRequest) (*WrappedKey, error) {
	if fail, _ := ti.state(); fail != nil {
		return nil, fail
	}
	return ti.Injector.WrapKey(ctx, req)
}

// hsmEnv is the factory HSM of the injected product.
type hsmEnv struct {
	m       *hsm.Module
	pinFile string
	inj     *testInjector
}

func newHSMEnv(t testing.TB) *hsmEnv {
	t.Helper()
	uri, pinFile := hsmtest.NewSoftHSM(t)
	m, err := hsm.Open(context.Background(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if NewHSMInjectorForTest == nil {
		t.Fatal("provision/hsminject is not linked in (hsminject_test.go)")
	}
	return &hsmEnv{m: m, pinFile: pinFile, inj: &testInjector{Injector: NewHSMInjectorForTest(m)}}
}

// labels returns the labels of the private keys on the token.
func (h *hsmEnv) labels(t testing.TB) []string {
	t.Helper()
	keys, err := h.m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, k.Label)
	}
	return out
}

// listObjects is pkcs11-tool's view of the token.
func (h *hsmEnv) listObjects(t testing.TB) string {
	t.Helper()
	tool := testdep.LookPath(t, "pkcs11-tool")
	module, err := hsm.FindSoftHSM()
	if err != nil {
		t.Fatal(err)
	}
	pin, err := os.ReadFile(h.pinFile)
	if err != nil {
		t.Fatal(err)
	}
	// pkcs11-tool takes the PIN on its command line; acceptable in a test.
	out, err := exec.Command(tool, "--module", module, "--token-label", hsmtest.Label,
		"--login", "--pin", strings.TrimSpace(string(pin)), "--list-objects").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	return string(out)
}

// mixedEnv is env with sku-b injected.
type mixedEnv struct {
	*env
	hsm      *hsmEnv
	vb       *vendor
	fwb      *device.Images
	stationB Station
}

func newMixedEnv(t testing.TB, open opener) *mixedEnv {
	t.Helper()
	ctx := context.Background()
	e := &mixedEnv{env: newEnvOn(t, open), hsm: newHSMEnv(t)}
	e.stationB = Station{Name: "st-b", Products: []string{"sku-b"}}
	master, err := e.hsm.m.CreateSecretMaster(ctx, "sku-b-master")
	if err != nil {
		t.Fatal(err)
	}
	e.vb = newVendor(t, "sku-b")
	e.fwb = e.vb.testFirmware(t, "factory test app b")
	ms, err := e.chipB(t).Manifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]LayerReference{}
	for _, m := range ms {
		refs[string(m.Layer)] = LayerReference{Digests: [][]byte{m.Digest}, MinSVN: 1}
	}
	a := e.svc.products["sku-a"]
	b := *e.svc.products["sku-b"]
	b.ReferenceValues = refs
	b.Identity = Injected
	b.Injection = &InjectionPolicy{Injector: e.hsm.inj, SecretMaster: master.String(), Secrets: secretNames}
	e.svc, err = New(&Config{
		Registry: e.reg, Issuer: e.issuer, Log: e.log,
		Products: map[string]*ProductPolicy{"sku-a": a, "sku-b": &b},
		NonceKey: bytes.Repeat([]byte{7}, 32), Now: func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// chipB makes a chip of sku-b booted with its test firmware.
func (e *mixedEnv) chipB(t testing.TB) *device.Device {
	t.Helper()
	d, err := device.Init(context.Background(), t.TempDir(), &device.InitRequest{Product: e.vb.Product, RootKeyHash: e.vb.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(context.Background(), e.fwb); err != nil {
		t.Fatal(err)
	}
	return d
}

// injectedRequest has chip d answer a fresh nonce of station B.
func (e *mixedEnv) injectedRequest(t testing.TB, d *device.Device) *InjectedRequest {
	t.Helper()
	ctx := context.Background()
	nonce, err := e.svc.Nonce(ctx, e.stationB)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := d.TransportRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return &InjectedRequest{UEID: tr.UEID, Product: "sku-b", Lot: "lot-b", Evidence: tr.Evidence,
		TransportStatement: tr.TransportStatement, TransportSignature: tr.TransportSignature}
}

// refusedInjected checks that a request fails with want and that nothing
// was issued, logged or made in the HSM.
func (e *mixedEnv) refusedInjected(t *testing.T, req *InjectedRequest, want error) error {
	t.Helper()
	i0, l0 := e.counts(t)
	k0 := e.hsm.inj.injected.Load()
	res, err := e.svc.ProvisionInjected(context.Background(), e.stationB, req)
	if !errors.Is(err, want) {
		t.Fatalf("ProvisionInjected: %v (result %v), want %v", err, res, want)
	}
	if i1, l1 := e.counts(t); i1 != i0 || l1 != l0 {
		t.Fatalf("refused request issued %d and logged %d", i1-i0, l1-l0)
	}
	if k1 := e.hsm.inj.injected.Load(); k1 != k0 {
		t.Fatalf("refused request made %d keys in the HSM", k1-k0)
	}
	return err
}

// untouched checks that chip d has nothing installed and is still in
// Manufacturing.
func untouched(t *testing.T, d *device.Device) {
	t.Helper()
	ctx := context.Background()
	if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Manufacturing {
		t.Fatalf("lifecycle %v", lc)
	}
	if keys, err := d.Chip().Keys(ctx, device.InjectedKeyCompartment); err != nil || len(keys) != 0 {
		t.Fatalf("keys installed: %v, %v", keys, err)
	}
	for _, n := range secretNames {
		if _, err := d.Chip().Secret(ctx, device.InjectedKeyCompartment, n); !errors.Is(err, soft.ErrNoSuchSecret) {
			t.Fatalf("secret %q: %v", n, err)
		}
	}
	if _, err := d.Identity(ctx); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("identity installed: %v", err)
	}
}

func signsAs(t *testing.T, d *device.Device, leaf *x509.Certificate) {
	t.Helper()
	s, err := d.IdentitySigner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msg := sha256.Sum256([]byte("802.1X"))
	sig, err := s.Sign(nil, msg[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(leaf.PublicKey.(*ecdsa.PublicKey), msg[:], sig) {
		t.Fatal("the identity key's signature does not verify with the IDevID")
	}
}

func TestInjectedEndToEnd(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newMixedEnv(t, open)

		// The on-chip product, alongside.
		da := e.chip(t, e.fw)
		ra := e.request(t, da, e.station)
		resA, err := e.svc.Provision(ctx, e.station, ra)
		if err != nil {
			t.Fatal(err)
		}
		if err := da.InstallIdentity(ctx, resA.Chain); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Confirm(ctx, e.station, ra.UEID); err != nil {
			t.Fatal(err)
		}
		signsAs(t, da, mustCert(t, resA.Chain[0]))
		if rec, _ := e.reg.Get(ctx, ra.UEID); rec.Injected != nil {
			t.Fatalf("on-chip record has an injected key: %+v", rec.Injected)
		}

		// The injected product.
		d := e.chipB(t)
		req := e.injectedRequest(t, d)
		res, err := e.svc.ProvisionInjected(ctx, e.stationB, req)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Issued || len(res.Key) == 0 || len(res.Secrets) != len(secretNames) || len(res.Chain) != 3 {
			t.Fatalf("result: issued %v, key %d bytes, %d secrets, chain of %d", res.Issued, len(res.Key), len(res.Secrets), len(res.Chain))
		}
		leaf := mustCert(t, res.Chain[0])
		inter := x509.NewCertPool()
		inter.AddCert(e.h.Products[1].Certificate)
		roots := x509.NewCertPool()
		roots.AddCert(e.h.Root)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
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
		if bytes.Equal(leaf.RawSubjectPublicKeyInfo, devID) {
			t.Fatal("the IDevID certifies the DeviceID key, not the injected one")
		}
		// The registry: the DeviceID key as the chip's key (clones), the
		// injected key next to it, the label before anything else.
		rec, err := e.reg.Get(ctx, req.UEID)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != registry.Issued || !bytes.Equal(rec.PublicKey, devID) || rec.Injected == nil ||
			rec.Injected.Label != injectLabel(req.UEID) || !bytes.Equal(rec.Injected.PublicKey, leaf.RawSubjectPublicKeyInfo) ||
			!rec.Injected.DestroyedAt.IsZero() || !bytes.Equal(rec.Certificate, res.Chain[0]) {
			t.Fatalf("record %+v, injected %+v", rec, rec.Injected)
		}
		// The log has it.
		head, err := e.log.TreeHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tree, err := translog.OpenTreeHead(e.verifier, head)
		if err != nil {
			t.Fatal(err)
		}
		proof, err := e.log.InclusionProof(ctx, res.LogIndex, tree.N)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := translog.VerifyInclusion(e.verifier, head, res.Chain[0], res.LogIndex, proof); err != nil {
			t.Fatal(err)
		}

		// A retry before the chip installs: the same certificate, the
		// same key wrapped again.
		res2, err := e.svc.ProvisionInjected(ctx, e.stationB, e.injectedRequest(t, d))
		if err != nil {
			t.Fatal(err)
		}
		if res2.Issued || !bytes.Equal(res2.Chain[0], res.Chain[0]) || res2.LogIndex != res.LogIndex ||
			len(res2.Key) == 0 || bytes.Equal(res2.Key, res.Key) || len(res2.Secrets) != len(secretNames) {
			t.Fatalf("retry: issued %v, same cert %v, index %d/%d, key %d bytes (same %v)", res2.Issued,
				bytes.Equal(res2.Chain[0], res.Chain[0]), res2.LogIndex, res.LogIndex, len(res2.Key), bytes.Equal(res2.Key, res.Key))
		}

		// The chip installs the first answer, then (a station's retry)
		// the second: the same key, so a no-op.
		if err := d.InstallInjected(ctx, res.Key, res.Secrets, res.Chain); err != nil {
			t.Fatal(err)
		}
		if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Provisioned {
			t.Fatalf("lifecycle %v", lc)
		}
		before, err := os.ReadFile(d.Chip().Path())
		if err != nil {
			t.Fatal(err)
		}
		if err := d.InstallInjected(ctx, res2.Key, res2.Secrets, res2.Chain); err != nil {
			t.Fatalf("installing the re-wrapped key: %v", err)
		}
		if after, _ := os.ReadFile(d.Chip().Path()); !bytes.Equal(before, after) {
			t.Fatal("installing the re-wrapped key changed the chip")
		}
		keys, err := d.Chip().Keys(ctx, device.InjectedKeyCompartment)
		if err != nil || len(keys) != 1 || keys[0].Label != DefaultInjectedKeyName {
			t.Fatalf("keys %v, %v", keys, err)
		}
		signsAs(t, d, leaf)
		for _, n := range secretNames {
			v, err := d.Chip().Secret(ctx, device.InjectedKeyCompartment, n)
			if err != nil || len(v) != 32 {
				t.Fatalf("secret %q: %d bytes, %v", n, len(v), err)
			}
		}
		// The DICE chain still grows from the DeviceID: evidence still
		// verifies, anchored by the DeviceID certificate.
		tr, err := d.TransportRequest(ctx, bytes.Repeat([]byte{1}, 16))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := soft.VerifyTransportKey(tr.TransportStatement, tr.TransportSignature, id.DeviceID, bytes.Repeat([]byte{1}, 16)); err != nil {
			t.Fatal(err)
		}

		// The station confirms: the HSM's copy goes.
		if !slicesContains(e.hsm.labels(t), injectLabel(req.UEID)) {
			t.Fatal("the device key is not on the HSM before Confirm")
		}
		if err := e.svc.Confirm(ctx, e.stationB, req.UEID); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Confirm(ctx, e.stationB, req.UEID); err != nil {
			t.Fatalf("second Confirm: %v", err)
		}
		if slicesContains(e.hsm.labels(t), injectLabel(req.UEID)) {
			t.Fatal("the device key is still on the HSM after Confirm")
		}
		if out := e.hsm.listObjects(t); strings.Contains(out, injectLabelPrefix) || strings.Contains(out, "Private Key Object") {
			t.Fatalf("pkcs11-tool still shows an injected key:\n%s", out)
		}
		rec, err = e.reg.Get(ctx, req.UEID)
		if err != nil || rec.State != registry.Complete || rec.Injected.DestroyedAt.IsZero() {
			t.Fatalf("record %+v, %v", rec, err)
		}

		// A retry after Confirm: the certificate, no blob.
		res3, err := e.svc.ProvisionInjected(ctx, e.stationB, e.injectedRequest(t, d))
		if err != nil {
			t.Fatal(err)
		}
		if res3.Issued || !bytes.Equal(res3.Chain[0], res.Chain[0]) || res3.Key != nil || res3.Secrets != nil {
			t.Fatalf("retry after Confirm: issued %v, key %d bytes, %d secrets", res3.Issued, len(res3.Key), len(res3.Secrets))
		}

		// A replay of the old blob after confirmation: a no-op on the chip
		// (it holds that key already), refused in any other slot (the
		// chip is Provisioned), and by any other chip.
		if err := d.InstallInjected(ctx, res.Key, res.Secrets, res.Chain); err != nil {
			t.Fatalf("replaying the installed blob: %v", err)
		}
		if after, _ := os.ReadFile(d.Chip().Path()); !bytes.Equal(before, after) {
			t.Fatal("replaying the old blob changed the chip")
		}
		var le *pluton.LifecycleError
		if _, err := d.Chip().InstallWrappedKey(ctx, res.Key, pluton.App("x"), leaf.PublicKey); !errors.As(err, &le) {
			t.Fatalf("old blob in another slot after confirmation: %v", err)
		}
		other := e.chipB(t)
		if err := other.InstallInjected(ctx, res.Key, res.Secrets, res.Chain); !errors.Is(err, device.ErrIdentity) {
			t.Fatalf("old blob and chain on another chip: %v", err)
		}
		if _, err := other.Chip().InstallWrappedKey(ctx, res.Key, device.InjectedKeyCompartment, leaf.PublicKey); !errors.Is(err, soft.ErrWrongChip) {
			t.Fatalf("old blob on another chip: %v", err)
		}
		untouched(t, other)

		// One certificate per chip, each logged once.
		if i, l := e.counts(t); i != 2 || l != 2 {
			t.Fatalf("issued %d, logged %d; want 2 and 2", i, l)
		}
	})
}

func mustCert(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestInjectedRefused(t *testing.T) {
	ctx := context.Background()
	e := newMixedEnv(t, openSQLite)

	t.Run("identity mismatch", func(t *testing.T) {
		// The on-chip call for an injected product, and the reverse.
		d := e.chipB(t)
		nonce, _ := e.svc.Nonce(ctx, e.stationB)
		f, err := d.FactoryRequest(ctx, nonce)
		if err != nil {
			t.Fatal(err)
		}
		e.refused(t, e.stationB, &Request{UEID: f.UEID, CSR: f.CSR, Evidence: f.Evidence, Product: "sku-b", Lot: "lot-b"}, ErrBadRequest)
		da := e.chip(t, e.fw)
		ra := e.request(t, da, e.station)
		nonce, _ = e.svc.Nonce(ctx, e.station)
		tr, err := da.TransportRequest(ctx, nonce)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.ProvisionInjected(ctx, e.station, &InjectedRequest{UEID: ra.UEID, Product: "sku-a", Lot: "lot-1",
			Evidence: tr.Evidence, TransportStatement: tr.TransportStatement, TransportSignature: tr.TransportSignature}); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("ProvisionInjected for an on-chip product: %v", err)
		}
	})

	t.Run("statement signed by another chip", func(t *testing.T) {
		d, c := e.chipB(t), e.chipB(t)
		nonce, _ := e.svc.Nonce(ctx, e.stationB)
		tr, err := d.TransportRequest(ctx, nonce)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := c.Chip().TransportKey(ctx, soft.TransportP256, nonce)
		if err != nil {
			t.Fatal(err)
		}
		req := &InjectedRequest{UEID: tr.UEID, Product: "sku-b", Lot: "lot-b", Evidence: tr.Evidence,
			TransportStatement: tc.Statement, TransportSignature: tc.Signature}
		if err := e.refusedInjected(t, req, ErrTransportKey); !errors.Is(err, soft.ErrStatement) {
			t.Fatalf("%v: not a statement error", err)
		}
		untouched(t, d)
	})

	t.Run("statement over another nonce", func(t *testing.T) {
		d := e.chipB(t)
		n1, _ := e.svc.Nonce(ctx, e.stationB)
		n2, _ := e.svc.Nonce(ctx, e.stationB)
		tr, err := d.TransportRequest(ctx, n1)
		if err != nil {
			t.Fatal(err)
		}
		tk, err := d.Chip().TransportKey(ctx, soft.TransportP256, n2)
		if err != nil {
			t.Fatal(err)
		}
		tr.TransportStatement, tr.TransportSignature = tk.Statement, tk.Signature
		err = e.refusedInjected(t, &InjectedRequest{UEID: tr.UEID, Product: "sku-b", Lot: "lot-b", Evidence: tr.Evidence,
			TransportStatement: tr.TransportStatement, TransportSignature: tr.TransportSignature}, ErrTransportKey)
		if !errors.Is(err, soft.ErrStatement) {
			t.Fatalf("%v: not a statement error", err)
		}
		untouched(t, d)
	})

	t.Run("HSM lacking a mechanism", func(t *testing.T) {
		d := e.chipB(t)
		e.hsm.inj.set(&hsm.MissingMechanismError{Op: "inject key", Mechanism: 0x2109, Name: "CKM_AES_KEY_WRAP_PAD",
			Token: hsmtest.Label, Reason: "is not offered (C_GetMechanismList)"}, false)
		req := e.injectedRequest(t, d)
		err := e.refusedInjected(t, req, ErrInjection)
		e.hsm.inj.set(nil, false)
		var me *hsm.MissingMechanismError
		if !errors.Is(err, hsm.ErrMechanismUnsupported) || !errors.As(err, &me) {
			t.Fatalf("%v: not a missing-mechanism error", err)
		}
		if slicesContains(e.hsm.labels(t), injectLabel(req.UEID)) {
			t.Fatal("a key was left on the HSM")
		}
		untouched(t, d)
		// The same chip once the HSM is fixed.
		res, err := e.svc.ProvisionInjected(ctx, e.stationB, e.injectedRequest(t, d))
		if err != nil || !res.Issued || res.Key == nil {
			t.Fatalf("after the HSM is fixed: %v", err)
		}
	})

	t.Run("orphan key after a crash", func(t *testing.T) {
		d := e.chipB(t)
		e.hsm.inj.set(nil, true)
		req := e.injectedRequest(t, d)
		i0, l0 := e.counts(t)
		if _, err := e.svc.ProvisionInjected(ctx, e.stationB, req); err == nil {
			t.Fatal("no crash")
		}
		e.hsm.inj.set(nil, false)
		if i1, l1 := e.counts(t); i1 != i0 || l1 != l0 {
			t.Fatal("the crashed attempt issued")
		}
		// The key is on the HSM, its label recorded, its key not.
		label := injectLabel(req.UEID)
		if !slicesContains(e.hsm.labels(t), label) {
			t.Fatal("no orphan to recover")
		}
		rec, err := e.reg.Get(ctx, req.UEID)
		if err != nil || rec.State != registry.Issuing || rec.Injected == nil || rec.Injected.Label != label || rec.Injected.PublicKey != nil {
			t.Fatalf("record after the crash: %+v, %v", rec, err)
		}
		orphan := hsmPublic(t, e.hsm, label)
		// The retry destroys it and makes another, which it certifies.
		res, err := e.svc.ProvisionInjected(ctx, e.stationB, e.injectedRequest(t, d))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range e.hsm.labels(t) {
			if l == label {
				n++
			}
		}
		now := hsmPublic(t, e.hsm, label)
		leaf := mustCert(t, res.Chain[0])
		if n != 1 || bytes.Equal(now, orphan) || !bytes.Equal(now, leaf.RawSubjectPublicKeyInfo) {
			t.Fatalf("%d keys labelled %s; orphan replaced %v; certified %v", n, label, !bytes.Equal(now, orphan),
				bytes.Equal(now, leaf.RawSubjectPublicKeyInfo))
		}
		if err := d.InstallInjected(ctx, res.Key, res.Secrets, res.Chain); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("blob for another chip", func(t *testing.T) {
		a, b := e.chipB(t), e.chipB(t)
		resA, err := e.svc.ProvisionInjected(ctx, e.stationB, e.injectedRequest(t, a))
		if err != nil {
			t.Fatal(err)
		}
		resB, err := e.svc.ProvisionInjected(ctx, e.stationB, e.injectedRequest(t, b))
		if err != nil {
			t.Fatal(err)
		}
		// A's key with B's chain, and A's secrets with B's key.
		if err := b.InstallInjected(ctx, resA.Key, resB.Secrets, resB.Chain); !errors.Is(err, device.ErrInjected) {
			t.Fatalf("A's key on B: %v", err)
		}
		if err := b.InstallInjected(ctx, resB.Key, resA.Secrets, resB.Chain); !errors.Is(err, device.ErrInjected) {
			t.Fatalf("A's secrets on B: %v", err)
		}
		// A's key relabelled for B's UEID: the chip's unwrap refuses it.
		blob, err := soft.ParseWrappedBlob(resA.Key)
		if err != nil {
			t.Fatal(err)
		}
		_, bUEID, err := ca.HardwareModuleName(mustCert(t, resB.Chain[0]))
		if err != nil {
			t.Fatal(err)
		}
		blob.UEID = bUEID
		forged, err := blob.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.InstallInjected(ctx, forged, nil, resB.Chain); !errors.Is(err, soft.ErrUnwrap) {
			t.Fatalf("A's key relabelled for B: %v", err)
		}
		untouched(t, b)
		// A's IDevID with B's key: B's key is not the IDevID's.
		if err := b.InstallInjected(ctx, resB.Key, nil, resA.Chain); !errors.Is(err, device.ErrIdentity) {
			t.Fatalf("A's chain on B: %v", err)
		}
		untouched(t, b)
	})

	t.Run("tampered blob", func(t *testing.T) {
		d := e.chipB(t)
		res, err := e.svc.ProvisionInjected(ctx, e.stationB, e.injectedRequest(t, d))
		if err != nil {
			t.Fatal(err)
		}
		for name, edit := range map[string]func(b *soft.WrappedBlob){
			"wrapped":   func(b *soft.WrappedBlob) { b.Wrapped[3] ^= 1 },
			"name":      func(b *soft.WrappedBlob) { b.Name = "other" },
			"ephemeral": func(b *soft.WrappedBlob) { b.Ephemeral = res2Ephemeral(t, e, d) },
		} {
			t.Run(name, func(t *testing.T) {
				b, err := soft.ParseWrappedBlob(res.Key)
				if err != nil {
					t.Fatal(err)
				}
				edit(b)
				bad, err := b.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if err := d.InstallInjected(ctx, bad, res.Secrets, res.Chain); !errors.Is(err, soft.ErrUnwrap) {
					t.Fatalf("tampered blob: %v", err)
				}
				untouched(t, d)
			})
		}
		// A tampered certificate chain.
		chain := [][]byte{bytes.Clone(res.Chain[0]), res.Chain[1], res.Chain[2]}
		chain[0][len(chain[0])-5] ^= 1
		if err := d.InstallInjected(ctx, res.Key, res.Secrets, chain); !errors.Is(err, device.ErrIdentity) {
			t.Fatalf("tampered chain: %v", err)
		}
		untouched(t, d)
		// Then the real thing installs.
		if err := d.InstallInjected(ctx, res.Key, res.Secrets, res.Chain); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bad fields", func(t *testing.T) {
		d := e.chipB(t)
		for name, edit := range map[string]func(r *InjectedRequest){
			"no statement":   func(r *InjectedRequest) { r.TransportStatement = nil },
			"long statement": func(r *InjectedRequest) { r.TransportStatement = make([]byte, MaxTransportStatementSize+1) },
			"long signature": func(r *InjectedRequest) { r.TransportSignature = make([]byte, MaxTransportSignatureSize+1) },
			"no UEID":        func(r *InjectedRequest) { r.UEID = nil },
			"no lot":         func(r *InjectedRequest) { r.Lot = "" },
		} {
			t.Run(name, func(t *testing.T) {
				r := e.injectedRequest(t, d)
				edit(r)
				e.refusedInjected(t, r, ErrBadRequest)
			})
		}
		if _, err := e.svc.ProvisionInjected(ctx, e.stationB, nil); !errors.Is(err, ErrBadRequest) {
			t.Fatal(err)
		}
		r := e.injectedRequest(t, d)
		r.TransportSignature = bytes.Clone(r.TransportSignature)
		r.TransportSignature[10] ^= 1
		e.refusedInjected(t, r, ErrTransportKey)
		untouched(t, d)
	})
}

// res2Ephemeral is another valid P-256 point: the ephemeral key of a fresh
// wrapping for d.
func res2Ephemeral(t *testing.T, e *mixedEnv, d *device.Device) []byte {
	t.Helper()
	tk, err := d.Chip().TransportKey(context.Background(), soft.TransportP256, bytes.Repeat([]byte{3}, 16))
	if err != nil {
		t.Fatal(err)
	}
	return tk.Public.Bytes()
}

// hsmPublic is the DER public key of the private key labelled label.
func hsmPublic(t *testing.T, h *hsmEnv, label string) []byte {
	t.Helper()
	keys, err := h.m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Label == label {
			der, err := x509.MarshalPKIXPublicKey(k.Public)
			if err != nil {
				t.Fatal(err)
			}
			return der
		}
	}
	t.Fatalf("no key labelled %s", label)
	return nil
}

// FuzzProvisionInjected: mangled transport statements and signatures are
// refused (the evidence is fresh each time, so only the proof is at
// stake), and make, issue and log nothing.
func FuzzProvisionInjected(f *testing.F) {
	ctx := context.Background()
	e := newMixedEnv(f, openSQLite)
	d := e.chipB(f)
	good := e.injectedRequest(f, d)
	f.Add(good.TransportStatement, good.TransportSignature)
	f.Add(good.TransportStatement[:len(good.TransportStatement)-2], good.TransportSignature)
	f.Add([]byte{0xa0}, []byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, st, sig []byte) {
		nonce, err := e.svc.Nonce(ctx, e.stationB)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := d.Attest(ctx, nonce)
		if err != nil {
			t.Fatal(err)
		}
		req := *good
		req.Evidence, req.TransportStatement, req.TransportSignature = ev, st, sig
		// A statement over this nonce cannot come from the fuzzer: the
		// DeviceID key signs only inside the chip.
		_, err = e.svc.ProvisionInjected(ctx, e.stationB, &req)
		if !errors.Is(err, ErrTransportKey) && !errors.Is(err, ErrBadRequest) {
			t.Fatalf("ProvisionInjected: %v", err)
		}
		if i, l := e.counts(t); i != 0 || l != 0 || e.hsm.inj.injected.Load() != 0 {
			t.Fatalf("issued %d, logged %d, made %d keys", i, l, e.hsm.inj.injected.Load())
		}
	})
}

// benchmarkInjected is BenchmarkProvision's "injected": one station driving
// one chip of the injected product at a time (nonce, TransportRequest,
// ProvisionInjected with its HSM work on SoftHSM2, InstallInjected,
// Confirm with the HSM key's destruction); making and booting the chip is
// not timed.
func benchmarkInjected(b *testing.B) {
	ctx := context.Background()
	e := newMixedEnv(b, openSQLite)
	for b.Loop() {
		b.StopTimer()
		d, err := device.Init(ctx, b.TempDir(), &device.InitRequest{Product: e.vb.Product, RootKeyHash: e.vb.RootHash}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Boot(ctx, e.fwb); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		nonce, err := e.svc.Nonce(ctx, e.stationB)
		if err != nil {
			b.Fatal(err)
		}
		tr, err := d.TransportRequest(ctx, nonce)
		if err != nil {
			b.Fatal(err)
		}
		res, err := e.svc.ProvisionInjected(ctx, e.stationB, &InjectedRequest{UEID: tr.UEID, Product: "sku-b", Lot: "lot-b",
			Evidence: tr.Evidence, TransportStatement: tr.TransportStatement, TransportSignature: tr.TransportSignature})
		if err != nil {
			b.Fatal(err)
		}
		if err := d.InstallInjected(ctx, res.Key, res.Secrets, res.Chain); err != nil {
			b.Fatal(err)
		}
		if err := e.svc.Confirm(ctx, e.stationB, tr.UEID); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		d.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chips/s")
}

// TestInjectedConcurrentRetries: a station retrying one chip from several
// goroutines at once gets one certificate, made for one HSM key.
func TestInjectedConcurrentRetries(t *testing.T) {
	ctx := context.Background()
	e := newMixedEnv(t, openSQLite)
	d := e.chipB(t)
	const n = 8
	reqs := make([]*InjectedRequest, n)
	for i := range reqs {
		reqs[i] = e.injectedRequest(t, d)
	}
	results := make([]*InjectedResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() { results[i], errs[i] = e.svc.ProvisionInjected(ctx, e.stationB, reqs[i]) })
	}
	wg.Wait()
	issued := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(r.Chain[0], results[0].Chain[0]) || r.Key == nil {
			t.Fatal("two answers differ")
		}
		if r.Issued {
			issued++
		}
	}
	if i, l := e.counts(t); issued != 1 || i != 1 || l != 1 || e.hsm.inj.injected.Load() != 1 {
		t.Fatalf("%d answers say issued; issued %d, logged %d, %d HSM keys", issued, i, l, e.hsm.inj.injected.Load())
	}
	// Any of the blobs installs; the others are then no-ops.
	for _, r := range results {
		if err := d.InstallInjected(ctx, r.Key, r.Secrets, r.Chain); err != nil {
			t.Fatal(err)
		}
	}
}
