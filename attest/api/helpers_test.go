package api

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/rootline/rootline/attest"
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

// env is a factory (CA hierarchy, vendor keys), a registry, a store, a
// verifier, and the API served over TLS on 127.0.0.1.
type env struct {
	t        testing.TB
	ctx      context.Context
	h        *catest.Hierarchy
	ca       *ca.Local
	vendor   *boottest.Vendor
	devices  *attest.MemoryDevices
	store    attest.Store
	v        *attest.Verifier
	earKey   *ecdsa.PrivateKey
	url      string
	serverCA *x509.CertPool
	operator tls.Certificate // an operator's client certificate
	stranger tls.Certificate // a client certificate of another CA
	metrics  *Metrics
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{t: t, ctx: ctx, devices: &attest.MemoryDevices{}, store: attest.NewMemoryStore()}
	e.h = catest.NewHierarchy(t, product)
	var err error
	if e.ca, err = ca.NewLocal(&ca.LocalOptions{Root: e.h.Root, Products: e.h.Products}); err != nil {
		t.Fatal(err)
	}
	e.vendor = boottest.NewVendor(t, product, pluton.ECDSAP256)
	e.earKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.metrics = NewMetrics()
	e.v, err = attest.New(&attest.Config{
		Roots: []*x509.Certificate{e.h.Root}, CRLs: [][]byte{e.crl()}, Devices: e.devices, Store: e.store,
		Endorsements: e.endorsements(), Signer: e.metrics.Signer(e.earKey), Issuer: e.ca,
		NonceKey: bytes.Repeat([]byte{0x42}, 32), VerifierID: attest.VerifierID{Developer: "rootline", Build: "test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.v.Close() })

	tlsCA, tlsCAKey := newCA(t, "TLS CA")
	e.serverCA = x509.NewCertPool()
	e.serverCA.AddCert(tlsCA)
	serverCert := leaf(t, tlsCA, tlsCAKey, "verifier", x509.ExtKeyUsageServerAuth)
	opCA, opKey := newCA(t, "Operators CA")
	e.operator = leaf(t, opCA, opKey, "alice", x509.ExtKeyUsageClientAuth)
	otherCA, otherKey := newCA(t, "Other CA")
	e.stranger = leaf(t, otherCA, otherKey, "mallory", x509.ExtKeyUsageClientAuth)
	opPool := x509.NewCertPool()
	opPool.AddCert(opCA)

	h, err := NewHandler(&HandlerConfig{Verifier: e.v, Store: e.store, OperatorCA: opPool, Metrics: e.metrics})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeListener(sctx, ln, &ServerConfig{Listen: ln.Addr().String(), Certificate: serverCert, OperatorCA: opPool}, h)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	e.url = "https://" + ln.Addr().String()
	return e
}

// client returns a client of the env's server, with cert if not nil.
func (e *env) client(json bool, cert *tls.Certificate) *Client {
	e.t.Helper()
	c, err := Dial(&ClientConfig{URL: e.url, ServerCA: e.serverCA, JSON: json, Certificate: cert})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func newCA(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

func leaf(t testing.TB, issuer *x509.Certificate, key crypto.Signer, cn string, eku x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{eku},
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, issuer, k.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
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
		OS:         e.vendor.Image(t, boot.OS, fmt.Sprintf("1.%d.0", osSVN), osSVN, fmt.Sprintf("os code v%d", osSVN)),
		App:        e.vendor.Image(t, boot.App, "2.1.0", 1, "app code"),
	}
}

var algName = map[crypto.Hash]string{crypto.SHA256: "sha-256", crypto.SHA384: "sha-384", crypto.SHA512: "sha-512"}

// release returns the reference values of the layers booted from im.
func (e *env) release(name string, im *device.Images) attest.Release {
	r := attest.Release{Name: name}
	for _, b := range [][]byte{im.Bootloader, im.OS, im.App} {
		img, err := boot.ParseImage(b)
		if err != nil {
			e.t.Fatal(err)
		}
		m := img.Manifest
		r.Layers = append(r.Layers, attest.LayerReference{
			Layer: string(m.Layer), Version: m.Version, MinSVN: m.SVN, Signer: m.SignerKeyIDs[0],
			Digests: []attest.Digest{{Alg: algName[m.DigestAlg], Value: m.Digest}},
		})
	}
	return r
}

// endorsements list releases with OS SVNs 1 and 2; OS SVN 1 is vulnerable.
// (OS SVN 3 is unknown.)
func (e *env) endorsements() *attest.Endorsements {
	p := attest.ProductEndorsements{Product: product}
	for svn := uint64(1); svn <= 2; svn++ {
		r := e.release(fmt.Sprintf("r%d", svn), e.images(svn))
		if svn == 1 {
			r.Vulnerable = "CVE-2026-0001: OS heap overflow"
		}
		p.Releases = append(p.Releases, r)
	}
	return &attest.Endorsements{Version: attest.EndorsementsVersion, Products: []attest.ProductEndorsements{p}}
}

// fieldDevice is an emulated device, booted, provisioned and registered.
type fieldDevice struct {
	*device.Device
	ueid   []byte
	chain  [][]byte
	idevid *x509.Certificate
}

func (e *env) newDevice(osSVN uint64) *fieldDevice {
	return e.newDeviceWith(osSVN, e.ca)
}

// newDeviceWith makes a device that booted OS SVN osSVN, got its IDevID
// from issuer and is registered as active.
func (e *env) newDeviceWith(osSVN uint64, issuer *ca.Local) *fieldDevice {
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
	iss, err := issuer.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: product, UEID: fr.UEID, CSR: fr.CSR})
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{iss.Certificate.Raw}
	for _, c := range iss.Chain {
		chain = append(chain, c.Raw)
	}
	if err := d.InstallIdentity(ctx, chain); err != nil {
		t.Fatal(err)
	}
	if err := d.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	e.devices.Put(&attest.DeviceRecord{UEID: fr.UEID, Product: product, State: attest.RegistryActive, IDevIDChain: chain})
	return &fieldDevice{Device: d, ueid: fr.UEID, chain: chain, idevid: iss.Certificate}
}

// synthDevice is a device made from its parts (a DeviceID key and its
// certificate, two Alias layers, an IDevID), registered, whose claims
// are those of release r2.
type synthDevice struct {
	ueid    []byte
	aliases []*ecdsa.PrivateKey
	chain   [][]byte // x5chain, leaf first
	claims  *evidence.Claims
}

func (e *env) newSynth() *synthDevice {
	t := e.t
	t.Helper()
	s := &synthDevice{ueid: append([]byte{0x01}, make([]byte, 16)...)}
	rand.Read(s.ueid[1:])
	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	devDER, err := dice.DeviceIDCertificate(devKey, &dice.CertificateTemplate{IsCA: true, MaxPathLen: -1, UEID: s.ueid})
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := x509.ParseCertificate(devDER)
	var signer crypto.Signer = devKey
	chain := [][]byte{devDER}
	for i := range 2 {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := dice.AliasCertificate(signer, issuer, &dice.CertificateTemplate{Subject: k.Public(), IsCA: i == 0, MaxPathLen: 0})
		if err != nil {
			t.Fatal(err)
		}
		issuer, _ = x509.ParseCertificate(der)
		signer = k
		s.aliases = append(s.aliases, k)
		chain = append([][]byte{der}, chain...)
	}
	s.chain = chain
	iss, err := e.ca.Issue(e.ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: product, UEID: s.ueid, CSR: catest.CSR(t, devKey, pkix.Name{})})
	if err != nil {
		t.Fatal(err)
	}
	idevid := [][]byte{iss.Certificate.Raw}
	for _, c := range iss.Chain {
		idevid = append(idevid, c.Raw)
	}
	e.devices.Put(&attest.DeviceRecord{UEID: s.ueid, Product: product, State: attest.RegistryActive, IDevIDChain: idevid})
	hashes := map[string]crypto.Hash{"sha-256": crypto.SHA256, "sha-384": crypto.SHA384, "sha-512": crypto.SHA512}
	s.claims = &evidence.Claims{UEID: s.ueid, Product: product, Lifecycle: pluton.Provisioned, Counters: map[string]uint64{}}
	for _, l := range e.release("x", e.images(2)).Layers {
		s.claims.Layers = append(s.claims.Layers, evidence.Measurement{
			Layer: l.Layer, Version: l.Version, SVN: l.MinSVN, Digest: l.Digests[0].Value,
			DigestAlg: hashes[l.Digests[0].Alg], SignerID: l.Signer,
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
	state    *attest.DeviceState
	verdicts int
}

func (e *env) snapshot(ueid []byte) snapshot {
	e.t.Helper()
	st, err := e.store.State(e.ctx, ueid)
	if err != nil {
		e.t.Fatal(err)
	}
	vs, err := e.store.Verdicts(e.ctx, ueid, 0, attest.MaxPage)
	if err != nil {
		e.t.Fatal(err)
	}
	return snapshot{st, len(vs)}
}

const cryptoSHA256 = crypto.SHA256

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func pkixName() pkix.Name { return pkix.Name{} }
