package factoryport

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/boot/boottest"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/soft"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/hsminject"
)

// factory is the factory's side of an injected identity, without the
// service: an HSM that makes and wraps device keys, and a CA.
type factory struct {
	inj    *hsminject.Injector
	master string
	ca     *ca.Local
}

func newFactory(t *testing.T) *factory {
	t.Helper()
	uri, _ := hsmtest.NewSoftHSM(t)
	m, err := hsm.Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	master, err := m.CreateSecretMaster(t.Context(), "sku-a-master")
	if err != nil {
		t.Fatal(err)
	}
	h := catest.NewHierarchy(t, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		t.Fatal(err)
	}
	return &factory{inj: hsminject.New(m, nil), master: master.String(), ca: l}
}

// inject verifies the chip's transport request over nonce as the service
// does, and returns a device key and a secret wrapped for that chip, and
// the IDevID chain of the key.
func (f *factory) inject(t *testing.T, tr *device.TransportRequest, nonce []byte, label string) (blob []byte, secrets, chain [][]byte) {
	t.Helper()
	ctx := t.Context()
	tok, err := evidence.Verify(tr.Evidence, &evidence.VerifyOptions{Nonce: nonce})
	if err != nil {
		t.Fatalf("evidence from the port: %v", err)
	}
	vt, err := soft.VerifyTransportKey(tr.TransportStatement, tr.TransportSignature, tok.Chain[len(tok.Chain)-1].PublicKey, nonce)
	if err != nil {
		t.Fatalf("transport statement from the port: %v", err)
	}
	if !bytes.Equal(vt.UEID, tr.UEID) {
		t.Fatal("the statement names another UEID")
	}
	chip := provision.ChipTransport{Algorithm: vt.Algorithm, Public: vt.Public.Bytes(), UEID: tr.UEID}
	wk, err := f.inj.InjectKey(ctx, &provision.InjectKeyRequest{Label: label, Name: "idevid", Algorithm: pluton.ECDSAP256, Chip: chip})
	if err != nil {
		t.Fatal(err)
	}
	if blob, err = wk.Blob.Marshal(); err != nil {
		t.Fatal(err)
	}
	sb, err := f.inj.DeriveSecret(ctx, &provision.DeriveSecretRequest{Master: f.master, Name: "join-key", Chip: chip})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := f.ca.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevIDInjected, Product: "sku-a", UEID: tr.UEID, PublicKey: wk.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	chain = [][]byte{iss.Certificate.Raw}
	for _, c := range iss.Chain {
		chain = append(chain, c.Raw)
	}
	return blob, [][]byte{s}, chain
}

// A chip of an injected identity over its factory port: its transport
// request verifies, it installs the key, the secret and the chain the
// factory made for it (twice: a station's retry), and refuses, as the
// device package's errors, what was made for another chip or altered.
func TestInjectedOverThePort(t *testing.T) {
	ctx := t.Context()
	f := newFactory(t)
	d := bootedChip(t)
	c, _ := serve(t, d)
	nonce := []byte("a nonce from the service 0123456789")
	tr, err := c.TransportRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	blob, secrets, chain := f.inject(t, tr, nonce, "key-a")

	// Another chip's key: refused, nothing changes.
	o := bootedChip(t)
	otr, err := o.TransportRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	oblob, osecrets, ochain := f.inject(t, otr, nonce, "key-o")
	statePath := d.Chip().Path()
	before, _ := os.ReadFile(statePath)
	if err := c.InstallInjected(ctx, oblob, secrets, chain); !errors.Is(err, device.ErrInjected) {
		t.Fatalf("another chip's key: %v, want device.ErrInjected", err)
	}
	if err := c.InstallInjected(ctx, blob, osecrets, chain); !errors.Is(err, device.ErrInjected) {
		t.Fatalf("another chip's secret: %v, want device.ErrInjected", err)
	}
	if err := c.InstallInjected(ctx, blob, secrets, ochain); !errors.Is(err, device.ErrIdentity) {
		t.Fatalf("another chip's chain: %v, want device.ErrIdentity", err)
	}
	// This chip's blob altered: the chip cannot unwrap it.
	bad, err := soft.ParseWrappedBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	bad.Wrapped = bytes.Clone(bad.Wrapped)
	bad.Wrapped[0] ^= 1
	badBlob, err := bad.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.InstallInjected(ctx, badBlob, secrets, chain); !errors.Is(err, soft.ErrUnwrap) {
		t.Fatalf("altered key: %v, want soft.ErrUnwrap", err)
	}
	if err := c.InstallInjected(ctx, nil, secrets, chain); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("no key: %v, want ErrBadRequest", err)
	}
	if after, _ := os.ReadFile(statePath); !bytes.Equal(before, after) {
		t.Fatal("a refused install changed the chip's state")
	}

	for range 2 { // the second is a station's retry
		if err := c.InstallInjected(ctx, blob, secrets, chain); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := c.Info(ctx); err != nil || info.Lifecycle != pluton.Provisioned {
		t.Fatalf("after install: %+v, %v", info, err)
	}
	s, err := d.IdentitySigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := d.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(certs[0].PublicKey) {
		t.Fatal("the installed IDevID does not certify the injected key")
	}
	if sec, err := d.Chip().Secret(ctx, device.InjectedKeyCompartment, "join-key"); err != nil || len(sec) == 0 {
		t.Fatalf("secret: %v", err)
	}
	// An emulated chip has no TPM.
	if _, err := c.FactoryRequestTPM(ctx, nonce); !errors.Is(err, device.ErrNotTPM) {
		t.Fatalf("tpm-factory-request on the emulated chip: %v, want device.ErrNotTPM", err)
	}
}

// A device on a TPM (swtpm) over its factory port: info from the TPM, the
// TPM's factory request whose IAK certifies the IDevID over the nonce, the
// identity installed; the injected operations are not offered.
func TestTPMOverThePort(t *testing.T) {
	ctx := t.Context()
	sw := tpmtest.Start(t)
	v := boottest.NewVendor(t, "sku-a", pluton.ECDSAP256)
	d, err := device.InitTPM(ctx, t.TempDir(), &device.InitRequest{Product: v.Product, RootKeyHash: v.RootHash}, &device.TPMOptions{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(ctx, &device.Images{Policy: v.Policy,
		Bootloader: v.Image(t, boot.Bootloader, "1.0.0", 1, "bootloader"),
		OS:         v.Image(t, boot.OS, "1.0.0", 1, "os"),
		App:        v.Image(t, boot.App, "1.0.0", 1, "factory test app")}); err != nil {
		t.Fatal(err)
	}
	c, _ := serve(t, d)

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ueid, _ := d.UEID(ctx)
	if !bytes.Equal(info.UEID, ueid) || info.Product != "" || info.Lifecycle != pluton.Manufacturing {
		t.Fatalf("info %+v", info)
	}
	nonce := []byte("a nonce from the service 0123456789")
	fr, err := c.FactoryRequestTPM(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	iak, err := tpm.ParseIAKPublic(fr.IAKPublic)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := tpm.UEID(iak); err != nil || !bytes.Equal(u, fr.UEID) {
		t.Fatalf("the UEID is not the IAK's (%v)", err)
	}
	if _, err := tpm.VerifyCertify(iak, fr.IDevIDPublic, fr.CertifyAttest, fr.CertifySignature, nonce); err != nil {
		t.Fatalf("the IAK's certification of the IDevID: %v", err)
	}
	if _, err := evidence.Verify(fr.Evidence, &evidence.VerifyOptions{Nonce: nonce}); err != nil {
		t.Fatalf("evidence from the port: %v", err)
	}
	if _, err := c.TransportRequest(ctx, nonce); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("transport-request on a TPM: %v, want ErrUnsupported", err)
	}
	if err := c.InstallInjected(ctx, []byte{1}, nil, [][]byte{{1}}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("install-injected on a TPM: %v, want ErrUnsupported", err)
	}

	h := catest.NewHierarchy(t, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.InstallIdentity(ctx, issue(t, l, &fr.FactoryRequest)); err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(ctx); err != nil || info.Lifecycle != pluton.Provisioned {
		t.Fatalf("after install: %+v, %v", info, err)
	}
}

// Each new operation takes its own fields only.
func TestBadInjectedRequests(t *testing.T) {
	ctx := context.Background()
	d := bootedChip(t)
	c, _ := serve(t, d)
	n := bytes.Repeat([]byte{7}, 32)
	for name, req := range map[string]*request{
		"transport + chain":     {Op: OpTransportRequest, Nonce: n, Chain: [][]byte{{1}}},
		"transport + key":       {Op: OpTransportRequest, Nonce: n, Key: []byte{1}},
		"transport short nonce": {Op: OpTransportRequest, Nonce: []byte("x")},
		"injected + nonce":      {Op: OpInstallInjected, Nonce: n, Key: []byte{1}, Chain: [][]byte{{1}}},
		"injected bad blob":     {Op: OpInstallInjected, Key: []byte{1}, Chain: [][]byte{{1}}},
		"tpm + secrets":         {Op: OpTPMFactoryRequest, Nonce: n, Secrets: [][]byte{{1}}},
		"identity + key":        {Op: OpInstallIdentity, Key: []byte{1}, Chain: [][]byte{{1}}},
		"factory + secrets":     {Op: OpFactoryRequest, Nonce: n, Secrets: [][]byte{{1}}},
		"info + key":            {Op: OpInfo, Key: []byte{1}},
	} {
		_, err := c.call(ctx, req)
		var re *RemoteError
		if !errors.As(err, &re) {
			t.Errorf("%s: %v, want a refusal", name, err)
		} else if name != "injected bad blob" && !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadRequest", name, err)
		}
	}
	if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Manufacturing {
		t.Fatalf("lifecycle %v after bad requests", lc)
	}
}
