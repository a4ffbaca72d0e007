package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
)

// runBootDemo is the second part of the walkthrough: secure and measured
// boot, evidence, and anti-rollback.
func runBootDemo(ctx context.Context, d *demo, opts *device.Options) error {
	dir := filepath.Join(d.dir, "boot-demo")
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return err
	}
	const product = "sku-a"
	fmt.Fprintf(d.w, "\n--- Part 2: secure boot, measured boot, evidence (in %s)\n", dir)

	d.step("The device maker and OS vendor make signing keys", "image keygen --alg p384 --out keys/root")
	gen := func(name string, alg pluton.Algorithm) (crypto.Signer, error) {
		priv, pub, err := boot.GenerateKey(rand.Reader, alg)
		if err != nil {
			return nil, err
		}
		pubPEM, err := boot.MarshalPublicKeyPEM(pub)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(keys, name+".key"), priv, 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(keys, name+".pub"), pubPEM, 0o644); err != nil {
			return nil, err
		}
		s, _, err := boot.ParsePrivateKeyPEM(priv)
		clear(priv)
		return s, err
	}
	root, err := gen("root", pluton.ECDSAP384)
	if err != nil {
		return err
	}
	blKey, err := gen("bootloader", pluton.ECDSAP256)
	if err != nil {
		return err
	}
	osECDSA, err := gen("os-ecdsa", pluton.ECDSAP256)
	if err != nil {
		return err
	}
	osMLDSA, err := gen("os-mldsa", pluton.MLDSA65)
	if err != nil {
		return err
	}
	appKey, err := gen("app", pluton.Ed25519)
	if err != nil {
		return err
	}
	d.say("root (P-384), bootloader (P-256), OS (P-256 + ML-DSA-65, hybrid), app (Ed25519)")

	d.step("The root key signs the trust policy: who may sign each layer", "image policy --root-key keys/root.key --product sku-a --version 1 --signer bootloader=keys/bootloader.pub --signer os=keys/os-ecdsa.pub --signer os=keys/os-mldsa.pub --hybrid os --signer app=keys/app.pub --out policy.cbor")
	policy, err := boot.SignPolicy(rand.Reader, root, pluton.ECDSAP384, &boot.PolicyContent{
		Version: 1, Product: product,
		Layers: map[boot.Layer]boot.LayerRule{
			boot.Bootloader: {Signers: []crypto.PublicKey{blKey.Public()}},
			boot.OS:         {Signers: []crypto.PublicKey{osECDSA.Public(), osMLDSA.Public()}, Hybrid: true},
			boot.App:        {Signers: []crypto.PublicKey{appKey.Public()}},
		},
	})
	if err != nil {
		return err
	}
	rootHash, err := boot.RootKeyHash(root.Public(), crypto.SHA256)
	if err != nil {
		return err
	}
	d.say("root key hash to fuse: %x", rootHash)

	d.step("Sign three images", "image sign --key keys/os-ecdsa.key --key keys/os-mldsa.key --layer os --product sku-a --version 1.4.0 --svn 3 --in os.bin --out os.img")
	sign := func(l boot.Layer, version string, svn uint64, payload string, signers ...crypto.Signer) ([]byte, error) {
		img, err := boot.SignImage(rand.Reader, signers, &boot.Manifest{Layer: l, Product: product, Version: version, SVN: svn}, []byte(payload))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, string(l)+"-"+version+".img"), img, 0o644)
		}
		return img, err
	}
	im := &device.Images{Policy: policy}
	if im.Bootloader, err = sign(boot.Bootloader, "1.0.0", 1, "bootloader 1.0.0", blKey); err != nil {
		return err
	}
	if im.OS, err = sign(boot.OS, "1.4.0", 3, "os 1.4.0", osECDSA, osMLDSA); err != nil {
		return err
	}
	if im.App, err = sign(boot.App, "2.1.0", 1, "app 2.1.0", appKey); err != nil {
		return err
	}
	oldOS, err := sign(boot.OS, "1.3.2", 2, "os 1.3.2 (has a known vulnerability)", osECDSA, osMLDSA)
	if err != nil {
		return err
	}
	d.say("bootloader 1.0.0 (svn 1), os 1.4.0 (svn 3, hybrid), app 2.1.0 (svn 1); and an old os 1.3.2 (svn 2)")

	chipDir := filepath.Join(dir, "chip")
	d.step("Fuse a chip for the product", fmt.Sprintf("device init --state %s --product %s --root-key-hash %x", chipDir, product, rootHash))
	dev, err := device.Init(ctx, chipDir, &device.InitRequest{Product: product, RootKeyHash: rootHash}, opts)
	if err != nil {
		return err
	}
	defer dev.Close()

	d.step("Boot: each layer verified, measured and given its DICE identity", "device boot --state "+chipDir+" --policy policy.cbor --bootloader bootloader.img --os os.img --app app.img")
	res, err := dev.Boot(ctx, im)
	if err != nil {
		return err
	}
	for _, m := range res.Layers {
		d.say("%-10s %-6s svn %d  %x…", m.Layer, m.Version, m.SVN, m.Digest[:12])
	}
	if err := dev.Confirm(ctx); err != nil {
		return err
	}
	d.say("confirmed: counters raised to the running SVNs (os = 3)")

	d.step("Measurement registers", "device pcrs --state "+chipDir)
	regs, err := dev.Registers(ctx)
	if err != nil {
		return err
	}
	for _, r := range usedRegisters() {
		v, _ := regs.Value(crypto.SHA256, r)
		d.say("sha256 %2d: %x", r, v)
	}

	logPath := filepath.Join(dir, "eventlog.bin")
	d.step("Write the TCG event log and replay it", "device eventlog --state "+chipDir+" --out "+logPath)
	logBytes, err := dev.EventLog(ctx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(logPath, logBytes, 0o644); err != nil {
		return err
	}
	lg, err := measure.ParseLog(logBytes)
	if err != nil {
		return err
	}
	want := map[crypto.Hash]map[int][]byte{}
	for _, bank := range regs.Banks() {
		want[bank] = map[int][]byte{}
		for _, r := range usedRegisters() {
			want[bank][r], _ = regs.Value(bank, r)
		}
	}
	if err := lg.Verify(want); err != nil {
		return err
	}
	d.say("%d events replay to the same registers in both banks", len(lg.Events()))
	if tool, err := exec.LookPath("tpm2_eventlog"); err == nil {
		out, err := exec.CommandContext(ctx, tool, logPath).CombinedOutput()
		v, _ := regs.Value(crypto.SHA256, device.LayerRegister(boot.OS))
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("%x", v)) {
			return fmt.Errorf("demo: tpm2_eventlog disagrees: %v", err)
		}
		d.say("tpm2_eventlog (tpm2-tools) reads the log and computes the same registers")
	}

	nonce := make([]byte, 16)
	rand.Read(nonce)
	evPath := filepath.Join(dir, "evidence.cbor")
	d.step("Attest over a verifier's nonce, and verify the evidence", fmt.Sprintf("device attest --state %s --nonce %x --out %s", chipDir, nonce, evPath))
	ev, err := dev.Attest(ctx, nonce)
	if err != nil {
		return err
	}
	if err := os.WriteFile(evPath, ev, 0o644); err != nil {
		return err
	}
	certs, err := dev.Certificates(ctx)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[len(certs)-1])
	fmt.Fprintf(d.w, "   $ rootline evidence verify --roots deviceid.pem --nonce %x %s\n", nonce, evPath)
	tok, err := evidence.Verify(ev, &evidence.VerifyOptions{Nonce: nonce, Roots: roots})
	if err != nil {
		return err
	}
	d.say("%d-byte EAT, %s signature by the app's Alias key, chain of %d DICE certificates to the DeviceID", len(ev), tok.Algorithm, len(tok.Chain))
	d.say("claims: ueid %x, lifecycle %s, %d layers, counters %v", tok.Claims.UEID, tok.Claims.Lifecycle, len(tok.Claims.Layers), tok.Claims.Counters)

	d.step("Try to boot the old, rolled-back OS image", "device boot --state "+chipDir+" --policy policy.cbor --bootloader bootloader.img --os os-1.3.2.img --app app.img")
	_, err = dev.Boot(ctx, &device.Images{Policy: policy, Bootloader: im.Bootloader, OS: oldOS, App: im.App})
	if err := d.refused(err, boot.ErrRollback); err != nil {
		return err
	}
	var be *device.BootError
	if !errors.As(err, &be) {
		return errors.New("demo: refusal is not a BootError")
	}
	return nil
}
