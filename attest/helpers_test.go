package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/boot/boottest"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/evidence"
)

const product = "sku-a"

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a factory (CA hierarchy, vendor signing keys), a registry, a
// store and a verifier.
type env struct {
	t       testing.TB
	ctx     context.Context
	h       *catest.Hierarchy
	ca      *ca.Local
	vendor  *boottest.Vendor
	devices *MemoryDevices
	store   Store
	v       *Verifier
	clock   *testClock
	earKey  crypto.Signer
}

type envOptions struct {
	memoryStore bool
	signer      crypto.Signer
	cacheSize   int
	maxNonces   int
	store       Store
	// vendorAlg is the vendor's signing algorithm (default ECDSA P-384).
	vendorAlg pluton.Algorithm
}

func newEnv(t testing.TB, o *envOptions) *env {
	t.Helper()
	if o == nil {
		o = &envOptions{}
	}
	ctx := context.Background()
	e := &env{t: t, ctx: ctx, devices: &MemoryDevices{}}
	e.h = catest.NewHierarchy(t, product)
	// The clock starts after the hierarchy is made: its certificates'
	// notBefore is the time they were made, truncated to the second, and
	// a clock read before could fall in the second before it.
	e.clock = &testClock{t: time.Now()}
	var err error
	e.ca, err = ca.NewLocal(&ca.LocalOptions{Root: e.h.Root, Products: e.h.Products, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	alg := o.vendorAlg
	if alg == 0 {
		alg = pluton.ECDSAP384
	}
	e.vendor = boottest.NewVendor(t, product, alg)
	if o.store != nil {
		e.store = o.store
	} else if o.memoryStore {
		e.store = NewMemoryStore()
	} else {
		s, err := OpenSQLite(ctx, &SQLiteConfig{Path: filepath.Join(t.TempDir(), "attest.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		e.store = s
	}
	e.earKey = o.signer
	if e.earKey == nil {
		e.earKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	e.v, err = New(&Config{
		Roots:          []*x509.Certificate{e.h.Root},
		CRLs:           [][]byte{e.crl()},
		Devices:        e.devices,
		Store:          e.store,
		Endorsements:   e.endorsements(),
		Signer:         e.earKey,
		Issuer:         e.ca,
		NonceKey:       bytes.Repeat([]byte{0x42}, 32),
		NonceLifetime:  time.Minute,
		ChainCacheSize: o.cacheSize,
		MaxNonces:      o.maxNonces,
		VerifierID:     VerifierID{Developer: "rootline", Build: "test"},
		Now:            e.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.v.Close() })
	return e
}

func (e *env) crl() []byte {
	der, err := e.ca.CRLFor(e.ctx, product)
	if err != nil {
		e.t.Fatal(err)
	}
	return der
}

// images are the layers a device boots: OS at osSVN, version
// "1.<osSVN>.0".
func (e *env) images(osSVN uint64) *device.Images {
	t := e.t
	return &device.Images{
		Policy:     e.vendor.Policy,
		Bootloader: e.vendor.Image(t, boot.Bootloader, "1.0.0", 1, "bootloader code"),
		OS:         e.vendor.Image(t, boot.OS, "1."+string(rune('0'+osSVN))+".0", osSVN, "os code v"+string(rune('0'+osSVN))),
		App:        e.vendor.Image(t, boot.App, "2.1.0", 1, "app code"),
	}
}

// release returns the reference values of the layers booted from im.
func (e *env) release(name string, im *device.Images) Release {
	r := Release{Name: name}
	for _, b := range [][]byte{im.Bootloader, im.OS, im.App} {
		img, err := boot.ParseImage(b)
		if err != nil {
			e.t.Fatal(err)
		}
		m := img.Manifest
		alg := map[crypto.Hash]string{crypto.SHA256: "sha-256", crypto.SHA384: "sha-384"}[m.DigestAlg]
		r.Layers = append(r.Layers, LayerReference{
			Layer: string(m.Layer), Version: m.Version, MinSVN: m.SVN, Signer: m.SignerKeyIDs[0],
			Digests: []Digest{{Alg: alg, Value: m.Digest}},
		})
	}
	return r
}

// endorsements lists releases with OS SVNs 1 to 3.
func (e *env) endorsements() *Endorsements {
	p := ProductEndorsements{Product: product}
	for svn := uint64(1); svn <= 3; svn++ {
		p.Releases = append(p.Releases, e.release("r"+string(rune('0'+svn)), e.images(svn)))
	}
	return &Endorsements{Version: EndorsementsVersion, Products: []ProductEndorsements{p}}
}

// fieldDevice is an emulated device, booted, provisioned and registered.
type fieldDevice struct {
	*device.Device
	ueid   []byte
	chain  [][]byte // IDevID, intermediate, root
	idevid *x509.Certificate
}

// newDevice makes a device that booted OS SVN osSVN, got its IDevID from
// the factory and is registered as active.
func (e *env) newDevice(osSVN uint64) *fieldDevice {
	t, ctx := e.t, e.ctx
	t.Helper()
	d, err := device.Init(ctx, t.TempDir(), &device.InitRequest{Product: product, RootKeyHash: e.vendor.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Boot(ctx, e.images(osSVN)); err != nil {
		t.Fatal(err)
	}
	fr, err := d.FactoryRequest(ctx, []byte("factory nonce 0123"))
	if err != nil {
		t.Fatal(err)
	}
	chain := e.issueIDevID(fr.UEID, fr.CSR)
	if err := d.InstallIdentity(ctx, chain); err != nil {
		t.Fatal(err)
	}
	if err := d.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	fd := &fieldDevice{Device: d, ueid: fr.UEID, chain: chain}
	fd.idevid, _ = x509.ParseCertificate(chain[0])
	e.register(fd.ueid, chain)
	return fd
}

func (e *env) issueIDevID(ueid, csr []byte) [][]byte {
	iss, err := e.ca.Issue(e.ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: product, UEID: ueid, CSR: csr})
	if err != nil {
		e.t.Fatal(err)
	}
	chain := [][]byte{iss.Certificate.Raw}
	for _, c := range iss.Chain {
		chain = append(chain, c.Raw)
	}
	return chain
}

func (e *env) register(ueid []byte, chain [][]byte) {
	e.devices.Put(&DeviceRecord{UEID: ueid, Product: product, State: RegistryActive, IDevIDChain: chain})
}

// attest has d attest over a fresh nonce.
func (e *env) evidence(d *device.Device) []byte {
	e.t.Helper()
	n, err := e.v.Nonce(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	tok, err := d.Attest(e.ctx, n)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) attest(req *Request) *Result {
	e.t.Helper()
	res, err := e.v.Attest(e.ctx, req)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// synthDevice is a device made here from its parts, for evidence no
// emulated device would send: a DeviceID key with its self-signed
// certificate, Alias keys and certificates, an IDevID.
type synthDevice struct {
	ueid     []byte
	deviceID *ecdsa.PrivateKey
	aliases  []*ecdsa.PrivateKey
	chain    [][]byte // x5chain, leaf first
	idevid   [][]byte
	claims   *evidence.Claims
}

// newSynth makes a registered synthetic device whose claims match release
// r1 of the endorsements, with two Alias layers.
func (e *env) newSynth() *synthDevice { return e.newSynthN(2) }

// newSynthN is newSynth with n Alias layers.
func (e *env) newSynthN(n int) *synthDevice {
	t := e.t
	t.Helper()
	s := &synthDevice{ueid: make([]byte, 16)}
	rand.Read(s.ueid)
	s.deviceID, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	devDER, err := dice.DeviceIDCertificate(s.deviceID, &dice.CertificateTemplate{IsCA: true, MaxPathLen: -1, UEID: s.ueid})
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := x509.ParseCertificate(devDER)
	var signer crypto.Signer = s.deviceID
	chain := [][]byte{devDER}
	for i := range n {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		last := i == n-1
		der, err := dice.AliasCertificate(signer, issuer, &dice.CertificateTemplate{Subject: k.Public(), IsCA: !last, MaxPathLen: max(0, n-2-i)})
		if err != nil {
			t.Fatal(err)
		}
		issuer, _ = x509.ParseCertificate(der)
		signer = k
		s.aliases = append(s.aliases, k)
		chain = append([][]byte{der}, chain...)
	}
	s.chain = chain
	s.idevid = e.issueIDevID(s.ueid, catest.CSR(t, s.deviceID, pkix.Name{}))
	e.register(s.ueid, s.idevid)
	s.claims = &evidence.Claims{UEID: s.ueid, Product: product, Lifecycle: pluton.Provisioned, Counters: map[string]uint64{}}
	for _, l := range e.release("x", e.images(1)).Layers {
		s.claims.Layers = append(s.claims.Layers, evidence.Measurement{
			Layer: l.Layer, Version: l.Version, SVN: l.MinSVN, Digest: l.Digests[0].Value,
			DigestAlg: hashByName[l.Digests[0].Alg], SignerID: l.Signer,
		})
	}
	return s
}

// sign signs the claims over nonce with the top Alias key and chain.
func (s *synthDevice) sign(t testing.TB, nonce []byte, chain [][]byte) []byte {
	t.Helper()
	c := *s.claims
	c.Nonce = nonce
	tok, err := evidence.Sign(rand.Reader, s.aliases[len(s.aliases)-1], pluton.ECDSAP256, &c, chain)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// snapshot is what the store holds of a device.
type snapshot struct {
	state    *DeviceState
	verdicts int
}

func (e *env) snapshot(ueid []byte) snapshot {
	e.t.Helper()
	st, err := e.store.State(e.ctx, ueid)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for before := int64(0); ; {
		vs, err := e.store.Verdicts(e.ctx, ueid, before, MaxPage)
		if err != nil {
			e.t.Fatal(err)
		}
		n += len(vs)
		if len(vs) < MaxPage {
			break
		}
		before = vs[len(vs)-1].ID
	}
	return snapshot{st, n}
}

func copyDir(t testing.TB, dst, src string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// parseNonce returns a token's (untrusted) nonce.
func parseNonce(tok []byte) ([]byte, error) {
	t, err := evidence.Parse(tok)
	if err != nil {
		return nil, err
	}
	return t.Claims.Nonce, nil
}

func catestKey384(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
