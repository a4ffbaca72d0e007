package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/soft"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	"github.com/rootline/rootline/provision/hsminject"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/station"
	"github.com/rootline/rootline/provision/translog"
)

// factoryDemoOptions configures runFactoryDemo.
type factoryDemoOptions struct {
	// HSMDir is the directory of part 3 (runCADemoSteps): its SoftHSM2
	// configuration, token and user PIN file are reused, with keys of
	// the factory's own.
	HSMDir string
	Logger *slog.Logger
	// Chips is how many chips the station provisions (at least 2).
	Chips int
	// Result, if set, receives what the field part builds on.
	Result *factoryDemoResult
}

// factoryDemoResult is what the factory part leaves for the field part.
type factoryDemoResult struct {
	caDir    string                              // rootline ca init's directory
	registry string                              // the SQLite registry file
	chips    []string                            // the provisioned chips' state directories
	fw       *factoryFirmware                    // sku-a's firmware and its signing keys
	products map[string]*provision.ProductPolicy // what the service knew of its products
	uri      func(object string) string          // PKCS#11 URI of an object in the demo's token
}

// apiRefusal maps a refusal the station client returns (*api.Error) to the
// sentinel its reason stands for, so that d.refused can check it with
// errors.Is; any other error is returned as it is.
func apiRefusal(err error) error {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Reason {
	case api.ReasonClone:
		return fmt.Errorf("%w (API reason %q)", registry.ErrClone, ae.Reason)
	case api.ReasonStationNotAllowed:
		return fmt.Errorf("%w (API reason %q)", provision.ErrStationNotAllowed, ae.Reason)
	}
	return err
}

// runFactoryDemo is part 4 of the demo: the provisioning service, served
// in-process over mutual TLS on 127.0.0.1, and a station provisioning
// emulated chips with it. Everything lives under d.dir.
func runFactoryDemo(ctx context.Context, d *demo, opts *factoryDemoOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(d.dir)
	if err != nil {
		return err
	}
	d.dir = dir
	hsmDir, err := filepath.Abs(opts.HSMDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// 1. The service.
	const label = "rootline-demo"
	pinFile := filepath.Join(hsmDir, "user.pin")
	os.Setenv("SOFTHSM2_CONF", filepath.Join(hsmDir, "softhsm2.conf"))
	uri := func(object string) string {
		return "pkcs11:token=" + label + ";object=" + object + "?pin-source=file:" + pinFile
	}
	caDir := filepath.Join(dir, "ca")
	d.step("The factory's service: CA, station certificates, issuance log, registry, reference values",
		fmt.Sprintf("ca init --out %s --generate --organization 'Rootline Factory' --product sku-a --hwtype 1.3.6.1.4.1.32473.1.1 --root-key '%s' --intermediate-key '%s' --station-key '%s'",
			caDir, uri("factory-root"), uri("factory-sku-a"), uri("factory-stations")))
	kr := newKeyring(log)
	defer kr.Close()
	res, err := caInit(ctx, kr, &initParams{out: caDir, org: "Rootline Factory", rootKey: uri("factory-root"), interKey: uri("factory-sku-a"),
		stationKey: uri("factory-stations"), product: "sku-a", hwType: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1},
		generate: true, rootAlg: hsm.P384, interAlg: hsm.P256})
	if err != nil {
		return err
	}
	d.say("keys in the SoftHSM2 token %q of part 3 (%s)", label, filepath.Join(hsmDir, "tokens"))
	d.say("root     %s", res.root.Subject)
	d.say("sku-a    %s", res.inter.Subject)
	d.say("stations %s", res.stations.Subject)

	// A second product, so that a station may be certified for it alone.
	fmt.Fprintf(d.w, "   $ rootline ca add-product --dir %s --generate --product sku-b --hwtype 1.3.6.1.4.1.32473.1.2 --root-key '%s' --intermediate-key '%s'\n",
		caDir, uri("factory-root"), uri("factory-sku-b"))
	cfg := res.cfg
	rootKey, err := kr.signer(ctx, "root", cfg.Root.Key)
	if err != nil {
		return err
	}
	interB, uriB, err := intermediate(ctx, kr, res.root, rootKey, "intermediate", uri("factory-sku-b"), true, hsm.P256,
		pkix.Name{Organization: []string{cfg.Organization}, CommonName: "sku-b Issuing CA"})
	if err != nil {
		return err
	}
	if err := writeCert(caDir, "sku-b.pem", interB); err != nil {
		return err
	}
	cfg.Products = append(cfg.Products, caProduct{Name: "sku-b", HWType: "1.3.6.1.4.1.32473.1.2", caKeyCert: caKeyCert{Certificate: "sku-b.pem", Key: uriB}})
	if err := cfg.save(caDir); err != nil {
		return err
	}
	d.say("sku-b    %s", interB.Subject)

	local, err := openLocal(ctx, caDir, cfg, kr, log, "sku-a", "sku-b", ca.StationsIssuer)
	if err != nil {
		return err
	}
	stationCert := func(name, product string) (tls.Certificate, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, err
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, k)
		if err != nil {
			return tls.Certificate{}, err
		}
		iss, err := local.Issue(ctx, &ca.IssueRequest{CSR: csr, Profile: ca.ProfileStation, Station: name, Products: []string{product}})
		if err != nil {
			return tls.Certificate{}, err
		}
		c := tls.Certificate{Certificate: [][]byte{iss.Certificate.Raw}, PrivateKey: k, Leaf: iss.Certificate}
		for _, ic := range iss.Chain[:len(iss.Chain)-1] {
			c.Certificate = append(c.Certificate, ic.Raw)
		}
		return c, nil
	}
	fmt.Fprintf(d.w, "   $ rootline ca issue --dir %s --csr line-1.csr --profile station --station line-1 --station-product sku-a --out line-1.pem\n", caDir)
	line1, err := stationCert("line-1", "sku-a")
	if err != nil {
		return err
	}
	d.say("station line-1 (sku-a): serial %s, issued by %s", ca.Hex(line1.Leaf.SerialNumber), line1.Leaf.Issuer.CommonName)

	// The TLS server certificate, from a TLS CA of its own (software keys:
	// the web PKI's concern, not the device CA's).
	tlsCA, serverCert, err := demoTLSCertificates()
	if err != nil {
		return err
	}
	d.say("TLS server certificate for 127.0.0.1 from %q (software key)", tlsCA.Subject.CommonName)

	// The issuance log: tree heads signed by an Ed25519 key in the token.
	logKey, logURI, err := kr.create(ctx, "issuance log", uri("factory-log"), hsm.Ed25519)
	if err != nil {
		return err
	}
	logSigner, err := translog.NewSigner("log.factory.rootline.demo", logKey)
	if err != nil {
		return err
	}
	st, err := translog.OpenFileStore(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	defer st.Close()
	tl, err := translog.New(st, logSigner)
	if err != nil {
		return err
	}
	d.say("issuance log in %s, tree heads signed by %s (Ed25519, in the token)", filepath.Join(dir, "log"), logURI)

	reg, err := registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: filepath.Join(dir, "registry.db")})
	if err != nil {
		return err
	}
	defer reg.Close()
	d.say("registry  %s (SQLite)", filepath.Join(dir, "registry.db"))

	fw, err := newFactoryFirmware("sku-a")
	if err != nil {
		return err
	}
	if fw.factoryRoot, err = device.FactoryRootHash(res.root, crypto.SHA256); err != nil {
		return err
	}
	d.say("chips are fused with the factory root's hash %x…: they install no IDevID chain ending elsewhere", fw.factoryRoot[:8])
	refs := map[string]provision.LayerReference{}
	for _, l := range boot.Layers() {
		img, err := boot.ParseImage(fw.images[l])
		if err != nil {
			return err
		}
		refs[string(l)] = provision.LayerReference{Digests: [][]byte{img.Manifest.Digest}, MinSVN: img.Manifest.SVN}
		d.say("reference %-10s sha256 %x…, min SVN %d", l, img.Manifest.Digest[:8], img.Manifest.SVN)
	}
	var nonceKey [32]byte
	if _, err := rand.Read(nonceKey[:]); err != nil {
		return err
	}
	products := map[string]*provision.ProductPolicy{"sku-a": {
		HWType: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}, Chain: []*x509.Certificate{res.inter, res.root}, ReferenceValues: refs,
	}}
	// sku-b's chips receive their identity: the HSM makes each device key
	// and wraps it to the chip, and derives a per-device join key.
	fwB, err := newFactoryFirmware("sku-b")
	if err != nil {
		return err
	}
	fwB.factoryRoot = fw.factoryRoot
	refsB := map[string]provision.LayerReference{}
	for _, l := range boot.Layers() {
		img, err := boot.ParseImage(fwB.images[l])
		if err != nil {
			return err
		}
		refsB[string(l)] = provision.LayerReference{Digests: [][]byte{img.Manifest.Digest}, MinSVN: img.Manifest.SVN}
	}
	injectHSM, _, err := kr.module(ctx, uri("factory-sku-b"))
	if err != nil {
		return err
	}
	master, err := injectHSM.CreateSecretMaster(ctx, "factory-sku-b-join-master")
	if err != nil {
		return err
	}
	products["sku-b"] = &provision.ProductPolicy{
		HWType: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 2}, Chain: []*x509.Certificate{interB, res.root}, ReferenceValues: refsB,
		Identity: provision.Injected,
		Injection: &provision.InjectionPolicy{Injector: hsminject.New(injectHSM, nil), KeyAlgorithm: pluton.ECDSAP256,
			SecretMaster: master.String(), Secrets: []string{"join-key"}},
	}
	d.say("sku-b: identity injected (device keys made in the token and wrapped to each chip; a per-device join key derived from %s)", master.Object)
	svc, err := provision.New(&provision.Config{
		Registry: reg, Issuer: local, Log: tl, NonceKey: nonceKey[:], Logger: log, Products: products,
	})
	clear(nonceKey[:])
	if err != nil {
		return err
	}
	addr, stopServing, err := serveInProcess(ctx, svc, serverCert, res.stations, log)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer stopServing()
	fmt.Fprintf(d.w, "   $ rootline serve provision --config %s\n", filepath.Join(dir, "provision.json"))
	d.say("serving on https://%s (TLS 1.3, station client certificates required), in-process", addr)
	d.say("(the CLI's config names a software log key, log.signingKey; here the log key is in the token)")

	serverCA := x509.NewCertPool()
	serverCA.AddCert(tlsCA)
	dial := func(c tls.Certificate) (*station.Client, error) {
		return station.Dial(&station.Config{URL: "https://" + addr.String(), Certificate: c, ServerCA: serverCA, Timeout: 20 * time.Second})
	}
	client, err := dial(line1)
	if err != nil {
		return err
	}
	defer client.Close()

	// 2. The chips.
	n := max(opts.Chips, 2)
	d.step(fmt.Sprintf("Station line-1 provisions %d chips of sku-a", n),
		fmt.Sprintf("station provision --server https://%s --cert line-1.pem --key line-1.key --ca tls-ca.pem --chip %s --product sku-a --lot lot-1", addr, filepath.Join(dir, "chip-1")))
	type chipResult struct {
		dir  string
		ueid []byte
		res  *provision.Result
	}
	var chips []chipResult
	start := time.Now()
	for i := 1; i <= n; i++ {
		cdir := filepath.Join(dir, fmt.Sprintf("chip-%d", i))
		dev, err := fw.bootChip(ctx, cdir, log)
		if err != nil {
			return err
		}
		r, err := station.ProvisionChip(ctx, client, dev, "sku-a", "lot-1")
		if err == nil {
			err = dev.Flush()
		}
		var ueid []byte
		if err == nil {
			var id *pluton.Identity
			if id, err = dev.Chip().Identity(ctx); err == nil {
				ueid = id.UEID
			}
		}
		dev.Close()
		if err != nil {
			return fmt.Errorf("demo: chip %d: %w", i, err)
		}
		leaf, err := x509.ParseCertificate(r.Chain[0])
		if err != nil {
			return err
		}
		if i <= 3 || i == n || i%100 == 0 {
			d.say("[%d/%d] chip-%d  UEID %x  IDevID serial %s  log index %d", i, n, i, ueid, ca.Hex(leaf.SerialNumber), r.LogIndex)
		}
		chips = append(chips, chipResult{cdir, ueid, r})
	}
	d.say("%d chips fused, booted and provisioned in %.1fs (one station, one chip at a time; see rootline bench provision)", n, time.Since(start).Seconds())

	// 3. Check chip 1.
	d.step("Chip 1 is Provisioned, the registry says COMPLETE, and its IDevID chains to the root",
		"device info --state "+chips[0].dir)
	dev, err := device.Open(chips[0].dir, &device.Options{Logger: log})
	if err != nil {
		return err
	}
	lc, err := dev.Chip().Lifecycle(ctx)
	dev.Close()
	if err != nil {
		return err
	}
	if lc != pluton.Provisioned {
		return fmt.Errorf("demo: chip 1 is %s, want %s", lc, pluton.Provisioned)
	}
	d.say("lifecycle: %s", lc)
	rec, err := reg.Get(ctx, chips[0].ueid)
	if err != nil {
		return err
	}
	if rec.State != registry.Complete {
		return fmt.Errorf("demo: registry state %s, want %s", rec.State, registry.Complete)
	}
	d.say("registry:  %s (station %s, lot %s)", rec.State, rec.Station, rec.Lot)
	chain := chips[0].res.Chain
	var certs []*x509.Certificate
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(res.root)
	for _, c := range certs[1 : len(certs)-1] {
		inters.AddCert(c)
	}
	if !certs[len(certs)-1].Equal(res.root) {
		return errors.New("demo: the chain does not end with the factory root")
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("demo: the IDevID does not verify: %w", err)
	}
	d.say("crypto/x509: %s ← %s ← %s", certs[0].Subject, certs[1].Subject.CommonName, res.root.Subject.CommonName)
	if openssl, err := exec.LookPath("openssl"); err == nil {
		leafPath, interPath := filepath.Join(dir, "chip-1-idevid.pem"), filepath.Join(dir, "chip-1-chain.pem")
		var ib bytes.Buffer
		for _, c := range certs[1 : len(certs)-1] {
			pem.Encode(&ib, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		if err := os.WriteFile(leafPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw}), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(interPath, ib.Bytes(), 0o644); err != nil {
			return err
		}
		args := []string{"verify", "-x509_strict", "-CAfile", filepath.Join(caDir, "root.pem"), "-untrusted", interPath, leafPath}
		d.say("$ openssl %s", strings.Join(args, " "))
		out, err := exec.CommandContext(ctx, openssl, args...).CombinedOutput()
		d.say("%s", strings.TrimSpace(string(out)))
		if err != nil {
			return fmt.Errorf("demo: openssl verify refused the IDevID: %w", err)
		}
	}

	// 4. Idempotence.
	d.step("Provision chip 1 again: the same certificate, the same log index",
		"station provision … --chip "+chips[0].dir+" --product sku-a --lot lot-1")
	dev, err = device.Open(chips[0].dir, &device.Options{Logger: log})
	if err != nil {
		return err
	}
	again, err := station.ProvisionChip(ctx, client, dev, "sku-a", "lot-1")
	dev.Close()
	if err != nil {
		return err
	}
	if !bytes.Equal(again.Chain[0], chips[0].res.Chain[0]) || again.LogIndex != chips[0].res.LogIndex || again.Issued {
		return errors.New("demo: a retry changed chip 1's certificate or log index")
	}
	d.say("same IDevID (%d bytes), log index %d, nothing issued", len(again.Chain[0]), again.LogIndex)

	// 5. A clone.
	d.step("A clone presents chip 1's UEID with a key of its own", "station provision … --chip "+filepath.Join(dir, "clone"))
	cloneDev, err := fw.bootChip(ctx, filepath.Join(dir, "clone"), log)
	if err != nil {
		return err
	}
	nonce, err := client.Nonce(ctx)
	var genuine *device.FactoryRequest
	if err == nil {
		genuine, err = cloneDev.FactoryRequest(ctx, nonce)
	}
	cloneDev.Close()
	if err != nil {
		return err
	}
	forged, err := forgeCloneRequest(genuine, chips[0].ueid, "sku-a", "lot-1")
	if err != nil {
		return err
	}
	_, err = client.Provision(ctx, forged)
	if err := d.refused(apiRefusal(err), registry.ErrClone); err != nil {
		return err
	}
	incidents, err := reg.Incidents(ctx)
	if err != nil {
		return err
	}
	if len(incidents) != 1 || !bytes.Equal(incidents[0].UEID, chips[0].ueid) {
		return fmt.Errorf("demo: %d clone incidents recorded, want 1 for chip 1", len(incidents))
	}
	inc := incidents[0]
	d.say("incident %d: UEID %x from station %s, lot %s, at %s", inc.ID, inc.UEID, inc.Station, inc.Lot, inc.Time.UTC().Format(time.RFC3339))

	// 6. The wrong station.
	d.step("Station line-2, certified for sku-b only, tries a chip of sku-a",
		fmt.Sprintf("ca issue --dir %s --csr line-2.csr --profile station --station line-2 --station-product sku-b --out line-2.pem", caDir))
	line2, err := stationCert("line-2", "sku-b")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "   $ rootline station provision --cert line-2.pem … --chip %s --product sku-a --lot lot-1\n", filepath.Join(dir, "chip-line-2"))
	client2, err := dial(line2)
	if err != nil {
		return err
	}
	defer client2.Close()
	dev4, err := fw.bootChip(ctx, filepath.Join(dir, "chip-line-2"), log)
	if err != nil {
		return err
	}
	_, err = station.ProvisionChip(ctx, client2, dev4, "sku-a", "lot-1")
	lc4, lerr := dev4.Chip().Lifecycle(ctx)
	dev4.Close()
	if err := d.refused(apiRefusal(err), provision.ErrStationNotAllowed); err != nil {
		return err
	}
	if lerr != nil || lc4 != pluton.Manufacturing {
		return fmt.Errorf("demo: the refused chip is %s (%v), want %s", lc4, lerr, pluton.Manufacturing)
	}
	d.say("the chip is unchanged: %s", lc4)

	// 6b. An injected identity.
	d.step("Station line-2 provisions a chip of sku-b, whose identity is injected",
		fmt.Sprintf("station provision --identity injected --cert line-2.pem … --chip %s --product sku-b --lot lot-1", filepath.Join(dir, "chip-b-1")))
	devB, err := fwB.bootChip(ctx, filepath.Join(dir, "chip-b-1"), log)
	if err != nil {
		return err
	}
	resB, err := station.ProvisionInjectedChip(ctx, client2, devB, "sku-b", "lot-1")
	if err == nil {
		err = showInjected(ctx, d, devB, resB)
	}
	devB.Close()
	if err != nil {
		return fmt.Errorf("demo: the sku-b chip: %w", err)
	}
	keys, err := injectHSM.List(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if strings.HasPrefix(k.Label, "rootline-idevid-") {
			return fmt.Errorf("demo: the injected key %s is still in the token after the chip confirmed", k.Label)
		}
	}
	d.say("after the chip confirmed, the token holds no injected device key (%d keys listed, none rootline-idevid-…)", len(keys))

	// 7. The issuance log.
	d.step("The issuance log: a signed tree head, and chip 2's certificate in it",
		fmt.Sprintf("log head --dir %s --hsm-key '%s' --name log.factory.rootline.demo --out head.txt", filepath.Join(dir, "log"), logURI))
	head, err := tl.TreeHead(ctx)
	if err != nil {
		return err
	}
	vkey := logSigner.VerifierKey()
	tree, err := translog.OpenTreeHead(vkey, head)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "   $ rootline log prove --dir %s --index %d --size %d --out proof.bin\n", filepath.Join(dir, "log"), chips[1].res.LogIndex, tree.N)
	fmt.Fprintf(d.w, "   $ rootline log verify --key KEY --head head.txt --cert chip-2.der --index %d --proof proof.bin\n", chips[1].res.LogIndex)
	proof, err := tl.InclusionProof(ctx, chips[1].res.LogIndex, tree.N)
	if err != nil {
		return err
	}
	if _, err := translog.VerifyInclusion(vkey, head, chips[1].res.Chain[0], chips[1].res.LogIndex, proof); err != nil {
		return fmt.Errorf("demo: chip 2's inclusion proof: %w", err)
	}
	d.say("verifier key %s", vkey)
	d.say("tree size %d, root hash %s", tree.N, tree.Hash)
	for _, line := range strings.Split(strings.TrimSpace(string(head)), "\n") {
		if line == "" {
			fmt.Fprintln(d.w)
			continue
		}
		d.say("  %s", line)
	}
	d.say("chip 2's IDevID is leaf %d: %d-hash inclusion proof verified (translog.VerifyInclusion)", chips[1].res.LogIndex, len(proof))
	if opts.Result != nil {
		*opts.Result = factoryDemoResult{caDir: caDir, registry: filepath.Join(dir, "registry.db"), fw: fw, uri: uri, products: products}
		for _, c := range chips {
			opts.Result.chips = append(opts.Result.chips, c.dir)
		}
	}
	return nil
}

// demoTLSCertificates makes a TLS CA and the service's certificate for
// 127.0.0.1 under it, with software P-256 keys.
func demoTLSCertificates() (*x509.Certificate, tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Rootline Factory TLS CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	sder, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "provision"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, caCert, key.Public(), caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	return caCert, tls.Certificate{Certificate: [][]byte{sder}, PrivateKey: key}, nil
}

// factoryFirmware is the signed factory test firmware of a product.
type factoryFirmware struct {
	product  string
	rootHash []byte
	policy   []byte
	images   map[boot.Layer][]byte
	// signers are the layers' image-signing keys (in memory: the demo's
	// device maker), for the field releases that follow.
	signers map[boot.Layer]crypto.Signer
	// factoryRoot, if set, is fused into the chips: the hash of the
	// factory CA root, the only root of an IDevID chain they install.
	factoryRoot []byte
	// deviceIDAlg is the chips' DICE algorithm (default P-256).
	deviceIDAlg pluton.Algorithm
}

// sign makes a signed image of layer l with the firmware's key.
func (f *factoryFirmware) sign(l boot.Layer, version string, svn uint64, payload []byte) ([]byte, error) {
	return boot.SignImage(rand.Reader, []crypto.Signer{f.signers[l]}, &boot.Manifest{Layer: l, Product: f.product, Version: version, SVN: svn}, payload)
}

func newFactoryFirmware(product string) (*factoryFirmware, error) {
	gen := func() (crypto.Signer, error) {
		p, _, err := boot.GenerateKey(rand.Reader, pluton.ECDSAP256)
		if err != nil {
			return nil, err
		}
		s, _, err := boot.ParsePrivateKeyPEM(p)
		clear(p)
		return s, err
	}
	root, err := gen()
	if err != nil {
		return nil, err
	}
	f := &factoryFirmware{product: product, images: map[boot.Layer][]byte{}, signers: map[boot.Layer]crypto.Signer{}}
	if f.rootHash, err = boot.RootKeyHash(root.Public(), crypto.SHA256); err != nil {
		return nil, err
	}
	rules := map[boot.Layer]boot.LayerRule{}
	signers := f.signers
	for _, l := range boot.Layers() {
		if signers[l], err = gen(); err != nil {
			return nil, err
		}
		rules[l] = boot.LayerRule{Signers: []crypto.PublicKey{signers[l].Public()}}
	}
	if f.policy, err = boot.SignPolicy(rand.Reader, root, pluton.ECDSAP256, &boot.PolicyContent{Version: 1, Product: product, Layers: rules}); err != nil {
		return nil, err
	}
	for _, l := range boot.Layers() {
		m := &boot.Manifest{Layer: l, Product: product, Version: "1.0.0", SVN: 1}
		if f.images[l], err = boot.SignImage(rand.Reader, []crypto.Signer{signers[l]}, m, []byte("factory test "+string(l))); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// bootChip fuses a chip for the product in dir and boots it with the
// factory test firmware.
func (f *factoryFirmware) bootChip(ctx context.Context, dir string, log *slog.Logger) (*device.Device, error) {
	dev, err := device.Init(ctx, dir, &device.InitRequest{Product: f.product, RootKeyHash: f.rootHash, FactoryRootHash: f.factoryRoot},
		&device.Options{Logger: log, Chip: soft.Options{DeviceIDAlgorithm: f.deviceIDAlg}})
	if err != nil {
		return nil, err
	}
	if _, err := dev.Boot(ctx, &device.Images{Policy: f.policy, Bootloader: f.images[boot.Bootloader], OS: f.images[boot.OS], App: f.images[boot.App]}); err != nil {
		dev.Close()
		return nil, err
	}
	// The boot's record is written now, as the chip would once booted,
	// not later in the middle of its provisioning.
	if err := dev.Flush(); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

// forgeCloneRequest makes the request of a clone claiming ueid: the claims
// of a genuine chip's evidence (over a fresh nonce) with ueid put in,
// signed by a software Alias key under a software DeviceID key whose
// self-signed certificate names ueid, and a CSR of that DeviceID key. Every
// signature verifies: only the registry, which knows ueid's first key,
// can tell.
func forgeCloneRequest(genuine *device.FactoryRequest, ueid []byte, product, lot string) (*provision.Request, error) {
	tok, err := evidence.Parse(genuine.Evidence)
	if err != nil {
		return nil, err
	}
	devKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	aliasKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	devDER, err := dice.DeviceIDCertificate(devKey, &dice.CertificateTemplate{IsCA: true, MaxPathLen: -1, UEID: ueid})
	if err != nil {
		return nil, err
	}
	devCert, err := x509.ParseCertificate(devDER)
	if err != nil {
		return nil, err
	}
	aliasDER, err := dice.AliasCertificate(devKey, devCert, &dice.CertificateTemplate{Subject: aliasKey.Public()})
	if err != nil {
		return nil, err
	}
	claims := *tok.Claims
	claims.UEID = ueid
	ev, err := evidence.Sign(rand.Reader, aliasKey, pluton.ECDSAP256, &claims, [][]byte{aliasDER, devDER})
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, devKey)
	if err != nil {
		return nil, err
	}
	return &provision.Request{UEID: ueid, CSR: csr, Evidence: ev, Product: product, Lot: lot}, nil
}

// showInjected prints what an injected chip received: its IDevID, for the
// key the chip unwrapped (it signs, and the IDevID's key verifies), and its
// join key.
func showInjected(ctx context.Context, d *demo, dev *device.Device, r *provision.InjectedResult) error {
	leaf, err := x509.ParseCertificate(r.Chain[0])
	if err != nil {
		return err
	}
	signer, err := dev.IdentitySigner(ctx)
	if err != nil {
		return err
	}
	msg := sha256.Sum256([]byte("proof that the injected key is in the chip"))
	sig, err := signer.Sign(rand.Reader, msg[:], crypto.SHA256)
	if err != nil {
		return err
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(pub, msg[:], sig) {
		return errors.New("the injected key's signature does not verify with the IDevID's key")
	}
	join, err := dev.Chip().Secret(ctx, device.InjectedKeyCompartment, "join-key")
	if err != nil {
		return err
	}
	n := len(join)
	clear(join)
	d.say("IDevID serial %s, log index %d, for the injected key: it signs inside the chip, the IDevID's key verifies", ca.Hex(leaf.SerialNumber), r.LogIndex)
	d.say("join-key: %d bytes in the chip's %s compartment; the service and the station only ever saw it wrapped", n, device.InjectedKeyCompartment)
	return nil
}
