package main

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
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/internal/pgtest"
	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
)

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func ecKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
	return k
}

// run runs a command tree with args.
func run(t *testing.T, ctx context.Context, root interface {
	SetArgs([]string)
	ExecuteContext(context.Context) error
}, args ...string) error {
	t.Helper()
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// bootedChip makes a chip of product in dir booted with signed test
// firmware, and returns the reference values file content of that
// firmware.
func bootedChip(t *testing.T, dir, product string) string {
	t.Helper()
	return bootedChipOn(t, dir, product, nil)
}

// bootedChipOn is bootedChip on the TPM of tpmOpts (device.InitTPM), or on
// the emulated chip when tpmOpts is nil.
func bootedChipOn(t *testing.T, dir, product string, tpmOpts *device.TPMOptions) string {
	t.Helper()
	ctx := t.Context()
	gen := func() crypto.Signer {
		p, _, err := boot.GenerateKey(rand.Reader, pluton.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		s, _, err := boot.ParsePrivateKeyPEM(p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	root := gen()
	rootHash, err := boot.RootKeyHash(root.Public(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	signers := map[boot.Layer]crypto.Signer{}
	rules := map[boot.Layer]boot.LayerRule{}
	for _, l := range boot.Layers() {
		signers[l] = gen()
		rules[l] = boot.LayerRule{Signers: []crypto.PublicKey{signers[l].Public()}}
	}
	policy, err := boot.SignPolicy(rand.Reader, root, pluton.ECDSAP256, &boot.PolicyContent{Version: 1, Product: product, Layers: rules})
	if err != nil {
		t.Fatal(err)
	}
	img := func(l boot.Layer) []byte {
		b, err := boot.SignImage(rand.Reader, []crypto.Signer{signers[l]}, &boot.Manifest{Layer: l, Product: product, Version: "1.0.0", SVN: 1}, []byte("factory "+string(l)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var d *device.Device
	if tpmOpts != nil {
		d, err = device.InitTPM(ctx, dir, &device.InitRequest{Product: product, RootKeyHash: rootHash}, tpmOpts)
	} else {
		d, err = device.Init(ctx, dir, &device.InitRequest{Product: product, RootKeyHash: rootHash}, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	res, err := d.Boot(ctx, &device.Images{Policy: policy, Bootloader: img(boot.Bootloader), OS: img(boot.OS), App: img(boot.App)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	var layers []string
	for _, m := range res.Layers {
		layers = append(layers, fmt.Sprintf(`%q:{"digests":[%q],"minSVN":1}`, m.Layer, hex.EncodeToString(m.Digest)))
	}
	return fmt.Sprintf(`{"version":1,"products":{%q:{%s}}}`, product, strings.Join(layers, ","))
}

// TestServeProvisionCLI runs rootline serve provision with a CA in SoftHSM2
// and rootline station provision against it.
// The service runs from its configuration file with its registry in SQLite
// (a file next to it) and in PostgreSQL (a URL): the same station flow, and
// rootline registry export reads what it recorded.
func TestServeProvisionCLI(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testServeProvisionCLI(t, func() string { return "registry.db" }) })
	t.Run("postgres", func(t *testing.T) {
		testServeProvisionCLI(t, func() string { return pgtest.CreateDatabase(t, pgtest.Start(t)) })
	})
}

func testServeProvisionCLI(t *testing.T, registrySetting func() string) {
	testdep.LookPath(t, "softhsm2-util")
	ctx := t.Context()
	w := t.TempDir()
	if err := os.MkdirAll(filepath.Join(w, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(w, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(w, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	t.Setenv("CA_PIN", "123456")
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "factory", "--pin", "123456", "--so-pin", "12345678").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	uri := func(o string) string { return "pkcs11:token=factory;object=" + o + "?pin-source=env:CA_PIN" }
	caDir := filepath.Join(w, "ca")
	exe := func(args ...string) string {
		t.Helper()
		c := newRootCommand("test")
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		if err := run(t, ctx, c, args...); err != nil {
			t.Fatalf("rootline %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	exe("ca", "init", "--out", caDir, "--generate", "--organization", "Rootline", "--product", "sku-a",
		"--hwtype", "1.3.6.1.4.1.32473.1.1", "--root-key", uri("root"), "--intermediate-key", uri("sku-a"), "--station-key", uri("stations"))

	exe("ca", "add-product", "--dir", caDir, "--generate", "--product", "sku-b", "--hwtype", "1.3.6.1.4.1.32473.1.2",
		"--root-key", uri("root"), "--intermediate-key", uri("sku-b"))

	// Station certificates: line-1 for sku-a, line-2 for sku-b.
	station := func(name, product string) {
		k := ecKey(t, filepath.Join(w, name+".key"))
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, k)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(w, name+".csr"), "CERTIFICATE REQUEST", csr)
		exe("ca", "issue", "--dir", caDir, "--csr", filepath.Join(w, name+".csr"), "--profile", "station",
			"--station", name, "--station-product", product, "--out", filepath.Join(w, name+".pem"))
	}
	station("line-1", "sku-a")
	station("line-2", "sku-b")

	// The server's TLS certificate, from a CA of its own.
	srvCAKey := ecKey(t, filepath.Join(w, "srvca.key"))
	now := time.Now()
	srvCATmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "TLS CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	srvCADER, err := x509.CreateCertificate(rand.Reader, srvCATmpl, srvCATmpl, srvCAKey.Public(), srvCAKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(w, "srvca.pem"), "CERTIFICATE", srvCADER)
	srvCA, _ := x509.ParseCertificate(srvCADER)
	srvKey := ecKey(t, filepath.Join(w, "server.key"))
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "provision"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, srvCA, srvKey.Public(), srvCAKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(w, "server.pem"), "CERTIFICATE", srvDER)

	// The attestation verifiers' CA, and one verifier's client certificate.
	verCAKey := ecKey(t, filepath.Join(w, "verca.key"))
	verCATmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "Verifiers CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	verCADER, err := x509.CreateCertificate(rand.Reader, verCATmpl, verCATmpl, verCAKey.Public(), verCAKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(w, "verifiers-ca.pem"), "CERTIFICATE", verCADER)
	verCA, _ := x509.ParseCertificate(verCADER)
	verKey := ecKey(t, filepath.Join(w, "verifier.key"))
	verDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "verifier-1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		verCA, verKey.Public(), verCAKey)
	if err != nil {
		t.Fatal(err)
	}

	// The issuance log's tree-head key is an Ed25519 key in the same token.
	exe("hsm", "keygen", "--uri", uri("log"), "--alg", "ed25519")
	exe("ca", "crl", "--dir", caDir, "--issuer", "stations", "--out", filepath.Join(w, "stations.crl"))
	if err := os.WriteFile(filepath.Join(w, "nonce.key"), []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chip := filepath.Join(w, "chip")
	refsA := bootedChip(t, chip, "sku-a")
	// sku-b's identity is injected: its chip, its factory firmware (whose
	// payloads, and so whose digests, are sku-a's), and its master secret.
	chipB := filepath.Join(w, "chip-b")
	refsB := bootedChip(t, chipB, "sku-b")
	// A chip of sku-a on a TPM (swtpm), booted with firmware of the same
	// payloads: its SHA-256 layer digests are sku-a's reference values.
	sw := tpmtest.Start(t)
	chipT := filepath.Join(w, "chip-tpm")
	if refsT := bootedChipOn(t, chipT, "sku-a", &device.TPMOptions{Address: sw.Addr}); refsT != refsA {
		t.Fatalf("the TPM chip's factory firmware has other reference values:\n%s", refsT)
	}
	if err := os.WriteFile(filepath.Join(w, "refs.json"), mergeRefs(t, refsA, refsB), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := hsm.Open(ctx, uri("root"), nil)
	if err != nil {
		t.Fatal(err)
	}
	master, err := m.CreateSecretMaster(ctx, "sku-b-master")
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	master.PINSource = "env:CA_PIN"
	if err := os.WriteFile(filepath.Join(w, "provision.json"), []byte(`{"version":1,"listen":"127.0.0.1:0",
	 "tls":{"certificate":"server.pem","key":"server.key","stationCA":"ca/stations.pem","stationCRL":"stations.crl","verifierCA":"verifiers-ca.pem"},
	 "registry":"`+registrySetting()+`","caDir":"ca","log":{"dir":"log","hsmKey":"`+uri("log")+`","name":"log.rootline.test"},
	 "nonceKey":"nonce.key","referenceValues":"refs.json",
	 "products":{"sku-a":{"identity":"on-chip"},
	   "sku-b":{"identity":"injected","injection":{"hsm":"pkcs11:token=factory?pin-source=env:CA_PIN",
	     "keyAlgorithm":"p256","secretMaster":"`+master.String()+`","secrets":["join-key","wifi-psk"]}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	g := &globals{logLevel: "warn", logFormat: "text"}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var serveOut bytes.Buffer
	addrFile := filepath.Join(w, "addr")
	go func() {
		c := newServeCommand(g)
		c.SetOut(&serveOut)
		c.SetErr(&serveOut)
		done <- run(t, sctx, c, "provision", "--config", filepath.Join(w, "provision.json"), "--addr-file", addrFile)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, serveOut.String())
		}
	}()
	var addr string
	for deadline := time.Now().Add(20 * time.Second); ; {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			addr = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, serveOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start")
		}
	}

	stationRun := func(name string) (string, error) {
		c := newStationCommand(g)
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		err := run(t, ctx, c, "provision", "--server", "https://"+addr, "--cert", filepath.Join(w, name+".pem"),
			"--key", filepath.Join(w, name+".key"), "--ca", filepath.Join(w, "srvca.pem"), "--chip", chip, "--product", "sku-a", "--lot", "lot-1")
		return out.String(), err
	}
	// line-2 may not provision sku-a: exit status 2, the chip unchanged.
	out, err := stationRun("line-2")
	if ee, ok := err.(*exitError); !ok || ee.code != 2 || !strings.Contains(err.Error(), "station_not_allowed") {
		t.Fatalf("line-2: %v\n%s", err, out)
	}
	// line-1 provisions it, twice (the second is a harmless retry).
	for range 2 {
		out, err := stationRun("line-1")
		if err != nil || !strings.Contains(out, "provisioned: 3 certificates, issuance log index 0") {
			t.Fatalf("line-1: %v\n%s", err, out)
		}
	}
	d, err := device.Open(chip, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if lc, err := d.Chip().Lifecycle(ctx); err != nil || lc != pluton.Provisioned {
		t.Fatalf("chip lifecycle %v, %v", lc, err)
	}
	// A second chip, behind its factory port in another "process" (the
	// serve-factory command), provisioned with --chip-port.
	chip2 := filepath.Join(w, "chip2")
	if refs2 := bootedChip(t, chip2, "sku-a"); refs2 != refsA {
		t.Fatalf("the second chip's factory firmware has other reference values:\n%s", refs2)
	}
	pctx, pcancel := context.WithCancel(ctx)
	portDone := make(chan error, 1)
	portFile := filepath.Join(w, "port")
	go func() {
		c := newDeviceCommand(g)
		c.SetOut(io.Discard)
		c.SetErr(io.Discard)
		portDone <- run(t, pctx, c, "serve-factory", "--state", chip2, "--listen", "unix:"+filepath.Join(w, "chip2.sock"), "--addr-file", portFile)
	}()
	defer func() {
		pcancel()
		if err := <-portDone; err != nil {
			t.Errorf("serve-factory: %v", err)
		}
	}()
	var port string
	for deadline := time.Now().Add(20 * time.Second); port == ""; {
		if b, err := os.ReadFile(portFile); err == nil && len(b) > 0 {
			port = strings.TrimSpace(string(b))
		} else if time.Now().After(deadline) {
			t.Fatal("serve-factory did not start")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	c := newStationCommand(g)
	var pout bytes.Buffer
	c.SetOut(&pout)
	c.SetErr(&pout)
	if err := run(t, ctx, c, "provision", "--server", "https://"+addr, "--cert", filepath.Join(w, "line-1.pem"),
		"--key", filepath.Join(w, "line-1.key"), "--ca", filepath.Join(w, "srvca.pem"), "--chip-port", port, "--product", "sku-a", "--lot", "lot-1"); err != nil ||
		!strings.Contains(pout.String(), "provisioned: 3 certificates, issuance log index 1") {
		t.Fatalf("station over the factory port: %v\n%s", err, pout.String())
	}

	stationProvision := func(name, product string, args ...string) (string, error) {
		c := newStationCommand(g)
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		err := run(t, ctx, c, append([]string{"provision", "--server", "https://" + addr, "--cert", filepath.Join(w, name+".pem"),
			"--key", filepath.Join(w, name+".key"), "--ca", filepath.Join(w, "srvca.pem"), "--product", product, "--lot", "lot-1"}, args...)...)
		return out.String(), err
	}

	// The injected chip of sku-b: the on-chip flow is refused for the
	// product (bad_request, exit status 2), the injected one provisions it,
	// twice (the retry confirms again), and the HSM keeps no device key.
	if out, err := stationProvision("line-2", "sku-b", "--chip", chipB); !isExit(err, 2) || !strings.Contains(err.Error(), "bad_request") {
		t.Fatalf("on-chip flow for an injected product: %v\n%s", err, out)
	}
	out, err = stationProvision("line-2", "sku-b", "--chip", chipB, "--identity", "injected")
	if err != nil || !strings.Contains(out, "provisioned: 3 certificates, issuance log index 2") ||
		!strings.Contains(out, "injected: device key and 2 secrets installed") {
		t.Fatalf("injected: %v\n%s", err, out)
	}
	if out, err := stationProvision("line-2", "sku-b", "--chip", chipB, "--identity", "injected"); err != nil ||
		!strings.Contains(out, "issuance log index 2") || !strings.Contains(out, "already confirmed") {
		t.Fatalf("injected, again: %v\n%s", err, out)
	}
	db, err := device.Open(chipB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lc, err := db.Chip().Lifecycle(ctx); err != nil || lc != pluton.Provisioned {
		t.Fatalf("injected chip lifecycle %v, %v", lc, err)
	}
	if _, err := db.IdentitySigner(ctx); err != nil {
		t.Fatalf("injected chip's identity key: %v", err)
	}
	db.Close()
	if objs := listObjects(t, "123456"); strings.Contains(objs, "rootline-idevid-") || !strings.Contains(objs, "sku-b-master") {
		t.Fatalf("the token after confirmation (want no injected device key, the master kept):\n%s", objs)
	}

	// The chip on a TPM: --identity tpm is required for it, and provisions it.
	if out, err := stationProvision("line-1", "sku-a", "--chip", chipT, "--tpm", sw.Addr); err == nil || !strings.Contains(err.Error(), "--identity tpm") {
		t.Fatalf("a TPM chip without --identity tpm: %v\n%s", err, out)
	}
	if out, err := stationProvision("line-1", "sku-a", "--chip", chipT, "--tpm", sw.Addr, "--identity", "tpm"); err != nil ||
		!strings.Contains(out, "provisioned: 3 certificates, issuance log index 3") {
		t.Fatalf("tpm: %v\n%s", err, out)
	}
	dt, err := device.OpenTPM(ctx, chipT, &device.TPMOptions{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	if lc, err := dt.Lifecycle(ctx); err != nil || lc != pluton.Provisioned {
		t.Fatalf("TPM chip lifecycle %v, %v", lc, err)
	}
	tpmManifests, err := dt.Manifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dt.Close()

	// The verifier reads the export over the API with its certificate.
	roots := x509.NewCertPool()
	roots.AddCert(srvCA)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		Certificates: []tls.Certificate{{Certificate: [][]byte{verDER}, PrivateKey: verKey}}}}}
	resp, err := hc.Get("https://" + addr + "/v1/registry/export")
	if err != nil {
		t.Fatal(err)
	}
	apiExport, err := export.Read(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(apiExport.Devices) != 4 {
		t.Fatalf("export over the API: %d, %v", resp.StatusCode, err)
	}

	// The registry holds the chips: the export lists them, complete.
	exportFile := filepath.Join(w, "devices.json")
	exe("registry", "export", "--config", filepath.Join(w, "provision.json"), "--out", exportFile)
	f, err := os.Open(exportFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ex, err := export.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Devices) != 4 {
		t.Fatalf("export: %+v", ex.Devices)
	}
	for _, d := range ex.Devices {
		if d.State != registry.Complete {
			t.Fatalf("export: %+v", ex.Devices)
		}
	}

	// In the field: the TPM chip's agent attests to the verifier, which
	// reads this export, and is affirmed.
	attestTPMChip(t, g, w, caDir, exportFile, tpmManifests, uri("ear"), chipT, sw.Addr)

	// line-1's certificate is revoked and a new CRL published: its next
	// call is refused, without restarting the service.
	l1, err := x509.ParseCertificate(pemBlock(t, filepath.Join(w, "line-1.pem")))
	if err != nil {
		t.Fatal(err)
	}
	exe("ca", "revoke", "--dir", caDir, "--serial", l1.SerialNumber.Text(16), "--reason", "1")
	exe("ca", "crl", "--dir", caDir, "--issuer", "stations", "--out", filepath.Join(w, "stations.crl"))
	time.Sleep(1100 * time.Millisecond) // the service looks at the file at most once a second
	chip5 := filepath.Join(w, "chip5")
	bootedChip(t, chip5, "sku-a")
	rc := newStationCommand(g)
	var rout bytes.Buffer
	rc.SetOut(&rout)
	rc.SetErr(&rout)
	err = run(t, ctx, rc, "provision", "--server", "https://"+addr, "--cert", filepath.Join(w, "line-1.pem"),
		"--key", filepath.Join(w, "line-1.key"), "--ca", filepath.Join(w, "srvca.pem"), "--chip", chip5, "--product", "sku-a", "--lot", "lot-1")
	if !isExit(err, 2) || !strings.Contains(err.Error(), "unauthenticated") {
		t.Fatalf("a revoked station: %v\n%s", err, rout.String())
	}
}

func pemBlock(t *testing.T, path string) []byte {
	t.Helper()
	blk, _ := pem.Decode(mustRead(t, path))
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	return blk.Bytes
}

func isExit(err error, code int) bool {
	ee, ok := err.(*exitError)
	return ok && ee.code == code
}

// mergeRefs merges reference values files of one product each.
func mergeRefs(t *testing.T, files ...string) []byte {
	t.Helper()
	all := map[string]json.RawMessage{}
	for _, f := range files {
		var rv struct {
			Products map[string]json.RawMessage `json:"products"`
		}
		if err := json.Unmarshal([]byte(f), &rv); err != nil {
			t.Fatal(err)
		}
		maps.Copy(all, rv.Products)
	}
	b, err := json.Marshal(map[string]any{"version": 1, "products": all})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// listObjects is pkcs11-tool's view of the token "factory" of the
// SoftHSM2 configuration in SOFTHSM2_CONF.
func listObjects(t *testing.T, pin string) string {
	t.Helper()
	tool := testdep.LookPath(t, "pkcs11-tool")
	module, err := hsm.FindSoftHSM()
	if err != nil {
		t.Fatal(err)
	}
	// pkcs11-tool takes the PIN on its command line; acceptable in a test.
	out, err := exec.Command(tool, "--module", module, "--token-label", "factory", "--login", "--pin", pin, "--list-objects").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	return string(out)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attestTPMChip runs rootline serve verify over the registry export and
// the CA of the factory test, with endorsements of the TPM chip's
// firmware, and the chip's agent (device agent --tpm) once: affirming.
func attestTPMChip(t *testing.T, g *globals, w, caDir, exportFile string, ms []*boot.Manifest, earKey, chip, tpmAddr string) {
	t.Helper()
	ctx := t.Context()
	exe := func(args ...string) {
		t.Helper()
		c := newRootCommand("test")
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		if err := run(t, ctx, c, args...); err != nil {
			t.Fatalf("rootline %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
	exe("ca", "crl", "--dir", caDir, "--issuer", "sku-a", "--out", filepath.Join(w, "sku-a.crl"))
	exe("hsm", "keygen", "--uri", earKey, "--alg", "p256")
	release := attest.Release{Name: "factory-1"}
	for _, m := range ms {
		release.Layers = append(release.Layers, attest.LayerReference{Layer: string(m.Layer), Version: m.Version, MinSVN: m.SVN,
			Signer: m.SignerKeyIDs[0], Digests: []attest.Digest{{Alg: "sha-256", Value: m.Digest}}})
	}
	refs, err := json.Marshal(&attest.Endorsements{Version: attest.EndorsementsVersion,
		Products: []attest.ProductEndorsements{{Product: "sku-a", Releases: []attest.Release{release}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w, "endorsements.json"), refs, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := `{"version":1,"listen":"127.0.0.1:0","tls":{"certificate":"server.pem","key":"server.key"},
	 "registry":"` + exportFile + `","roots":["ca/root.pem"],"crls":["sku-a.crl"],"endorsements":"endorsements.json",
	 "ear":{"hsmKey":"` + earKey + `"},"store":"verdicts.db","nonceKey":"nonce.key"}`
	if err := os.WriteFile(filepath.Join(w, "verify.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	vctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	addrFile := filepath.Join(w, "verify.addr")
	var serveOut bytes.Buffer
	go func() {
		c := newServeCommand(g)
		c.SetOut(&serveOut)
		c.SetErr(&serveOut)
		done <- run(t, vctx, c, "verify", "--config", filepath.Join(w, "verify.json"), "--addr-file", addrFile)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve verify: %v\n%s", err, serveOut.String())
		}
	}()
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == ""; {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			addr = strings.TrimSpace(string(b))
		} else if time.Now().After(deadline) {
			t.Fatalf("serve verify did not start\n%s", serveOut.String())
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	c := newDeviceCommand(g)
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	if err := run(t, ctx, c, "agent", "--tpm", tpmAddr, "--state", chip, "--verifier", "https://"+addr,
		"--ca", filepath.Join(w, "srvca.pem"), "--once"); err != nil || !strings.Contains(out.String(), "status: affirming") {
		t.Fatalf("the TPM chip's agent: %v\n%s\n%s", err, out.String(), serveOut.String())
	}
}
