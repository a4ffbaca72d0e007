package provision

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/internal/nonce"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/boot/boottest"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/translog"
)

// vendor is a product's signing setup (boottest).
type vendor struct{ *boottest.Vendor }

func newVendor(t testing.TB, product string) *vendor {
	return &vendor{boottest.NewVendor(t, product, pluton.ECDSAP256)}
}

// testFirmware is the factory test firmware: app is the app's payload.
func (v *vendor) testFirmware(t testing.TB, app string) *device.Images {
	return &device.Images{
		Policy:     v.Policy,
		Bootloader: v.Image(t, boot.Bootloader, "1.0.0", 1, "factory bootloader"),
		OS:         v.Image(t, boot.OS, "1.0.0", 1, "factory os"),
		App:        v.Image(t, boot.App, "1.0.0", 1, app),
	}
}

// countingIssuer counts the certificates the CA signed.
type countingIssuer struct {
	ca.Issuer
	n atomic.Int64
}

func (c *countingIssuer) Issue(ctx context.Context, req *ca.IssueRequest) (*ca.Issued, error) {
	iss, err := c.Issuer.Issue(ctx, req)
	if err == nil {
		c.n.Add(1)
	}
	return iss, err
}

type env struct {
	svc      *Service
	reg      registry.Registry
	log      *translog.Log
	verifier string
	issuer   *countingIssuer
	h        *catest.Hierarchy
	v        *vendor
	fw       *device.Images
	now      time.Time
	station  Station
	lastCSR  []byte
}

// newEnv makes an environment with an SQLite registry.
func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOn(t, openSQLite)
}

// newEnvOn makes an environment with the registry open makes.
func newEnvOn(t testing.TB, open opener) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), station: Station{Name: "st-1", Products: []string{"sku-a"}}}
	e.reg = open(t)
	_, logKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := translog.NewSigner("log.rootline.test", logKey)
	if err != nil {
		t.Fatal(err)
	}
	e.verifier = signer.VerifierKey()
	if e.log, err = translog.New(translog.NewMemStore(), signer); err != nil {
		t.Fatal(err)
	}
	e.h = catest.NewHierarchy(t, "sku-a", "sku-b")
	local, err := ca.NewLocal(&ca.LocalOptions{Root: e.h.Root, Products: e.h.Products})
	if err != nil {
		t.Fatal(err)
	}
	e.issuer = &countingIssuer{Issuer: local}

	// The reference values are those of the test firmware, as a first
	// chip measures them.
	e.v = newVendor(t, "sku-a")
	e.fw = e.v.testFirmware(t, "factory test app")
	d := e.chip(t, e.fw)
	ms, err := d.Manifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]LayerReference{}
	for _, m := range ms {
		refs[string(m.Layer)] = LayerReference{Digests: [][]byte{m.Digest}, MinSVN: 1}
	}
	products := map[string]*ProductPolicy{}
	for _, p := range e.h.Products {
		products[p.Name] = &ProductPolicy{
			HWType: p.HWType, Chain: []*x509.Certificate{p.Certificate, e.h.Root}, ReferenceValues: refs,
		}
	}
	e.svc, err = New(&Config{
		Registry: e.reg, Issuer: e.issuer, Log: e.log, Products: products,
		NonceKey: bytes.Repeat([]byte{7}, 32), Now: func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// chip makes a chip of sku-a booted with fw.
func (e *env) chip(t testing.TB, fw *device.Images) *device.Device {
	t.Helper()
	d, err := device.Init(context.Background(), t.TempDir(), &device.InitRequest{Product: e.v.Product, RootKeyHash: e.v.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(context.Background(), fw); err != nil {
		t.Fatal(err)
	}
	return d
}

// request has the chip answer a fresh nonce of station st.
func (e *env) request(t testing.TB, d *device.Device, st Station) *Request {
	t.Helper()
	ctx := context.Background()
	nonce, err := e.svc.Nonce(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := d.FactoryRequest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return &Request{UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "lot-1"}
}

func (e *env) counts(t testing.TB) (issued, logged int64) {
	t.Helper()
	n, err := e.log.Size(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return e.issuer.n.Load(), n
}

// refused checks that a request fails with want and issues nothing.
func (e *env) refused(t *testing.T, st Station, req *Request, want error) {
	t.Helper()
	i0, l0 := e.counts(t)
	res, err := e.svc.Provision(context.Background(), st, req)
	if !errors.Is(err, want) {
		t.Fatalf("Provision: %v (result %v), want %v", err, res, want)
	}
	if i1, l1 := e.counts(t); i1 != i0 || l1 != l0 {
		t.Fatalf("refused request issued %d and logged %d", i1-i0, l1-l0)
	}
}

func TestProvisionEndToEnd(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newEnvOn(t, open)
		d := e.chip(t, e.fw)
		req := e.request(t, d, e.station)
		res, err := e.svc.Provision(ctx, e.station, req)
		if err != nil {
			t.Fatal(err)
		}

		// The chain verifies to the root, and certifies the DeviceID key.
		leaf, err := x509.ParseCertificate(res.Chain[0])
		if err != nil {
			t.Fatal(err)
		}
		inter := x509.NewCertPool()
		inter.AddCert(e.h.Products[0].Certificate)
		roots := x509.NewCertPool()
		roots.AddCert(e.h.Root)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatal(err)
		}
		_, serial, err := ca.HardwareModuleName(leaf)
		if err != nil || !bytes.Equal(serial, req.UEID) {
			t.Fatalf("HardwareModuleName serial %x, %v; want UEID %x", serial, err, req.UEID)
		}
		if len(res.Chain) != 3 || !bytes.Equal(res.Chain[2], e.h.Root.Raw) {
			t.Fatal("chain does not end with the root")
		}

		// The registry has it ISSUED, with this certificate.
		rec, err := e.reg.Get(ctx, req.UEID)
		if err != nil || rec.State != registry.Issued || !bytes.Equal(rec.Certificate, res.Chain[0]) {
			t.Fatalf("record %+v, %v", rec, err)
		}

		// The log has it, with a verifying inclusion proof.
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

		// The chip installs it, the station confirms.
		if err := d.InstallIdentity(ctx, res.Chain); err != nil {
			t.Fatal(err)
		}
		if lc, _ := d.Chip().Lifecycle(ctx); lc != pluton.Provisioned {
			t.Fatalf("chip lifecycle %v", lc)
		}
		if err := e.svc.Confirm(ctx, Station{Name: "st-2", Products: []string{"sku-b"}}, req.UEID); !errors.Is(err, ErrStationNotAllowed) {
			t.Fatalf("Confirm by a station of another product: %v", err)
		}
		if err := e.svc.Confirm(ctx, e.station, req.UEID); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Confirm(ctx, e.station, req.UEID); err != nil {
			t.Fatalf("second Confirm: %v", err)
		}
		if rec, err = e.reg.Get(ctx, req.UEID); err != nil || rec.State != registry.Complete {
			t.Fatalf("record %+v, %v", rec, err)
		}
		if i, l := e.counts(t); i != 1 || l != 1 {
			t.Fatalf("issued %d, logged %d; want 1 and 1", i, l)
		}
	})
}

func TestProvisionIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newEnvOn(t, open)
		d := e.chip(t, e.fw)
		first, err := e.svc.Provision(ctx, e.station, e.request(t, d, e.station))
		if err != nil {
			t.Fatal(err)
		}
		// The station crashed and starts again with a new nonce: same answer.
		again, err := e.svc.Provision(ctx, e.station, e.request(t, d, e.station))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Chain[0], again.Chain[0]) || first.LogIndex != again.LogIndex {
			t.Fatal("a retry got another certificate")
		}
		// After a restart of the service (fresh process: no cache of the
		// log), and after Confirm, still the same.
		if err := e.svc.Confirm(ctx, e.station, first.Chain[0][:0:0]); err == nil {
			t.Fatal("Confirm of an empty UEID succeeded")
		}
		req := e.request(t, d, e.station)
		if err := e.svc.Confirm(ctx, e.station, req.UEID); err != nil {
			t.Fatal(err)
		}
		e.svc.logIndex = map[[32]byte]int64{}
		third, err := e.svc.Provision(ctx, e.station, req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Chain[0], third.Chain[0]) || first.LogIndex != third.LogIndex {
			t.Fatal("a retry after restart got another certificate or index")
		}
		if i, l := e.counts(t); i != 1 || l != 1 {
			t.Fatalf("issued %d, logged %d; want 1 and 1", i, l)
		}
	})
}

// TestProvisionCrashRecovery puts the registry in the states a crash of the
// service leaves, and checks that a retry ends with one certificate, in the
// registry and the log.
func TestProvisionCrashRecovery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		t.Run("after Issue, before MarkIssued", func(t *testing.T) {
			e := newEnvOn(t, open)
			d := e.chip(t, e.fw)
			req := e.request(t, d, e.station)
			csr, err := ca.CheckCSR(req.CSR)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.reg.Reserve(ctx, &registry.ReserveRequest{UEID: req.UEID, PublicKey: csr.PublicKeyInfo(),
				Product: "sku-a", Lot: "lot-1", Station: "st-1"}); err != nil {
				t.Fatal(err)
			}
			lost, err := e.svc.issue(ctx, e.svc.products["sku-a"], req, csr)
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.svc.Provision(ctx, e.station, req)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(res.Chain[0], lost.Raw) {
				t.Fatal("the lost certificate was delivered")
			}
			if _, l := e.counts(t); l != 1 {
				t.Fatalf("logged %d", l)
			}
		})
		t.Run("after MarkIssued, before Append", func(t *testing.T) {
			e := newEnvOn(t, open)
			d := e.chip(t, e.fw)
			req := e.request(t, d, e.station)
			csr, err := ca.CheckCSR(req.CSR)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.reg.Reserve(ctx, &registry.ReserveRequest{UEID: req.UEID, PublicKey: csr.PublicKeyInfo(),
				Product: "sku-a", Lot: "lot-1", Station: "st-1"}); err != nil {
				t.Fatal(err)
			}
			cert, err := e.svc.issue(ctx, e.svc.products["sku-a"], req, csr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.reg.MarkIssued(ctx, req.UEID, cert.Raw, cert.SerialNumber); err != nil {
				t.Fatal(err)
			}
			// Another chip is logged meanwhile.
			if _, err := e.svc.Provision(ctx, e.station, e.request(t, e.chip(t, e.fw), e.station)); err != nil {
				t.Fatal(err)
			}
			res, err := e.svc.Provision(ctx, e.station, req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(res.Chain[0], cert.Raw) || res.LogIndex != 1 {
				t.Fatalf("retry: index %d, same certificate %v", res.LogIndex, bytes.Equal(res.Chain[0], cert.Raw))
			}
			// And once logged, a further retry finds it (no cache).
			e.svc.logIndex = map[[32]byte]int64{}
			res, err = e.svc.Provision(ctx, e.station, e.request(t, d, e.station))
			if err != nil || res.LogIndex != 1 {
				t.Fatalf("second retry: %v, index %d", err, res.LogIndex)
			}
			if _, l := e.counts(t); l != 2 {
				t.Fatalf("logged %d, want 2", l)
			}
		})
	})
}

func TestProvisionRefusals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newEnvOn(t, open)
		d := e.chip(t, e.fw)

		t.Run("replayed nonce", func(t *testing.T) {
			req := e.request(t, d, e.station)
			if _, err := e.svc.Provision(ctx, e.station, req); err != nil {
				t.Fatal(err)
			}
			e.refused(t, e.station, req, ErrNonce)
		})
		t.Run("nonce of another station", func(t *testing.T) {
			req := e.request(t, d, Station{Name: "st-2", Products: []string{"sku-a"}})
			e.refused(t, e.station, req, ErrNonce)
		})
		t.Run("expired nonce", func(t *testing.T) {
			req := e.request(t, d, e.station)
			e.now = e.now.Add(2 * DefaultNonceLifetime)
			defer func() { e.now = e.now.Add(-2 * DefaultNonceLifetime) }()
			e.refused(t, e.station, req, ErrNonce)
		})
		t.Run("forged nonce", func(t *testing.T) {
			fr, err := d.FactoryRequest(ctx, make([]byte, NonceSize))
			if err != nil {
				t.Fatal(err)
			}
			e.refused(t, e.station, &Request{UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "l"}, ErrNonce)
		})
		t.Run("station not allowed", func(t *testing.T) {
			st := Station{Name: "st-b", Products: []string{"sku-b"}}
			e.refused(t, st, e.request(t, d, st), ErrStationNotAllowed)
		})
		t.Run("unknown product", func(t *testing.T) {
			st := Station{Name: "st-1", Products: []string{"sku-a", "sku-z"}}
			req := e.request(t, d, st)
			req.Product = "sku-z"
			e.refused(t, st, req, ErrStationNotAllowed)
		})
		t.Run("tampered evidence", func(t *testing.T) {
			req := e.request(t, d, e.station)
			req.Evidence[len(req.Evidence)-1] ^= 1
			e.refused(t, e.station, req, ErrEvidence)
		})
		// checkChip verifies the evidence before it spends the nonce;
		// the refusals stay those of the documented order.
		t.Run("tampered evidence spends its nonce", func(t *testing.T) {
			req := e.request(t, d, e.station)
			good := bytes.Clone(req.Evidence)
			req.Evidence[len(req.Evidence)-1] ^= 1
			e.refused(t, e.station, req, ErrEvidence)
			req.Evidence = good
			e.refused(t, e.station, req, ErrNonce)
		})
		t.Run("tampered evidence with a spent nonce", func(t *testing.T) {
			req := e.request(t, d, e.station)
			if _, err := e.svc.Provision(ctx, e.station, req); err != nil {
				t.Fatal(err)
			}
			req.Evidence[len(req.Evidence)-1] ^= 1
			e.refused(t, e.station, req, ErrNonce)
		})
		t.Run("tampered evidence of a station not allowed", func(t *testing.T) {
			st := Station{Name: "st-b", Products: []string{"sku-b"}}
			req := e.request(t, d, st)
			req.Evidence[len(req.Evidence)-1] ^= 1
			e.refused(t, st, req, ErrStationNotAllowed)
		})
		t.Run("malformed evidence", func(t *testing.T) {
			req := e.request(t, d, e.station)
			req.Evidence = req.Evidence[:len(req.Evidence)/2]
			e.refused(t, e.station, req, ErrEvidence)
		})
		t.Run("UEID of another chip", func(t *testing.T) {
			req := e.request(t, d, e.station)
			req.UEID = catest.UEID(t)
			e.refused(t, e.station, req, ErrEvidence)
		})
		t.Run("product not the chip's", func(t *testing.T) {
			st := Station{Name: "st-1", Products: []string{"sku-a", "sku-b"}}
			req := e.request(t, d, st)
			req.Product = "sku-b"
			e.refused(t, st, req, ErrEvidence)
		})
		t.Run("CSR of another chip", func(t *testing.T) {
			other := e.request(t, e.chip(t, e.fw), e.station)
			req := e.request(t, d, e.station)
			req.CSR = other.CSR
			e.refused(t, e.station, req, ErrKeyMismatch)
		})
		t.Run("malformed CSR", func(t *testing.T) {
			req := e.request(t, d, e.station)
			req.CSR = []byte("not a CSR")
			e.refused(t, e.station, req, ErrBadRequest)
		})
		t.Run("wrong test firmware", func(t *testing.T) {
			bad := e.chip(t, e.v.testFirmware(t, "some other app"))
			e.refused(t, e.station, e.request(t, bad, e.station), ErrReferenceValues)
		})
		t.Run("oversized fields", func(t *testing.T) {
			req := e.request(t, d, e.station)
			req.Lot = string(make([]byte, registry.MaxNameLen+1))
			e.refused(t, e.station, req, ErrBadRequest)
			e.refused(t, e.station, nil, ErrBadRequest)
			e.refused(t, Station{Products: []string{"sku-a"}}, e.request(t, d, e.station), ErrBadRequest)
		})
	})
}

// forgeClone makes the request of a chip claiming ueid with a key of its own:
// a software DeviceID key and a DICE chain under it, over the claims of a
// genuine chip's evidence.
func forgeClone(t *testing.T, genuine *Request, ueid []byte) *Request {
	t.Helper()
	tok, err := evidence.Parse(genuine.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	devKey, aliasKey := catest.Key(t), catest.Key(t)
	devDER, err := dice.DeviceIDCertificate(devKey, &dice.CertificateTemplate{IsCA: true, MaxPathLen: -1, UEID: ueid})
	if err != nil {
		t.Fatal(err)
	}
	devCert, err := x509.ParseCertificate(devDER)
	if err != nil {
		t.Fatal(err)
	}
	aliasDER, err := dice.AliasCertificate(devKey, devCert, &dice.CertificateTemplate{Subject: aliasKey.Public()})
	if err != nil {
		t.Fatal(err)
	}
	claims := *tok.Claims
	claims.UEID = ueid
	ev, err := evidence.Sign(rand.Reader, aliasKey, pluton.ECDSAP256, &claims, [][]byte{aliasDER, devDER})
	if err != nil {
		t.Fatal(err)
	}
	return &Request{UEID: ueid, CSR: catest.CSR(t, devKey, pkix.Name{}), Evidence: ev, Product: genuine.Product, Lot: genuine.Lot}
}

func TestProvisionClone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newEnvOn(t, open)
		d := e.chip(t, e.fw)
		req := e.request(t, d, e.station)
		if _, err := e.svc.Provision(ctx, e.station, req); err != nil {
			t.Fatal(err)
		}
		// The forgery passes every check of its own (a control: with a new
		// UEID it is provisioned)...
		fresh := forgeClone(t, e.request(t, e.chip(t, e.fw), e.station), catest.UEID(t))
		if _, err := e.svc.Provision(ctx, e.station, fresh); err != nil {
			t.Fatalf("forged chip with a new UEID: %v", err)
		}
		// ...and with the first chip's UEID it is a clone.
		clone := forgeClone(t, e.request(t, e.chip(t, e.fw), e.station), req.UEID)
		e.refused(t, e.station, clone, registry.ErrClone)
		inc, err := e.reg.Incidents(ctx)
		if err != nil || len(inc) != 1 || !bytes.Equal(inc[0].UEID, req.UEID) || inc[0].Station != "st-1" {
			t.Fatalf("incidents %+v, %v", inc, err)
		}
	})
}

func TestProvisionQuota(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newEnvOn(t, open)
		if err := e.reg.SetQuota(ctx, registry.ScopeStation, "st-1", 1); err != nil {
			t.Fatal(err)
		}
		d := e.chip(t, e.fw)
		if _, err := e.svc.Provision(ctx, e.station, e.request(t, d, e.station)); err != nil {
			t.Fatal(err)
		}
		e.refused(t, e.station, e.request(t, e.chip(t, e.fw), e.station), registry.ErrQuotaExceeded)
		// A retry for the chip already counted still gets its certificate.
		if _, err := e.svc.Provision(ctx, e.station, e.request(t, d, e.station)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNonceCacheBound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newEnvOn(t, open)
		var err error
		if e.svc.nonces, err = nonce.New(&nonce.Config{Key: bytes.Repeat([]byte{9}, 32), Label: nonceLabel,
			Lifetime: DefaultNonceLifetime, MaxEntries: 2, Now: e.svc.now}); err != nil {
			t.Fatal(err)
		}
		var ns [][]byte
		for range 3 {
			n, err := e.svc.Nonce(ctx, e.station)
			if err != nil {
				t.Fatal(err)
			}
			ns = append(ns, n)
		}
		for _, n := range ns[:2] {
			if err := e.svc.spendNonce("st-1", n); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.svc.spendNonce("st-1", ns[2]); !errors.Is(err, ErrNonce) {
			t.Fatalf("full cache: %v", err)
		}
		// Two windows later the spent nonces have expired and leave room.
		e.now = e.now.Add(2 * DefaultNonceLifetime)
		n, _ := e.svc.Nonce(ctx, e.station)
		if err := e.svc.spendNonce("st-1", n); err != nil {
			t.Fatal(err)
		}
		if e.svc.nonces.Len() != 1 {
			t.Fatalf("cache holds %d nonces", e.svc.nonces.Len())
		}
	})
}

// racingRegistry stands for another replica that records its own
// certificate for the chip between this replica's Reserve and MarkIssued.
type racingRegistry struct {
	registry.Registry
	e    *env
	done bool
}

func (r *racingRegistry) Reserve(ctx context.Context, req *registry.ReserveRequest) (*registry.Record, error) {
	rec, err := r.Registry.Reserve(ctx, req)
	if err != nil || r.done {
		return rec, err
	}
	r.done = true
	iss, err := r.e.issuer.Issue(ctx, &ca.IssueRequest{CSR: r.e.lastCSR, Profile: ca.ProfileIDevID, Product: req.Product, UEID: req.UEID})
	if err != nil {
		return nil, err
	}
	if _, err := r.Registry.MarkIssued(ctx, req.UEID, iss.Certificate.Raw, iss.Certificate.SerialNumber); err != nil {
		return nil, err
	}
	return rec, nil // the stale ISSUING record
}

func TestProvisionLostRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newEnvOn(t, open)
		e.svc.reg = &racingRegistry{Registry: e.reg, e: e}
		d := e.chip(t, e.fw)
		req := e.request(t, d, e.station)
		e.lastCSR = req.CSR
		res, err := e.svc.Provision(ctx, e.station, req)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := e.reg.Get(ctx, req.UEID)
		if err != nil || !bytes.Equal(rec.Certificate, res.Chain[0]) {
			t.Fatalf("delivered a certificate the registry does not hold (%v)", err)
		}
		if i, l := e.counts(t); i != 2 || l != 1 {
			t.Fatalf("issued %d, logged %d; want 2 (one discarded) and 1", i, l)
		}
		leaf, _ := e.log.Leaf(ctx, 0)
		if !bytes.Equal(leaf, res.Chain[0]) {
			t.Fatal("the log holds another certificate")
		}
	})
}

func TestProvisionConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		e := newEnvOn(t, open)
		const stations, chipsPer = 4, 3
		type job struct {
			st  Station
			req *Request
		}
		var jobs []job
		for s := range stations {
			st := Station{Name: "st-" + string(rune('a'+s)), Products: []string{"sku-a"}}
			for range chipsPer {
				d := e.chip(t, e.fw)
				// Each chip asks twice at once (a station retrying).
				jobs = append(jobs, job{st, e.request(t, d, st)}, job{st, e.request(t, d, st)})
			}
		}
		results := make([]*Result, len(jobs))
		errs := make([]error, len(jobs))
		done := make(chan int)
		for i, j := range jobs {
			go func() {
				results[i], errs[i] = e.svc.Provision(ctx, j.st, j.req)
				done <- i
			}()
		}
		for range jobs {
			<-done
		}
		for i := 0; i < len(jobs); i += 2 {
			if errs[i] != nil || errs[i+1] != nil {
				t.Fatal(errs[i], errs[i+1])
			}
			if !bytes.Equal(results[i].Chain[0], results[i+1].Chain[0]) {
				t.Fatal("two certificates for one chip")
			}
		}
		if i, l := e.counts(t); i != stations*chipsPer || l != stations*chipsPer {
			t.Fatalf("issued %d, logged %d; want %d", i, l, stations*chipsPer)
		}
	})
}

// BenchmarkProvision measures chips/s in process with the SQLite registry:
// "end-to-end" is one station driving one chip at a time (nonce, chip's
// FactoryRequest, Provision, InstallIdentity, Confirm; making and booting the
// chip is not timed); "service" is the service's part alone (Provision and
// Confirm, requests made beforehand) with 8 concurrent stations;
// "injected" is "end-to-end" for a product of injected identity, with the
// device key made, wrapped and destroyed on SoftHSM2 (benchmarkInjected).
func BenchmarkProvision(b *testing.B) {
	ctx := context.Background()
	b.Run("injected", benchmarkInjected)
	b.Run("end-to-end", func(b *testing.B) {
		e := newEnv(b)
		for b.Loop() {
			b.StopTimer()
			d, err := device.Init(ctx, b.TempDir(), &device.InitRequest{Product: e.v.Product, RootKeyHash: e.v.RootHash}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := d.Boot(ctx, e.fw); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			nonce, err := e.svc.Nonce(ctx, e.station)
			if err != nil {
				b.Fatal(err)
			}
			fr, err := d.FactoryRequest(ctx, nonce)
			if err != nil {
				b.Fatal(err)
			}
			res, err := e.svc.Provision(ctx, e.station, &Request{UEID: fr.UEID, CSR: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "lot-1"})
			if err != nil {
				b.Fatal(err)
			}
			if err := d.InstallIdentity(ctx, res.Chain); err != nil {
				b.Fatal(err)
			}
			if err := e.svc.Confirm(ctx, e.station, fr.UEID); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			d.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chips/s")
	})
	b.Run("service", func(b *testing.B) {
		e := newEnv(b)
		reqs := make(chan *Request, b.N)
		for range b.N {
			d, err := device.Init(ctx, b.TempDir(), &device.InitRequest{Product: e.v.Product, RootKeyHash: e.v.RootHash}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := d.Boot(ctx, e.fw); err != nil {
				b.Fatal(err)
			}
			reqs <- e.request(b, d, e.station)
			d.Close()
		}
		close(reqs)
		b.SetParallelism(4) // 8 goroutines on 2 cores
		b.ResetTimer()
		cpu0 := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req := <-reqs
				if _, err := e.svc.Provision(ctx, e.station, req); err != nil {
					b.Error(err)
					return
				}
				if err := e.svc.Confirm(ctx, e.station, req.UEID); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chips/s")
		// CPU time per chip: what the service would do with the machine's
		// cores to itself, whatever else runs meanwhile.
		b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
