package provision

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/boot/boottest"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/translog"
)

// tpmIssuer counts the certificates the CA signed.
type tpmIssuer struct {
	ca.Issuer
	n atomic.Int64
}

func (c *tpmIssuer) Issue(ctx context.Context, req *ca.IssueRequest) (*ca.Issued, error) {
	iss, err := c.Issuer.Issue(ctx, req)
	if err == nil {
		c.n.Add(1)
	}
	return iss, err
}

// tpmEnv is a factory (SQLite registry, local CA, in-memory issuance log)
// for sku-a, whose test firmware is fw, and a station allowed for it.
type tpmEnv struct {
	svc     *Service
	reg     registry.Registry
	log     *translog.Log
	issuer  *tpmIssuer
	h       *catest.Hierarchy
	v       *boottest.Vendor
	fw      *device.Images
	station Station
}

func tpmFirmware(t testing.TB, v *boottest.Vendor, app string) *device.Images {
	return &device.Images{
		Policy:     v.Policy,
		Bootloader: v.Image(t, boot.Bootloader, "1.0.0", 1, "factory bootloader"),
		OS:         v.Image(t, boot.OS, "1.0.0", 1, "factory os"),
		App:        v.Image(t, boot.App, "1.0.0", 1, app),
	}
}

func newTPMEnv(t testing.TB) *tpmEnv {
	t.Helper()
	ctx := t.Context()
	e := &tpmEnv{station: Station{Name: "st-1", Products: []string{"sku-a"}}}
	reg, err := registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: filepath.Join(t.TempDir(), "registry.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	e.reg = reg
	_, logKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := translog.NewSigner("log.rootline.test", logKey)
	if err != nil {
		t.Fatal(err)
	}
	if e.log, err = translog.New(translog.NewMemStore(), signer); err != nil {
		t.Fatal(err)
	}
	e.h = catest.NewHierarchy(t, "sku-a")
	local, err := ca.NewLocal(&ca.LocalOptions{Root: e.h.Root, Products: e.h.Products})
	if err != nil {
		t.Fatal(err)
	}
	e.issuer = &tpmIssuer{Issuer: local}
	e.v = boottest.NewVendor(t, "sku-a", pluton.ECDSAP256)
	e.fw = tpmFirmware(t, e.v, "factory test app")
	// The reference values are the test firmware's manifests' digests.
	refs := map[string]LayerReference{}
	for _, l := range boot.Layers() {
		img := map[boot.Layer][]byte{boot.Bootloader: e.fw.Bootloader, boot.OS: e.fw.OS, boot.App: e.fw.App}[l]
		p, err := boot.ParseImage(img)
		if err != nil {
			t.Fatal(err)
		}
		refs[string(l)] = LayerReference{Digests: [][]byte{p.Manifest.Digest}, MinSVN: 1}
	}
	p := e.h.Products[0]
	e.svc, err = New(&Config{
		Registry: e.reg, Issuer: e.issuer, Log: e.log,
		Products: map[string]*ProductPolicy{p.Name: {HWType: p.HWType, Chain: []*x509.Certificate{p.Certificate, e.h.Root}, ReferenceValues: refs}},
		NonceKey: bytes.Repeat([]byte{7}, 32),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// chip makes a device of sku-a on a fresh swtpm, booted with fw.
func (e *tpmEnv) chip(t testing.TB, fw *device.Images) *device.Device {
	t.Helper()
	sw := tpmtest.Start(t)
	d, err := device.InitTPM(t.Context(), t.TempDir(), &device.InitRequest{Product: e.v.Product, RootKeyHash: e.v.RootHash}, &device.TPMOptions{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(t.Context(), fw); err != nil {
		t.Fatal(err)
	}
	return d
}

// request has the chip answer a fresh nonce; it returns the nonce too.
func (e *tpmEnv) request(t testing.TB, d *device.Device) (*TPMRequest, []byte) {
	t.Helper()
	nonce, err := e.svc.Nonce(t.Context(), e.station)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := d.FactoryRequestTPM(t.Context(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	return &TPMRequest{
		Request:   Request{UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "lot-1"},
		IAKPublic: fr.IAKPublic, IDevIDPublic: fr.IDevIDPublic,
		CertifyAttest: fr.CertifyAttest, CertifySignature: fr.CertifySignature,
	}, nonce
}

func (e *tpmEnv) counts(t *testing.T) (issued, logged int64) {
	t.Helper()
	n, err := e.log.Size(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return e.issuer.n.Load(), n
}

func TestProvisionTPMEndToEnd(t *testing.T) {
	ctx := t.Context()
	e := newTPMEnv(t)
	d := e.chip(t, e.fw)
	req, _ := e.request(t, d)
	res, err := e.svc.ProvisionTPM(ctx, e.station, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Issued || len(res.Chain) != 3 {
		t.Fatalf("result: issued %v, chain of %d", res.Issued, len(res.Chain))
	}

	// The IDevID certificate chains to the factory root and certifies the
	// TPM's IDevID key (the one the IAK certified).
	leaf, err := x509.ParseCertificate(res.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.h.Root)
	inter.AddCert(e.h.Products[0].Certificate)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatal(err)
	}
	iak, err := tpm.ParseIAKPublic(req.IAKPublic)
	if err != nil {
		t.Fatal(err)
	}
	idevid, err := d.TPM().IDevIDSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !idevid.Public().(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Fatal("the IDevID certificate is not of the TPM's IDevID key")
	}
	// Recorded and logged.
	rec, err := e.reg.Get(ctx, req.UEID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != registry.Issued || !bytes.Equal(rec.Certificate, res.Chain[0]) || !bytes.Equal(rec.PublicKey, leaf.RawSubjectPublicKeyInfo) {
		t.Fatalf("record %+v", rec)
	}
	if l, err := e.log.Leaf(ctx, res.LogIndex); err != nil || !bytes.Equal(l, res.Chain[0]) {
		t.Fatalf("log leaf %d: %v", res.LogIndex, err)
	}

	// A retry (a new nonce, the same chip) returns the same certificate
	// and issues nothing.
	i0, l0 := e.counts(t)
	req2, _ := e.request(t, d)
	res2, err := e.svc.ProvisionTPM(ctx, e.station, req2)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Issued || !bytes.Equal(res2.Chain[0], res.Chain[0]) || res2.LogIndex != res.LogIndex {
		t.Fatal("the retry did not return the same certificate")
	}
	if i1, l1 := e.counts(t); i1 != i0 || l1 != l0 {
		t.Fatal("the retry issued or logged")
	}

	// The chip installs its identity; the station confirms.
	if err := d.InstallIdentity(ctx, res.Chain); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Confirm(ctx, e.station, req.UEID); err != nil {
		t.Fatal(err)
	}
	if rec, _ := e.reg.Get(ctx, req.UEID); rec.State != registry.Complete {
		t.Fatalf("record state %v", rec.State)
	}

	// In the field: evidence under the IDevID certificate, which a
	// verifier checks against the factory root, with its quote by the IAK
	// the factory enrolled.
	nonce := []byte("field nonce 0123456789abcdef")
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := evidence.Verify(ev, &evidence.VerifyOptions{Nonce: nonce, Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.VerifyEvidenceQuote(tok, iak); err != nil {
		t.Fatal(err)
	}
	if tok.Claims.Lifecycle != pluton.Provisioned || !bytes.Equal(tok.Chain[0].Raw, res.Chain[0]) {
		t.Fatal("field evidence is not under the IDevID certificate")
	}
}

func TestProvisionTPMRefused(t *testing.T) {
	ctx := t.Context()
	e := newTPMEnv(t)
	d := e.chip(t, e.fw)
	// Another TPM, for its identity keys.
	other, err := tpm.Open(ctx, &tpm.Options{Address: tpmtest.Start(t).Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	idevid, err := d.TPM().IDevIDSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	selfCert, err := d.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// resign makes the chip's evidence again with claims changed by f,
	// signed by its IDevID as the device would.
	resign := func(t *testing.T, ev []byte, f func(*evidence.Claims)) []byte {
		tok, err := evidence.Parse(ev)
		if err != nil {
			t.Fatal(err)
		}
		f(tok.Claims)
		out, err := evidence.Sign(nil, idevid, pluton.ECDSAP256, tok.Claims, [][]byte{selfCert[0].Raw})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	for _, tc := range []struct {
		name   string
		change func(t *testing.T, r *TPMRequest, nonce []byte)
		want   []error
	}{
		{"certify over another nonce", func(t *testing.T, r *TPMRequest, nonce []byte) {
			ik, err := d.TPM().IdentityKeys(ctx, []byte("another nonce, not the service's"))
			if err != nil {
				t.Fatal(err)
			}
			r.CertifyAttest, r.CertifySignature = ik.Attest, ik.Signature
		}, []error{ErrTPMIdentity, tpm.ErrCertifyNonce}},
		{"CSR for another key", func(t *testing.T, r *TPMRequest, nonce []byte) {
			csr, err := ca.ParseCSR(r.CSR)
			if err != nil {
				t.Fatal(err)
			}
			r.CSR = catest.CSR(t, catest.Key(t), csr.Subject, csr.Extensions...)
		}, []error{ErrKeyMismatch}},
		{"IAK of another TPM", func(t *testing.T, r *TPMRequest, nonce []byte) {
			ik, err := other.IdentityKeys(ctx, nonce)
			if err != nil {
				t.Fatal(err)
			}
			r.IAKPublic, r.IDevIDPublic, r.CertifyAttest, r.CertifySignature = ik.IAKPublic, ik.IDevIDPublic, ik.Attest, ik.Signature
		}, []error{ErrTPMIdentity}},
		{"IDevID of another TPM", func(t *testing.T, r *TPMRequest, nonce []byte) {
			// The other TPM's IDevID, certified by the other TPM's IAK,
			// under this chip's IAK: the certification does not verify.
			ik, err := other.IdentityKeys(ctx, nonce)
			if err != nil {
				t.Fatal(err)
			}
			r.IDevIDPublic, r.CertifyAttest, r.CertifySignature = ik.IDevIDPublic, ik.Attest, ik.Signature
		}, []error{ErrTPMIdentity, tpm.ErrCertifySignature}},
		{"quote of other PCRs", func(t *testing.T, r *TPMRequest, nonce []byte) {
			// The bootloader's, OS's and a PCR the boot never touched: the
			// app's PCR is not quoted, so the app is not bound.
			r.Evidence = resign(t, r.Evidence, func(c *evidence.Claims) {
				c.Registers, c.TPMQuote = nil, nil
				if err := d.TPM().QuoteClaims(ctx, c, &tpm.EvidenceRequest{
					Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle,
					Bank: device.EvidenceBank, PCRs: []int{0, 1, 2, 7}, EventLog: c.EventLog,
				}); err != nil {
					t.Fatal(err)
				}
			})
		}, []error{ErrReferenceValues}},
		{"quote of other PCR values", func(t *testing.T, r *TPMRequest, nonce []byte) {
			// PCR 7, which the boot never touches, was extended behind
			// the event log's back: the registers claim says what the log
			// replays to (zero), the quote what the TPM holds.
			d7 := sha256.Sum256([]byte("not in the event log"))
			if err := d.TPM().ExtendPCR(ctx, 7, map[crypto.Hash][]byte{crypto.SHA256: d7[:]}); err != nil {
				t.Fatal(err)
			}
			r.Evidence = resign(t, r.Evidence, func(c *evidence.Claims) {
				c.Registers, c.TPMQuote = nil, nil
				if err := d.TPM().QuoteClaims(ctx, c, &tpm.EvidenceRequest{
					Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle,
					Bank: device.EvidenceBank, PCRs: []int{0, 1, 2, 3, 7}, EventLog: c.EventLog,
				}); err != nil {
					t.Fatal(err)
				}
				c.Registers[device.EvidenceBank][7] = make([]byte, 32)
			})
		}, []error{ErrEvidence, tpm.ErrQuotePCRs}},
		{"evidence without a quote", func(t *testing.T, r *TPMRequest, nonce []byte) {
			r.Evidence = resign(t, r.Evidence, func(c *evidence.Claims) { c.TPMQuote = nil })
		}, []error{ErrEvidence}},
		{"UEID of another chip", func(t *testing.T, r *TPMRequest, nonce []byte) {
			id, err := other.Identity(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r.Evidence = resign(t, r.Evidence, func(c *evidence.Claims) { c.UEID = id.UEID })
			r.UEID = id.UEID
		}, []error{ErrTPMIdentity}},
		{"truncated IAK", func(t *testing.T, r *TPMRequest, nonce []byte) {
			r.IAKPublic = r.IAKPublic[:len(r.IAKPublic)-1]
		}, []error{ErrTPMIdentity, tpm.ErrCertifyMalformed}},
		{"no certification", func(t *testing.T, r *TPMRequest, nonce []byte) {
			r.CertifySignature = nil
		}, []error{ErrBadRequest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, nonce := e.request(t, d)
			tc.change(t, r, nonce)
			i0, l0 := e.counts(t)
			res, err := e.svc.ProvisionTPM(ctx, e.station, r)
			t.Logf("refused: %v", err)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Fatalf("ProvisionTPM: %v (result %v), want %v", err, res, w)
				}
			}
			if i1, l1 := e.counts(t); i1 != i0 || l1 != l0 {
				t.Fatalf("a refused request issued %d and logged %d", i1-i0, l1-l0)
			}
			if _, err := e.reg.Get(ctx, r.UEID); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("a refused request is in the registry: %v", err)
			}
		})
	}

	// A nonce serves once, and a station must be allowed.
	r, _ := e.request(t, d)
	if _, err := e.svc.ProvisionTPM(ctx, Station{Name: "st-1", Products: []string{"sku-b"}}, r); !errors.Is(err, ErrStationNotAllowed) {
		t.Fatalf("station not allowed: %v", err)
	}
	if _, err := e.svc.ProvisionTPM(ctx, e.station, r); !errors.Is(err, ErrNonce) {
		t.Fatalf("spent nonce: %v", err)
	}
	if _, err := e.svc.ProvisionTPM(ctx, e.station, nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("nil request: %v", err)
	}
	if n, _ := e.issuer.n.Load(), 0; n != 0 {
		t.Fatalf("%d certificates issued", n)
	}
}

// TestProvisionTPMOtherFirmware: a chip that booted firmware other than
// the product's test firmware is refused.
func TestProvisionTPMOtherFirmware(t *testing.T) {
	e := newTPMEnv(t)
	d := e.chip(t, tpmFirmware(t, e.v, "some other app"))
	r, _ := e.request(t, d)
	if _, err := e.svc.ProvisionTPM(t.Context(), e.station, r); !errors.Is(err, ErrReferenceValues) {
		t.Fatalf("other firmware: %v", err)
	}
	if i, l := e.counts(t); i != 0 || l != 0 {
		t.Fatal("issued")
	}
}

// FuzzProvisionTPM: mangled TPM parts of a request (public areas,
// certification, CSR) are refused with a typed error. It runs the TPM
// checks of ProvisionTPM on the good request's verified evidence, so that
// every input reaches them (the evidence itself is fuzzed by
// pluton/evidence, and a spent nonce would stop ProvisionTPM first).
func FuzzProvisionTPM(f *testing.F) {
	e := newTPMEnv(f)
	d := e.chip(f, e.fw)
	good, nonce := e.request(f, d)
	tok, err := evidence.Verify(good.Evidence, &evidence.VerifyOptions{Nonce: nonce})
	if err != nil {
		f.Fatal(err)
	}
	policy := e.svc.products["sku-a"]
	goodCSR, err := ca.ParseCSR(good.CSR)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.IAKPublic, good.IDevIDPublic, good.CertifyAttest, good.CertifySignature, good.CSR)
	f.Add(good.IDevIDPublic, good.IAKPublic, good.CertifyAttest, good.CertifySignature, good.CSR)
	f.Add(good.IAKPublic, good.IDevIDPublic, good.CertifySignature, good.CertifyAttest, good.CSR)
	f.Add(good.IAKPublic, good.IDevIDPublic[:len(good.IDevIDPublic)-2], good.CertifyAttest, good.CertifySignature, good.CSR[:30])
	f.Add([]byte{0}, []byte{0}, []byte{0}, []byte{0}, []byte{0x30})
	f.Fuzz(func(t *testing.T, iak, idevid, attest, sig, csrDER []byte) {
		req := *good
		req.IAKPublic, req.IDevIDPublic, req.CertifyAttest, req.CertifySignature, req.CSR = iak, idevid, attest, sig, csrDER
		err := checkTPMRequestSizes(e.station, &req)
		if err == nil {
			var csr *ca.CheckedCSR
			csr, err = checkTPM(policy, tok, &req)
			if err == nil {
				// Whatever is accepted certifies the good request's key.
				if !bytes.Equal(csr.PublicKeyInfo(), goodCSR.RawSubjectPublicKeyInfo) {
					t.Fatal("accepted a request for another key")
				}
				return
			}
		}
		for _, sentinel := range []error{ErrBadRequest, ErrEvidence, ErrTPMIdentity, ErrKeyMismatch, ErrReferenceValues} {
			if errors.Is(err, sentinel) {
				return
			}
		}
		t.Fatalf("untyped error %v", err)
	})
}

// TestProvisionTPMClone: a UEID (an IAK) already registered with another
// IDevID key is a clone: refused, recorded as an incident, nothing issued.
func TestProvisionTPMClone(t *testing.T) {
	ctx := t.Context()
	e := newTPMEnv(t)
	d := e.chip(t, e.fw)
	r, _ := e.request(t, d)
	spki, err := x509.MarshalPKIXPublicKey(catest.Key(t).Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Reserve(ctx, &registry.ReserveRequest{UEID: r.UEID, PublicKey: spki, Product: "sku-a", Lot: "lot-0", Station: "st-0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ProvisionTPM(ctx, e.station, r); !errors.Is(err, registry.ErrClone) {
		t.Fatalf("clone: %v", err)
	}
	if inc, err := e.reg.Incidents(ctx); err != nil || len(inc) != 1 {
		t.Fatalf("incidents %d, %v", len(inc), err)
	}
	if i, l := e.counts(t); i != 0 || l != 0 {
		t.Fatal("issued")
	}
}
