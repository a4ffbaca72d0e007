package attest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton/evidence"
)

func TestAttestAffirming(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newDevice(2)
	for i := range 3 {
		res := e.attest(&Request{Evidence: e.evidence(d.Device)})
		if res.Status != StatusAffirming || len(res.Reasons) != 0 {
			t.Fatalf("attestation %d: %s %v", i, res.Status, res.Reasons)
		}
		if res.Release != "r2" || !bytes.Equal(res.UEID, d.ueid) || res.Verdict == 0 || res.Certificate != nil {
			t.Fatalf("result %+v", res)
		}
		ear, err := ParseEAR(res.EAR, e.earKey.Public().(*ecdsa.PublicKey), e.clock.now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		sub := ear.Submods[EARSubmod]
		if sub.Status != StatusAffirming || sub.TrustVector != affirmed() || sub.PolicyID != DefaultPolicyID || ear.VerifierID.Build != "test" {
			t.Fatalf("EAR %+v", ear)
		}
	}
	if e.v.diceCache.len() != 1 || e.v.idCache.len() != 1 {
		t.Fatalf("caches hold %d DICE and %d IDevID chains, want 1 each", e.v.diceCache.len(), e.v.idCache.len())
	}
	st, err := e.store.State(e.ctx, d.ueid)
	if err != nil || st == nil || st.SVNs["os"] != 2 || st.SVNs["bootloader"] != 1 || len(st.Counters) == 0 {
		t.Fatalf("state %+v, %v", st, err)
	}
	vs, err := e.store.Verdicts(e.ctx, d.ueid, 0, 2)
	if err != nil || len(vs) != 2 || vs[0].ID <= vs[1].ID || vs[0].Status != StatusAffirming || vs[0].Accepted == nil {
		t.Fatalf("verdicts %+v, %v", vs, err)
	}
	more, err := e.store.Verdicts(e.ctx, d.ueid, vs[1].ID, 2)
	if err != nil || len(more) != 1 || more[0].ID >= vs[1].ID {
		t.Fatalf("second page %+v, %v", more, err)
	}
}

// TestVerifyStages checks the two stages apart: what a Verified reports.
func TestVerifyStages(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newDevice(3)
	ver, err := e.v.Verify(e.ctx, &Request{Evidence: e.evidence(d.Device), IDevIDChain: d.chain})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ver.UEID(), d.ueid) || ver.Product() != product || ver.IDevID().SerialNumber.Cmp(d.idevid.SerialNumber) != 0 ||
		len(ver.Layers()) != 3 || ver.Previous() != nil || len(ver.Nonce()) != NonceSize {
		t.Fatal("Verified does not report the device")
	}
	certs, _ := d.Certificates(e.ctx)
	if !ver.AliasKey().(*ecdsa.PublicKey).Equal(certs[0].PublicKey) {
		t.Fatal("AliasKey is not the leaf's")
	}
	// Accessors return copies.
	ver.Layers()[0].Digest[0] ^= 1
	ver.UEID()[0] ^= 1
	if a := e.v.Appraise(ver); a.Status != StatusAffirming || a.Release != "r3" {
		t.Fatalf("appraisal %+v", a)
	}
}

// refusal runs one bad request and checks the result and the store.
func checkRefused(t *testing.T, e *env, ueid []byte, req *Request, want Code, stored bool) {
	t.Helper()
	before := e.snapshot(ueid)
	res := e.attest(req)
	if res.Status != StatusContraindicated || len(res.Reasons) == 0 || res.Reasons[0].Code != want {
		t.Fatalf("%s %v, want contraindicated %s", res.Status, res.Reasons, want)
	}
	if res.Certificate != nil {
		t.Fatal("a certificate was issued")
	}
	if _, err := ParseEAR(res.EAR, e.earKey.Public().(*ecdsa.PublicKey), e.clock.now(), 0); err != nil {
		t.Fatal(err)
	}
	after := e.snapshot(ueid)
	if !statesEqual(before.state, after.state) {
		t.Fatalf("state changed: %+v → %+v", before.state, after.state)
	}
	wantN := before.verdicts
	if stored {
		wantN++
	}
	if after.verdicts != wantN {
		t.Fatalf("%d verdicts, want %d", after.verdicts, wantN)
	}
}

func statesEqual(a, b *DeviceState) bool {
	if a == nil || b == nil {
		return a == b
	}
	return maps.Equal(a.Counters, b.Counters) && maps.Equal(a.SVNs, b.SVNs)
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newDevice(2)
	// An accepted attestation first, so each refusal has a state to keep.
	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
		t.Fatal(res.Reasons)
	}
	good := e.evidence(d.Device)

	t.Run("malformed", func(t *testing.T) {
		checkRefused(t, e, d.ueid, &Request{Evidence: []byte("not a token")}, CodeMalformed, false)
		checkRefused(t, e, d.ueid, &Request{Evidence: good[:len(good)/2]}, CodeMalformed, false)
	})
	t.Run("oversized", func(t *testing.T) {
		checkRefused(t, e, d.ueid, &Request{Evidence: make([]byte, evidence.MaxTokenSize+1)}, CodeTooLarge, false)
	})
	t.Run("wrong signature", func(t *testing.T) {
		// The chain is cached by now: the direct COSE check refuses it.
		bad := bytes.Clone(good)
		bad[len(bad)-1] ^= 1
		checkRefused(t, e, d.ueid, &Request{Evidence: bad}, CodeSignature, false)
		// A claim changed (the nonce, for another valid one): the
		// payload no longer matches the signature.
		n, _ := parseNonce(good)
		other, _ := e.v.Nonce(e.ctx)
		bad = bytes.Replace(bytes.Clone(good), n, other, 1)
		checkRefused(t, e, d.ueid, &Request{Evidence: bad}, CodeSignature, false)
	})
	t.Run("wrong signature, chain not cached", func(t *testing.T) {
		e2 := newEnv(t, &envOptions{cacheSize: -1})
		d2 := e2.newDevice(1)
		bad := e2.evidence(d2.Device)
		bad[len(bad)-1] ^= 1
		checkRefused(t, e2, d2.ueid, &Request{Evidence: bad}, CodeSignature, false)
	})
	t.Run("unknown device", func(t *testing.T) {
		other := e.newDevice(2)
		e.devices.mu.Lock()
		delete(e.devices.m, string(other.ueid))
		e.devices.mu.Unlock()
		checkRefused(t, e, other.ueid, &Request{Evidence: e.evidence(other.Device)}, CodeUnknownDevice, false)
	})
	t.Run("suspended device", func(t *testing.T) {
		other := e.newDevice(2)
		e.devices.Put(&DeviceRecord{UEID: other.ueid, Product: product, State: RegistrySuspended, IDevIDChain: other.chain})
		checkRefused(t, e, other.ueid, &Request{Evidence: e.evidence(other.Device)}, CodeDeviceState, false)
	})
	t.Run("IDevID not the registered one", func(t *testing.T) {
		// The device shows another IDevID of the same key (a second
		// issuance), not the one the registry holds.
		fr, err := d.FactoryRequest(e.ctx, []byte("factory nonce 0123"))
		if err != nil {
			t.Fatal(err)
		}
		second := e.issueIDevID(d.ueid, fr.CSR)
		checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device), IDevIDChain: second}, CodeIdentity, false)
		// The registry holds another device's IDevID for this UEID.
		other := e.newDevice(2)
		e.devices.Put(&DeviceRecord{UEID: d.ueid, Product: product, State: RegistryActive, IDevIDChain: other.chain})
		defer e.register(d.ueid, d.chain)
		checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, CodeIdentity, false)
	})
	t.Run("unknown root", func(t *testing.T) {
		e.clock.add(time.Minute) // past the new hierarchy's notBefore
		// The registered IDevID comes from another factory's hierarchy.
		h := catest.NewHierarchy(t, product)
		l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
		if err != nil {
			t.Fatal(err)
		}
		other := e.newDevice(2)
		fr, _ := other.FactoryRequest(e.ctx, []byte("factory nonce 0123"))
		iss, err := l.Issue(e.ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: product, UEID: other.ueid, CSR: fr.CSR})
		if err != nil {
			t.Fatal(err)
		}
		e.register(other.ueid, [][]byte{iss.Certificate.Raw, iss.Chain[0].Raw, iss.Chain[1].Raw})
		checkRefused(t, e, other.ueid, &Request{Evidence: e.evidence(other.Device)}, CodeUnknownRoot, false)
	})
	t.Run("chain with a missing link", func(t *testing.T) {
		s := e.newSynth()
		n, _ := e.v.Nonce(e.ctx)
		// The middle Alias certificate left out.
		checkRefused(t, e, s.ueid, &Request{Evidence: s.sign(t, n, [][]byte{s.chain[0], s.chain[2]})}, CodeChain, false)
		// The DeviceID certificate left out.
		checkRefused(t, e, s.ueid, &Request{Evidence: s.sign(t, n, s.chain[:2])}, CodeChain, false)
		// The registered IDevID chain without its intermediate.
		e.register(s.ueid, s.idevid[:1])
		checkRefused(t, e, s.ueid, &Request{Evidence: s.sign(t, n, s.chain)}, CodeChain, false)
	})
	t.Run("stale nonce", func(t *testing.T) {
		tok := e.evidence(d.Device)
		e.clock.add(2 * time.Minute)
		defer e.clock.add(-2 * time.Minute)
		checkRefused(t, e, d.ueid, &Request{Evidence: tok}, CodeNonceExpired, true)
	})
	t.Run("foreign nonce", func(t *testing.T) {
		tok, err := d.Attest(e.ctx, bytes.Repeat([]byte{1}, NonceSize))
		if err != nil {
			t.Fatal(err)
		}
		checkRefused(t, e, d.ueid, &Request{Evidence: tok}, CodeNonceInvalid, true)
	})
	t.Run("replayed nonce", func(t *testing.T) {
		tok := e.evidence(d.Device)
		if res := e.attest(&Request{Evidence: tok}); res.Status != StatusAffirming {
			t.Fatal(res.Reasons)
		}
		checkRefused(t, e, d.ueid, &Request{Evidence: tok}, CodeNonceReplayed, true)
	})
	t.Run("revoked", func(t *testing.T) {
		other := e.newDevice(2)
		if err := e.ca.Revoke(e.ctx, other.idevid.SerialNumber, 1); err != nil {
			t.Fatal(err)
		}
		if err := e.v.SetCRLs([][]byte{e.crl()}); err != nil {
			t.Fatal(err)
		}
		checkRefused(t, e, other.ueid, &Request{Evidence: e.evidence(other.Device)}, CodeRevoked, true)
		// d is not revoked and still attests.
		if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
			t.Fatal(res.Reasons)
		}
	})
	t.Run("no CRL", func(t *testing.T) {
		if err := e.v.SetCRLs(nil); err != nil {
			t.Fatal(err)
		}
		defer e.v.SetCRLs([][]byte{e.crl()})
		checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, CodeRevocation, true)
	})
	t.Run("CRL of another issuer key", func(t *testing.T) {
		h := catest.NewHierarchy(t, product) // same names, other keys
		l, _ := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
		der, _ := l.CRLFor(e.ctx, product)
		if err := e.v.SetCRLs([][]byte{der}); err != nil {
			t.Fatal(err)
		}
		defer e.v.SetCRLs([][]byte{e.crl()})
		checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, CodeRevocation, true)
	})
	t.Run("expired CRL", func(t *testing.T) {
		e.clock.add(8 * 24 * time.Hour)
		defer e.clock.add(-8 * 24 * time.Hour)
		checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, CodeRevocation, true)
	})
	t.Run("rollback", func(t *testing.T) {
		// The store remembers a newer OS than the device now reports.
		st, _ := e.store.State(e.ctx, d.ueid)
		higher := st.clone()
		higher.SVNs["os"]++
		if err := e.store.Record(e.ctx, &Verdict{UEID: d.ueid, Time: e.clock.now(), Status: StatusAffirming, Accepted: higher}); err != nil {
			t.Fatal(err)
		}
		checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device)}, CodeRollback, true)
	})
}

// A device whose state directory was restored from a backup: it boots
// the older OS its restored counters allow, but the verifier remembers the
// newer one.
func TestRolledBackDeviceRefused(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newDevice(1)
	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
		t.Fatal(res.Reasons)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	copyDir(t, backup, d.Dir())

	// Update to OS SVN 3, confirm, attest: accepted.
	if _, err := d.Boot(e.ctx, e.images(3)); err != nil {
		t.Fatal(err)
	}
	if err := d.Confirm(e.ctx); err != nil {
		t.Fatal(err)
	}
	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming || res.Release != "r3" {
		t.Fatal(res.Status, res.Reasons)
	}
	// The old OS no longer boots on the device itself.
	if _, err := d.Boot(e.ctx, e.images(1)); err == nil {
		t.Fatal("the device booted a rolled-back OS")
	}
	d.Close()

	// The backup: counters and OS back at SVN 1.
	old, err := device.Open(backup, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := old.Boot(e.ctx, e.images(1)); err != nil {
		t.Fatal(err)
	}
	checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(old)}, CodeRollback, true)
	st, _ := e.store.State(e.ctx, d.ueid)
	if st.SVNs["os"] != 3 {
		t.Fatalf("accepted OS SVN %d, want 3", st.SVNs["os"])
	}
}

func TestAppraisal(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newDevice(2)
	refs := e.endorsements()
	set := func(f func(p *ProductEndorsements)) {
		t.Helper()
		p := refs.Products[0]
		p.Releases = slices.Clone(p.Releases)
		for i := range p.Releases {
			p.Releases[i].Layers = slices.Clone(p.Releases[i].Layers)
			for j := range p.Releases[i].Layers {
				p.Releases[i].Layers[j].Digests = slices.Clone(p.Releases[i].Layers[j].Digests)
			}
		}
		f(&p)
		if err := e.v.UpdateProduct(&p); err != nil {
			t.Fatal(err)
		}
	}
	run := func(wantStatus Status, wantCode Code) *Result {
		t.Helper()
		before := e.snapshot(d.ueid)
		res := e.attest(&Request{Evidence: e.evidence(d.Device)})
		if res.Status != wantStatus || wantCode != "" && (len(res.Reasons) == 0 || res.Reasons[0].Code != wantCode) {
			t.Fatalf("%s %v, want %s %s", res.Status, res.Reasons, wantStatus, wantCode)
		}
		after := e.snapshot(d.ueid)
		if wantStatus == StatusContraindicated && !statesEqual(before.state, after.state) {
			t.Fatal("a contraindicated verdict changed the state")
		}
		return res
	}
	run(StatusAffirming, "")
	set(func(p *ProductEndorsements) { p.Releases[1].Layers[1].Digests[0].Value = make([]byte, 32) })
	run(StatusContraindicated, CodeUnknownMeasurement)
	set(func(p *ProductEndorsements) { p.Releases[1].Layers[1].Version = "9.9.9" })
	run(StatusContraindicated, CodeUnknownVersion)
	set(func(p *ProductEndorsements) { p.Releases[1].Layers[1].Signer = make([]byte, 32) })
	run(StatusContraindicated, CodeUnknownSigner)
	set(func(p *ProductEndorsements) { p.Releases[1].Layers[1].MinSVN = 5 })
	run(StatusContraindicated, CodeSVN)
	set(func(p *ProductEndorsements) { p.Releases[1].Layers = p.Releases[1].Layers[:2] })
	// r2 without its app layer: each layer is known (app 2.1.0 is in r1
	// and r3), but they are no release together.
	run(StatusContraindicated, CodeUnknownRelease)
	set(func(p *ProductEndorsements) { p.Releases[1].Vulnerable = "CVE-2026-0001: remote code execution" })
	res := run(StatusWarning, CodeVulnerable)
	if res.Release != "r2" || res.TrustVector.Configuration != tcUnsafeConfig {
		t.Fatalf("%+v", res)
	}
	// A warning advances the state.
	if st, _ := e.store.State(e.ctx, d.ueid); st == nil || st.SVNs["os"] != 2 {
		t.Fatal("a warning did not record the state")
	}
	if err := e.v.SetEndorsements(&Endorsements{Version: 1}); err != nil {
		t.Fatal(err)
	}
	run(StatusContraindicated, CodeUnknownProduct)
	if err := e.v.SetEndorsements(e.endorsements()); err != nil {
		t.Fatal(err)
	}
	run(StatusAffirming, "")
	// A chip not provisioned: synthetic evidence in the manufacturing state.
	s := e.newSynth()
	s.claims.Lifecycle = 1 // manufacturing
	n, _ := e.v.Nonce(e.ctx)
	res = e.attest(&Request{Evidence: s.sign(t, n, s.chain)})
	if res.Status != StatusContraindicated || res.Reasons[0].Code != CodeLifecycle {
		t.Fatal(res.Reasons)
	}
}

func TestOperationalCertificate(t *testing.T) {
	e := newEnv(t, nil)
	s := e.newSynth()
	alias := s.aliases[len(s.aliases)-1]
	n, _ := e.v.Nonce(e.ctx)
	csr := catest.CSR(t, alias, pluton0())
	res := e.attest(&Request{Evidence: s.sign(t, n, s.chain), CSR: csr})
	if res.Status != StatusAffirming || res.Certificate == nil {
		t.Fatalf("%s %v", res.Status, res.Reasons)
	}
	c := res.Certificate.Certificate
	if !c.PublicKey.(*ecdsa.PublicKey).Equal(alias.Public()) {
		t.Fatal("the certificate is not for the Alias key")
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != ca.OperationalValidity+ca.Backdate {
		t.Fatalf("validity %v", got)
	}
	if _, serial, err := ca.HardwareModuleName(c); err != nil || !bytes.Equal(serial, s.ueid) {
		t.Fatal("the certificate does not name the device")
	}
	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Fatal("no clientAuth")
	}

	// A CSR for another key — the DeviceID key, or a stranger's — is
	// refused, and the verdict is contraindicated with no state change.
	for name, csr := range map[string][]byte{
		"DeviceID key": catest.CSR(t, s.deviceID, pluton0()),
		"other key":    catest.CSR(t, catest.Key(t), pluton0()),
		"garbage":      []byte("junk"),
	} {
		t.Run(name, func(t *testing.T) {
			n, _ := e.v.Nonce(e.ctx)
			checkRefused(t, e, s.ueid, &Request{Evidence: s.sign(t, n, s.chain), CSR: csr}, CodeCSR, true)
		})
	}
	// A real device's FactoryRequest CSR is for its DeviceID key: refused.
	d := e.newDevice(1)
	fr, _ := d.FactoryRequest(e.ctx, []byte("factory nonce 0123"))
	checkRefused(t, e, d.ueid, &Request{Evidence: e.evidence(d.Device), CSR: fr.CSR}, CodeCSR, true)
}

// TestConcurrentAttestations: one device attests from many goroutines;
// every attestation is decided and the store stays consistent.
func TestConcurrentAttestations(t *testing.T) {
	e := newEnv(t, nil)
	devs := []*fieldDevice{e.newDevice(1), e.newDevice(2)}
	toks := map[int][][]byte{}
	for i, d := range devs {
		for range 8 {
			toks[i] = append(toks[i], e.evidence(d.Device))
		}
	}
	errs := make(chan error, 16)
	for i := range devs {
		for _, tok := range toks[i] {
			go func() {
				res, err := e.v.Attest(context.Background(), &Request{Evidence: tok})
				if err == nil && res.Status != StatusAffirming {
					err = errors.New(string(res.Status))
				}
				errs <- err
			}()
		}
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range devs {
		if s := e.snapshot(d.ueid); s.verdicts != 8 || s.state == nil {
			t.Fatalf("%+v", s)
		}
	}
}

func pluton0() pkix.Name { return pkix.Name{} }

// With the replay cache full, nonces are neither made nor accepted: a
// typed refusal, not growth.
func TestNonceCacheFull(t *testing.T) {
	e := newEnv(t, &envOptions{memoryStore: true, maxNonces: 2})
	d := e.newDevice(1)
	toks := [][]byte{e.evidence(d.Device), e.evidence(d.Device), e.evidence(d.Device)}
	for _, tok := range toks[:2] {
		if res := e.attest(&Request{Evidence: tok}); res.Status != StatusAffirming {
			t.Fatal(res.Reasons)
		}
	}
	checkRefused(t, e, d.ueid, &Request{Evidence: toks[2]}, CodeBusy, true)
	if _, err := e.v.Nonce(e.ctx); err == nil {
		t.Fatal("a nonce was made with the cache full")
	}
	e.clock.add(2 * time.Minute)
	if res := e.attest(&Request{Evidence: e.evidence(d.Device)}); res.Status != StatusAffirming {
		t.Fatal(res.Reasons)
	}
}

func TestConfigValidate(t *testing.T) {
	e := newEnv(t, &envOptions{memoryStore: true})
	good := func() *Config {
		return &Config{Roots: []*x509.Certificate{e.h.Root}, Devices: e.devices, Store: e.store, Signer: e.earKey, NonceKey: make([]byte, 32)}
	}
	if v, err := New(good()); err != nil {
		t.Fatal(err)
	} else {
		v.Close()
	}
	for name, f := range map[string]func(c *Config){
		"no roots":     func(c *Config) { c.Roots = nil },
		"no registry":  func(c *Config) { c.Devices = nil },
		"no store":     func(c *Config) { c.Store = nil },
		"no signer":    func(c *Config) { c.Signer = nil },
		"P-384 signer": func(c *Config) { c.Signer = catestKey384(t) },
		"short key":    func(c *Config) { c.NonceKey = make([]byte, 31) },
		"bad CRL":      func(c *Config) { c.CRLs = [][]byte{[]byte("junk")} },
		"bad refs":     func(c *Config) { c.Endorsements = &Endorsements{Version: 9} },
	} {
		c := good()
		f(c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAppraiseZeroVerified(t *testing.T) {
	e := newEnv(t, &envOptions{memoryStore: true})
	for _, v := range []*Verified{nil, {}} {
		if a := e.v.Appraise(v); a.Status != StatusContraindicated {
			t.Fatal(a)
		}
	}
}
