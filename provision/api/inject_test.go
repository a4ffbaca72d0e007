package api_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	"github.com/rootline/rootline/provision/hsminject"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/station"
)

// failingInjector is the HSM's Injector, or, when fail is set, an HSM that
// fails every call with it.
type failingInjector struct {
	provision.Injector
	mu   sync.Mutex
	fail error
}

func (f *failingInjector) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *failingInjector) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

func (f *failingInjector) InjectKey(ctx context.Context, req *provision.InjectKeyRequest) (*provision.WrappedKey, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Injector.InjectKey(ctx, req)
}

func (f *failingInjector) WrapKey(ctx context.Context, req *provision.InjectKeyRequest) (*provision.WrappedKey, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Injector.WrapKey(ctx, req)
}

// injectEnv is env with sku-b's identity injected by a SoftHSM2 token.
type injectEnv struct {
	*env
	m   *hsm.Module
	inj *failingInjector
	vb  *vendor
}

var injectedSecrets = []string{"join-key", "wifi-psk"}

func newInjectEnv(t *testing.T) *injectEnv {
	t.Helper()
	ie := &injectEnv{}
	uri, _ := hsmtest.NewSoftHSM(t)
	m, err := hsm.Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	master, err := m.CreateSecretMaster(t.Context(), "sku-b-master")
	if err != nil {
		t.Fatal(err)
	}
	ie.m = m
	ie.inj = &failingInjector{Injector: hsminject.New(m, nil)}
	ie.env = newEnvWith(t, envOptions{products: func(t *testing.T, e *env) {
		p := e.prods["sku-b"]
		p.Identity = provision.Injected
		p.Injection = &provision.InjectionPolicy{Injector: ie.inj, SecretMaster: master.String(), Secrets: injectedSecrets}
	}})
	// sku-b's factory firmware has sku-a's payloads, so its digests are the
	// reference values of both.
	ie.vb = newVendor(t, "sku-b")
	return ie
}

// chipB makes a chip of sku-b booted with its test firmware.
func (ie *injectEnv) chipB(t *testing.T) *device.Device {
	t.Helper()
	d, err := device.Init(t.Context(), t.TempDir(), &device.InitRequest{Product: ie.vb.Product, RootKeyHash: ie.vb.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(t.Context(), ie.vb.firmware(t)); err != nil {
		t.Fatal(err)
	}
	return d
}

// deviceKeys returns the labels of the injected device keys on the token.
func (ie *injectEnv) deviceKeys(t *testing.T) []string {
	t.Helper()
	keys, err := ie.m.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k.Label, "rootline-idevid-") {
			out = append(out, k.Label)
		}
	}
	return out
}

// nothingIssued checks that the registry and the log hold nothing.
func (e *env) nothingIssued(t *testing.T) {
	t.Helper()
	if st, err := e.reg.Stats(t.Context()); err != nil || st.Issued+st.Complete != 0 {
		t.Fatalf("refused request issued: %+v, %v", st, err)
	}
	if n, err := e.log.Size(t.Context()); err != nil || n != 0 {
		t.Fatalf("refused request logged: size %d, %v", n, err)
	}
}

func untouched(t *testing.T, d *device.Device) {
	t.Helper()
	if lc, err := d.Lifecycle(t.Context()); err != nil || lc != pluton.Manufacturing {
		t.Fatalf("refused chip in lifecycle %v (%v)", lc, err)
	}
}

// A chip of an injected product is provisioned over the API: the chain
// certifies a key the chip unwrapped, its secrets are installed, the HSM
// keeps no copy once the chip confirmed, and the flow run again only
// confirms again.
func TestProvisionInjectedChip(t *testing.T) {
	ctx := t.Context()
	ie := newInjectEnv(t)
	c := ie.client(t, ie.stB)
	d := ie.chipB(t)
	res, err := station.ProvisionInjectedChip(ctx, c, d, "sku-b", "lot-b")
	if err != nil {
		t.Fatal(err)
	}
	if res.Key == nil || len(res.Secrets) != len(injectedSecrets) || len(res.Chain) != 3 || !res.Issued && res.LogIndex != 0 {
		t.Fatalf("result: key %d bytes, %d secrets, %d certificates", len(res.Key), len(res.Secrets), len(res.Chain))
	}
	if lc, err := d.Lifecycle(ctx); err != nil || lc != pluton.Provisioned {
		t.Fatalf("chip lifecycle %v, %v", lc, err)
	}
	s, err := d.IdentitySigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(res.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		t.Fatal("the IDevID does not certify the injected key")
	}
	for _, n := range injectedSecrets {
		if sec, err := d.Chip().Secret(ctx, device.InjectedKeyCompartment, n); err != nil || len(sec) == 0 {
			t.Fatalf("secret %q: %v", n, err)
		}
	}
	ueid, _ := d.UEID(ctx)
	rec, err := ie.reg.Get(ctx, ueid)
	if err != nil || rec.State != registry.Complete || rec.Injected == nil || rec.Injected.DestroyedAt.IsZero() {
		t.Fatalf("record %+v, %v: want COMPLETE with the HSM key destroyed", rec, err)
	}
	if k := ie.deviceKeys(t); len(k) != 0 {
		t.Fatalf("device keys left on the token: %v", k)
	}

	// Again: the same certificate, no key (it is gone from the HSM), and
	// the chip keeps what it has.
	res2, err := station.ProvisionInjectedChip(ctx, c, d, "sku-b", "lot-b")
	if err != nil {
		t.Fatal(err)
	}
	if res2.Key != nil || res2.Secrets != nil || !bytes.Equal(res2.Chain[0], res.Chain[0]) || res2.Issued {
		t.Fatalf("retry after confirmation: key %d bytes, issued %v", len(res2.Key), res2.Issued)
	}
	if n, _ := ie.log.Size(ctx); n != 1 {
		t.Fatalf("log size %d, want 1", n)
	}
}

// A retry before the confirmation gets the same key wrapped again, which
// the chip accepts.
func TestProvisionInjectedRetryBeforeConfirm(t *testing.T) {
	ctx := t.Context()
	ie := newInjectEnv(t)
	c := ie.client(t, ie.stB)
	d := ie.chipB(t)
	var results []*provision.InjectedResult
	for range 2 {
		n, err := c.Nonce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := d.TransportRequest(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.ProvisionInjected(ctx, &provision.InjectedRequest{UEID: tr.UEID, Product: "sku-b", Lot: "lot-b",
			Evidence: tr.Evidence, TransportStatement: tr.TransportStatement, TransportSignature: tr.TransportSignature})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	if !bytes.Equal(results[0].Chain[0], results[1].Chain[0]) || bytes.Equal(results[0].Key, results[1].Key) || results[1].Issued {
		t.Fatal("the retry got another certificate, or the same wrapping")
	}
	if len(ie.deviceKeys(t)) != 1 {
		t.Fatalf("device keys on the token: %v, want one", ie.deviceKeys(t))
	}
	if _, err := station.ProvisionInjectedChip(ctx, c, d, "sku-b", "lot-b"); err != nil {
		t.Fatal(err)
	}
	if k := ie.deviceKeys(t); len(k) != 0 {
		t.Fatalf("device keys left on the token: %v", k)
	}
}

// Refusals of the injected call carry their reason, and issue nothing.
func TestProvisionInjectedRefused(t *testing.T) {
	ctx := t.Context()
	ie := newInjectEnv(t)
	c := ie.client(t, ie.stB)

	t.Run("statement of another chip", func(t *testing.T) {
		d, o := ie.chipB(t), ie.chipB(t)
		n, _ := c.Nonce(ctx)
		tr, err := d.TransportRequest(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		tk, err := o.Chip().TransportKey(ctx, soft.TransportP256, n)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ProvisionInjected(ctx, &provision.InjectedRequest{UEID: tr.UEID, Product: "sku-b", Lot: "lot-b",
			Evidence: tr.Evidence, TransportStatement: tk.Statement, TransportSignature: tk.Signature})
		wantReason(t, err, http.StatusUnprocessableEntity, api.ReasonTransportKey)
		if !errors.Is(err, provision.ErrTransportKey) {
			t.Fatalf("%v: not provision.ErrTransportKey", err)
		}
		untouched(t, d)
		ie.nothingIssued(t)
	})

	t.Run("on-chip flow for an injected product", func(t *testing.T) {
		d := ie.chipB(t)
		_, err := station.ProvisionChip(ctx, c, d, "sku-b", "lot-b")
		wantReason(t, err, http.StatusBadRequest, api.ReasonBadRequest)
		untouched(t, d)
		ie.nothingIssued(t)
	})

	t.Run("injected flow for an on-chip product", func(t *testing.T) {
		d := ie.chip(t)
		_, err := station.ProvisionInjectedChip(ctx, ie.client(t, ie.stA), d, "sku-a", "lot-1")
		wantReason(t, err, http.StatusBadRequest, api.ReasonBadRequest)
		untouched(t, d)
		ie.nothingIssued(t)
	})

	t.Run("station of another product", func(t *testing.T) {
		d := ie.chipB(t)
		_, err := station.ProvisionInjectedChip(ctx, ie.client(t, ie.stA), d, "sku-b", "lot-b")
		wantReason(t, err, http.StatusForbidden, api.ReasonStationNotAllowed)
		untouched(t, d)
		ie.nothingIssued(t)
	})

	t.Run("HSM lacking a mechanism", func(t *testing.T) {
		d := ie.chipB(t)
		ie.inj.set(&hsm.MissingMechanismError{Op: "inject key", Mechanism: 0x2109, Name: "CKM_AES_KEY_WRAP_PAD",
			Token: hsmtest.Label, Reason: "is not offered (C_GetMechanismList)"})
		defer ie.inj.set(nil)
		_, err := station.ProvisionInjectedChip(ctx, c, d, "sku-b", "lot-b")
		wantReason(t, err, http.StatusNotImplemented, api.ReasonInjectionUnsupported)
		if !errors.Is(err, provision.ErrInjection) || !errors.Is(err, hsm.ErrMechanismUnsupported) {
			t.Fatalf("%v: not ErrInjection and ErrMechanismUnsupported", err)
		}
		// The HSM's own words stay on the server.
		if strings.Contains(err.Error(), "CKM_") {
			t.Fatalf("%v: the HSM's error reached the station", err)
		}
		untouched(t, d)
		ie.nothingIssued(t)
		if k := ie.deviceKeys(t); len(k) != 0 {
			t.Fatalf("device keys on the token: %v", k)
		}
	})

	t.Run("HSM failing", func(t *testing.T) {
		d := ie.chipB(t)
		ie.inj.set(errors.New("hsm: CKR_DEVICE_ERROR"))
		_, err := station.ProvisionInjectedChip(ctx, c, d, "sku-b", "lot-b")
		ie.inj.set(nil)
		wantReason(t, err, http.StatusServiceUnavailable, api.ReasonInjection)
		if !errors.Is(err, provision.ErrInjection) || errors.Is(err, hsm.ErrMechanismUnsupported) || strings.Contains(err.Error(), "CKR_") {
			t.Fatalf("%v: want ErrInjection without the HSM's words", err)
		}
		untouched(t, d)
		ie.nothingIssued(t)
		// The station's retry, the HSM back, completes the chip.
		if _, err := station.ProvisionInjectedChip(ctx, c, d, "sku-b", "lot-b"); err != nil {
			t.Fatal(err)
		}
		if lc, _ := d.Lifecycle(ctx); lc != pluton.Provisioned {
			t.Fatalf("lifecycle %v after the retry", lc)
		}
	})
}

// A chip on a TPM (swtpm) is provisioned over the API; a certification by
// another key is refused as tpm_identity and issues nothing.
func TestProvisionTPMChip(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	c := e.client(t, e.stA)
	sw := tpmtest.Start(t)
	d, err := device.InitTPM(ctx, t.TempDir(), &device.InitRequest{Product: e.v.Product, RootKeyHash: e.v.RootHash}, &device.TPMOptions{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(ctx, e.fw); err != nil {
		t.Fatal(err)
	}

	// Refused: the certification's signature altered; the on-chip call
	// for a TPM chip.
	n, err := c.Nonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := d.FactoryRequestTPM(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	bad := *fr
	bad.CertifyAttest = bytes.Clone(fr.CertifyAttest)
	bad.CertifyAttest[len(bad.CertifyAttest)-1] ^= 1
	_, err = c.ProvisionTPM(ctx, &provision.TPMRequest{
		Request:   provision.Request{UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "lot-1"},
		IAKPublic: fr.IAKPublic, IDevIDPublic: fr.IDevIDPublic, CertifyAttest: bad.CertifyAttest, CertifySignature: fr.CertifySignature,
	})
	wantReason(t, err, http.StatusUnprocessableEntity, api.ReasonTPMIdentity)
	if !errors.Is(err, provision.ErrTPMIdentity) {
		t.Fatalf("%v: not provision.ErrTPMIdentity", err)
	}
	untouched(t, d)
	e.nothingIssued(t)

	res, err := station.ProvisionTPMChip(ctx, c, d, "sku-a", "lot-1")
	if err != nil {
		t.Fatal(err)
	}
	if lc, err := d.Lifecycle(ctx); err != nil || lc != pluton.Provisioned {
		t.Fatalf("TPM chip lifecycle %v, %v", lc, err)
	}
	rec, err := e.reg.Get(ctx, fr.UEID)
	if err != nil || rec.State != registry.Complete || !bytes.Equal(rec.Certificate, res.Chain[0]) {
		t.Fatalf("record %+v, %v", rec, err)
	}
	// Again: the same certificate.
	res2, err := station.ProvisionTPMChip(ctx, c, d, "sku-a", "lot-1")
	if err != nil || !bytes.Equal(res2.Chain[0], res.Chain[0]) {
		t.Fatalf("retry: %v", err)
	}
}
