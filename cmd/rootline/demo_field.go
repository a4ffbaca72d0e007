package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/provision/export"
	"github.com/rootline/rootline/provision/registry"
)

// runFieldDemo is part 5 of the demo: the field. The factory's registry
// export and CA feed the attestation verifier (rootline serve verify, run
// in-process from its configuration file); the first provisioned chip
// attests with its agent and gets an EAR and an operational certificate,
// updates its OS and attests again, and then, restored from a backup made
// before the update, boots the old OS and is refused: the verifier
// remembers the security version it last accepted.
func runFieldDemo(ctx context.Context, d *demo, f *factoryDemoResult, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(d.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	at := func(name string) string { return filepath.Join(dir, name) }

	// 1. What the verifier is given.
	d.step("The factory hands the verifier its registry export",
		fmt.Sprintf("registry export --config factory.json --out %s", at("devices.json")))
	reg, err := registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: f.registry})
	if err != nil {
		return err
	}
	out, err := os.Create(at("devices.json"))
	if err == nil {
		err = export.Write(ctx, out, reg, f.products, nil)
		err = errors.Join(err, out.Close())
	}
	reg.Close()
	if err != nil {
		return err
	}
	in, err := os.Open(at("devices.json"))
	if err != nil {
		return err
	}
	ex, err := export.Read(in)
	in.Close()
	if err != nil {
		return err
	}
	d.say("%d devices, each with its UEID, product and IDevID chain", len(ex.Devices))

	d.step("The verifier's keys and files: EAR key in the token, the CA's CRL, endorsements",
		fmt.Sprintf("hsm keygen --uri '%s' --alg p256", f.uri("verifier-ear")))
	kr := newKeyring(log)
	defer kr.Close()
	if _, _, err := kr.create(ctx, "EAR", f.uri("verifier-ear"), hsm.P256); err != nil {
		return err
	}
	caCfg, err := loadCAConfig(f.caDir)
	if err != nil {
		return err
	}
	local, err := openLocal(ctx, f.caDir, caCfg, kr, log, "sku-a")
	if err != nil {
		return err
	}
	crl, err := local.CRLFor(ctx, "sku-a")
	if err != nil {
		return err
	}
	if err := os.WriteFile(at("sku-a.crl"), crl, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(d.w, "   $ rootline ca crl --dir %s --product sku-a --out %s\n", f.caDir, at("sku-a.crl"))
	// Two releases of sku-a: the factory firmware the chips run, and the
	// field update that raises the OS to 1.1.0, SVN 2.
	osUpdate, err := f.fw.sign(boot.OS, "1.1.0", 2, []byte("field os 1.1.0"))
	if err != nil {
		return err
	}
	factory, err := firmwareRelease("factory-1", f.fw.images)
	if err != nil {
		return err
	}
	updated := map[boot.Layer][]byte{boot.Bootloader: f.fw.images[boot.Bootloader], boot.OS: osUpdate, boot.App: f.fw.images[boot.App]}
	update, err := firmwareRelease("field-1.1", updated)
	if err != nil {
		return err
	}
	refs := &attest.Endorsements{Version: attest.EndorsementsVersion, Products: []attest.ProductEndorsements{
		{Product: "sku-a", Releases: []attest.Release{*factory, *update}}}}
	rb, err := json.MarshalIndent(refs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(at("endorsements.json"), rb, 0o644); err != nil {
		return err
	}
	d.say("endorsements: sku-a releases factory-1 (os 1.0.0, SVN 1) and field-1.1 (os 1.1.0, SVN 2)")

	// The server's TLS certificate and the nonce key, then the
	// configuration file an operator would write.
	tlsCA, serverCert, err := demoTLSCertificates()
	if err != nil {
		return err
	}
	if err := writePEMFile(at("verifier.pem"), "CERTIFICATE", serverCert.Certificate[0]); err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(serverCert.PrivateKey)
	if err != nil {
		return err
	}
	err = writePEMFile(at("verifier.key"), "PRIVATE KEY", keyDER)
	clear(keyDER)
	if err != nil {
		return err
	}
	if err := writePEMFile(at("tls-ca.pem"), "CERTIFICATE", tlsCA.Raw); err != nil {
		return err
	}
	var nk [32]byte
	if _, err := rand.Read(nk[:]); err != nil {
		return err
	}
	err = os.WriteFile(at("nonce.key"), []byte(hex.EncodeToString(nk[:])+"\n"), 0o600)
	clear(nk[:])
	if err != nil {
		return err
	}
	conf := map[string]any{
		"version": 1, "listen": "127.0.0.1:0",
		"tls":      map[string]string{"certificate": "verifier.pem", "key": "verifier.key"},
		"registry": "devices.json", "roots": []string{filepath.Join(f.caDir, "root.pem")}, "crls": []string{"sku-a.crl"},
		"endorsements": "endorsements.json", "ear": map[string]string{"hsmKey": f.uri("verifier-ear")},
		"operationalCA": map[string]any{"caDir": f.caDir, "products": []string{"sku-a"}},
		"store":         "verdicts.db", "nonceKey": "nonce.key",
	}
	cb, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(at("verify.json"), cb, 0o600); err != nil {
		return err
	}
	cfg, err := loadVerifyConfig(at("verify.json"))
	if err != nil {
		return err
	}
	d.step("The attestation verifier", "serve verify --config "+at("verify.json"))
	addrFile := at("addr")
	served := make(chan error, 1)
	go func() { served <- runServeVerify(ctx, cfg, log, addrFile) }()
	defer func() {
		cancel()
		<-served
	}()
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			addr = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-served:
			return fmt.Errorf("demo: the verifier stopped: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("demo: the verifier did not start")
		}
	}
	d.say("serving on https://%s: nonces, evidence (CBOR or JSON), EARs signed in the token, JWKS at /v1/jwks", addr)
	pool := x509.NewCertPool()
	pool.AddCert(tlsCA)
	chip := f.chips[0]
	agent := func() (string, error) {
		var b strings.Builder
		err := runAgent(ctx, &agentOptions{State: chip, Verifier: "https://" + addr, CA: pool, Once: true, Out: &b, Logger: log})
		return b.String(), err
	}

	// 2. Chip 1 attests.
	d.step("Chip 1's agent attests: an EAR and a 24-hour operational certificate",
		fmt.Sprintf("device agent --state %s --verifier https://%s --ca tls-ca.pem --once", chip, addr))
	o, err := agent()
	if err != nil {
		return fmt.Errorf("demo: chip 1's attestation: %w\n%s", err, o)
	}
	fmt.Fprint(indent(d.w), o)
	if err := showOperational(d, chip); err != nil {
		return err
	}

	// 3. An OS update, then attest again; a backup first.
	backup := at("chip-1-backup")
	if err := os.CopyFS(backup, os.DirFS(chip)); err != nil {
		return err
	}
	d.step("Chip 1 boots the OS update (1.1.0, SVN 2), confirms it, and attests", "device boot --state "+chip+" --os os-1.1.0.img … && device confirm && device agent --once")
	if err := bootField(ctx, chip, f.fw, osUpdate, log, true); err != nil {
		return err
	}
	if o, err = agent(); err != nil {
		return fmt.Errorf("demo: chip 1 after the update: %w\n%s", err, o)
	}
	fmt.Fprint(indent(d.w), o)

	// 4. Rolled back: the state directory from the backup, the old OS.
	d.step("Chip 1 restored from a backup made before the update boots the old OS (its own counter says SVN 1 is fine)",
		"device boot --state "+chip+" --os os-1.0.0.img … && device agent --once")
	if err := os.RemoveAll(chip); err != nil {
		return err
	}
	if err := os.CopyFS(chip, os.DirFS(backup)); err != nil {
		return err
	}
	if err := bootField(ctx, chip, f.fw, f.fw.images[boot.OS], log, false); err != nil {
		return err
	}
	o, err = agent()
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(o+err.Error(), "rollback") {
		return fmt.Errorf("demo: the rolled-back chip was not refused for rollback: %v\n%s", err, o)
	}
	fmt.Fprint(indent(d.w), o)
	d.say("refused: the verifier keeps the counters and security versions it last accepted from each device (OS SVN 2 here)")
	return nil
}

// firmwareRelease is the endorsement of a release made of images.
func firmwareRelease(name string, images map[boot.Layer][]byte) (*attest.Release, error) {
	r := &attest.Release{Name: name}
	for _, l := range boot.Layers() {
		img, err := boot.ParseImage(images[l])
		if err != nil {
			return nil, err
		}
		m := img.Manifest
		alg, ok := digestAlgName(m.DigestAlg)
		if !ok || len(m.SignerKeyIDs) == 0 {
			return nil, fmt.Errorf("demo: layer %s: digest %v, %d signers", l, m.DigestAlg, len(m.SignerKeyIDs))
		}
		r.Layers = append(r.Layers, attest.LayerReference{Layer: string(m.Layer), Version: m.Version, MinSVN: m.SVN,
			Signer: m.SignerKeyIDs[0], Digests: []attest.Digest{{Alg: alg, Value: m.Digest}}})
	}
	return r, nil
}

// bootField boots the chip in dir with the firmware's bootloader and app
// and the given OS image, and confirms the boot if asked.
func bootField(ctx context.Context, dir string, fw *factoryFirmware, osImage []byte, log *slog.Logger, confirm bool) error {
	dev, err := device.Open(dir, &device.Options{Logger: log})
	if err != nil {
		return err
	}
	defer dev.Close()
	if _, err := dev.Boot(ctx, &device.Images{Policy: fw.policy, Bootloader: fw.images[boot.Bootloader], OS: osImage, App: fw.images[boot.App]}); err != nil {
		return err
	}
	if confirm {
		if err := dev.Confirm(ctx); err != nil {
			return err
		}
	}
	return dev.Flush()
}

// showOperational prints the operational certificate the agent stored.
func showOperational(d *demo, chip string) error {
	b, err := os.ReadFile(filepath.Join(chip, agentCertFile))
	if err != nil {
		return fmt.Errorf("demo: no operational certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return errors.New("demo: the operational certificate file holds no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return err
	}
	d.say("operational certificate: %s, issued by %s, valid %s to %s (%s)", c.Subject, c.Issuer.CommonName,
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), c.NotAfter.Sub(c.NotBefore).Round(time.Minute))
	return nil
}

func writePEMFile(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
