package device

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
)

func issueIdentity(t *testing.T, l *ca.Local, product string, ueid, csr []byte) [][]byte {
	t.Helper()
	iss, err := l.Issue(context.Background(), &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: product, UEID: ueid, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{iss.Certificate.Raw}
	for _, c := range iss.Chain {
		chain = append(chain, c.Raw)
	}
	return chain
}

func TestFactoryRequestInstallIdentity(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d := newDevice(t, v)
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	nonce := []byte("factory nonce 0123")
	fr, err := d.FactoryRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := d.Chip().Identity(ctx)
	csr, err := ca.ParseCSR(fr.CSR)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyEqual(csr.PublicKey, id.DeviceID) || string(fr.UEID) != string(id.UEID) {
		t.Fatal("CSR key or UEID is not the chip's")
	}
	tok, err := evidence.Verify(fr.Evidence, &evidence.VerifyOptions{Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyEqual(tok.Chain[len(tok.Chain)-1].PublicKey, csr.PublicKey) {
		t.Fatal("the evidence does not chain to the CSR's key")
	}

	h := catest.NewHierarchy(t, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		t.Fatal(err)
	}
	chain := issueIdentity(t, l, "sku-a", fr.UEID, fr.CSR)

	// Refused chains change nothing.
	other := newDevice(t, v)
	if _, err := other.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	ofr, err := other.FactoryRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	otherChain := issueIdentity(t, l, "sku-a", ofr.UEID, ofr.CSR)
	for name, c := range map[string][][]byte{
		"other chip":  otherChain,
		"leaf only":   chain[:1],
		"no root":     chain[:2],
		"garbage":     {chain[0], []byte("junk")},
		"wrong order": {chain[0], chain[2], chain[1]},
		"too long":    make([][]byte, MaxIdentityCertificates+1),
	} {
		if err := d.InstallIdentity(ctx, c); !errors.Is(err, ErrIdentity) {
			t.Errorf("%s: %v, want ErrIdentity", name, err)
		}
	}
	if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Manufacturing {
		t.Fatalf("lifecycle %v after refusals", lc)
	}
	if _, err := d.Identity(ctx); err == nil {
		t.Fatal("identity stored after refusals")
	}

	if err := d.InstallIdentity(ctx, chain); err != nil {
		t.Fatal(err)
	}
	if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Provisioned {
		t.Fatalf("lifecycle %v, want provisioned", lc)
	}
	// Idempotent, and one-way.
	if err := d.InstallIdentity(ctx, chain); err != nil {
		t.Fatalf("second install: %v", err)
	}
	again := issueIdentity(t, l, "sku-a", fr.UEID, fr.CSR)
	if err := d.InstallIdentity(ctx, again); !errors.Is(err, ErrIdentityInstalled) {
		t.Fatalf("other chain: %v, want ErrIdentityInstalled", err)
	}
	got, err := d.Identity(ctx)
	if err != nil || len(got) != 3 || string(got[0].Raw) != string(chain[0]) {
		t.Fatalf("Identity: %v", err)
	}
}

func TestInstallIdentityAfterCrash(t *testing.T) {
	// A crash after the chain was written but before the lifecycle moved:
	// installing the same chain again finishes the job.
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d := newDevice(t, v)
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	fr, err := d.FactoryRequest(ctx, []byte("factory nonce 0123"))
	if err != nil {
		t.Fatal(err)
	}
	h := catest.NewHierarchy(t, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		t.Fatal(err)
	}
	chain := issueIdentity(t, l, "sku-a", fr.UEID, fr.CSR)
	if _, err := d.checkIdentity(ctx, chain); err != nil {
		t.Fatal(err)
	}
	// The first half of InstallIdentity: the chain is written, the
	// lifecycle has not moved.
	var data []byte
	for _, der := range chain {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.WriteFile(filepath.Join(d.Dir(), IdentityFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.InstallIdentity(ctx, chain); err != nil {
		t.Fatal(err)
	}
	if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Provisioned {
		t.Fatalf("lifecycle %v, want provisioned", lc)
	}
}

// FuzzInstallIdentity: only the chip's own, well-formed chain is installed.
func FuzzInstallIdentity(f *testing.F) {
	ctx := context.Background()
	v := newVendor(f, "sku-a")
	d := newDevice(f, v)
	if _, err := d.Boot(ctx, v.images(f, 1)); err != nil {
		f.Fatal(err)
	}
	fr, err := d.FactoryRequest(ctx, []byte("factory nonce 0123"))
	if err != nil {
		f.Fatal(err)
	}
	h := catest.NewHierarchy(f, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		f.Fatal(err)
	}
	iss, err := l.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: fr.UEID, CSR: fr.CSR})
	if err != nil {
		f.Fatal(err)
	}
	leaf, inter, root := iss.Certificate.Raw, iss.Chain[0].Raw, iss.Chain[1].Raw
	f.Add(leaf, inter, root)
	f.Add(leaf, root, inter)
	f.Add(leaf[:100], inter, root)
	f.Add([]byte{}, []byte{0x30}, root)
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		err := d.InstallIdentity(ctx, [][]byte{a, b, c})
		if err == nil {
			if !bytes.Equal(a, leaf) || !bytes.Equal(b, inter) || !bytes.Equal(c, root) {
				t.Fatal("installed a chain that is not the chip's")
			}
			return
		}
		if !errors.Is(err, ErrIdentity) && !errors.Is(err, ErrIdentityInstalled) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
