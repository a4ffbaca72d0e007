package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootline/rootline/internal/benchratio"
	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/boot/boottest"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
)

// vendor is a product's signing setup (boottest) with the images these
// tests boot.
type vendor struct{ *boottest.Vendor }

func newVendor(t testing.TB, product string) *vendor {
	return &vendor{boottest.NewVendor(t, product, pluton.ECDSAP384)}
}

func (v *vendor) images(t testing.TB, svn uint64) *Images {
	return &Images{
		Policy:     v.Policy,
		Bootloader: v.Image(t, boot.Bootloader, "1.0.0", 1, "bootloader code"),
		OS:         v.Image(t, boot.OS, "1.4.0", svn, "os code v"+string(rune('0'+svn))),
		App:        v.Image(t, boot.App, "2.1.0", 1, "app code"),
	}
}

func newDevice(t testing.TB, v *vendor) *Device {
	t.Helper()
	d, err := Init(context.Background(), t.TempDir(), &InitRequest{Product: v.Product, RootKeyHash: v.RootHash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestBootAttestVerify(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d := newDevice(t, v)
	res, err := d.Boot(ctx, v.images(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Layers) != 3 || res.Layers[1].Version != "1.4.0" {
		t.Fatalf("boot result %+v", res.Layers)
	}
	// The registers replayed from the stored log are the ones boot computed.
	regs, err := d.Registers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, bank := range regs.Banks() {
		a, _ := regs.Values(bank)
		b, _ := res.Registers.Values(bank)
		for i := range a {
			if !bytes.Equal(a[i], b[i]) {
				t.Fatalf("register %d of %v differs after restore", i, bank)
			}
		}
	}

	nonce := []byte("0123456789abcdef")
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := d.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[len(certs)-1])
	tok, err := evidence.Verify(ev, &evidence.VerifyOptions{Nonce: nonce, Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := d.Chip().Identity(ctx)
	if !bytes.Equal(tok.Claims.UEID, id.UEID) || tok.Claims.Product != "sku-a" || len(tok.Claims.Layers) != 3 {
		t.Fatalf("claims %+v", tok.Claims)
	}
	if tok.Claims.Lifecycle != pluton.Manufacturing {
		t.Fatalf("lifecycle %v", tok.Claims.Lifecycle)
	}
	// The chain carries each layer's TcbInfo with the image digest.
	for i, l := range boot.Layers() {
		c := tok.Chain[len(tok.Chain)-2-i]
		tcb, err := dice.TcbInfoFromCertificate(c)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if tcb.Layer != uint64(i) || !bytes.Equal(tcb.FWIDs[0].Digest, res.Layers[i].Digest) {
			t.Fatalf("%s: TcbInfo %+v", l, tcb)
		}
	}
	// Another nonce is refused.
	if _, err := evidence.Verify(ev, &evidence.VerifyOptions{Nonce: []byte("fedcba9876543210"), Roots: roots}); !errors.Is(err, evidence.ErrNonce) {
		t.Fatalf("wrong nonce: %v", err)
	}
	// The alias key is the same across restarts (same images, same CDIs).
	d.Close()
	d2, err := Open(d.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	certs2, err := d2.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(certs2[0].RawSubjectPublicKeyInfo, certs[0].RawSubjectPublicKeyInfo) {
		t.Fatal("alias key changed across restart")
	}
}

func TestRollbackAndConfirm(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d := newDevice(t, v)
	if _, err := d.Boot(ctx, v.images(t, 3)); err != nil {
		t.Fatal(err)
	}
	// Before confirmation an older OS still boots (fallback).
	old := v.images(t, 2)
	if _, err := d.Boot(ctx, old); err != nil {
		t.Fatalf("fallback before confirm: %v", err)
	}
	if _, err := d.Boot(ctx, v.images(t, 3)); err != nil {
		t.Fatal(err)
	}
	if err := d.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := d.Chip().Counter(ctx, pluton.SecurityMonitor, "svn/os"); c != 3 {
		t.Fatalf("os counter %d", c)
	}
	counters, _ := os.ReadFile(filepath.Join(d.Dir(), ChipFile))
	_, err := d.Boot(ctx, old)
	var be *BootError
	if !errors.As(err, &be) || be.Stage != "os" || !errors.Is(err, boot.ErrRollback) {
		t.Fatalf("rolled-back OS: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(d.Dir(), ChipFile))
	if !bytes.Equal(counters, after) {
		t.Fatal("refused boot changed the chip")
	}
	if _, err := d.Attest(ctx, []byte("0123456789abcdef")); !errors.Is(err, ErrNotBooted) {
		t.Fatalf("attest after refused boot: %v", err)
	}
}

func TestBootRefusals(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	other := newVendor(t, "sku-a")
	d := newDevice(t, v)
	good := v.images(t, 1)
	tampered := bytes.Clone(good.OS)
	tampered[len(tampered)-1] ^= 1
	for name, tc := range map[string]struct {
		im    *Images
		stage string
		want  error
	}{
		"tampered os":    {&Images{good.Policy, good.Bootloader, tampered, good.App}, "os", boot.ErrDigestMismatch},
		"other signer":   {&Images{good.Policy, good.Bootloader, other.Image(t, boot.OS, "1.0.0", 1, "x"), good.App}, "os", boot.ErrUnknownSigner},
		"other root":     {&Images{other.Policy, good.Bootloader, good.OS, good.App}, "policy", boot.ErrRootKeyMismatch},
		"layer swap":     {&Images{good.Policy, good.Bootloader, good.App, good.OS}, "os", boot.ErrUnknownSigner},
		"truncated app":  {&Images{good.Policy, good.Bootloader, good.OS, good.App[:40]}, "app", boot.ErrTruncated},
		"missing app":    {&Images{good.Policy, good.Bootloader, good.OS, nil}, "app", boot.ErrTruncated},
		"garbage policy": {&Images{[]byte("nope"), good.Bootloader, good.OS, good.App}, "policy", boot.ErrMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := d.Boot(ctx, tc.im)
			var be *BootError
			if !errors.As(err, &be) || be.Stage != tc.stage || !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want stage %s, %v", err, tc.stage, tc.want)
			}
		})
	}
	// A revoked signer, through a newer policy.
	kid, _ := boot.KeyID(v.Signers[boot.OS].Public())
	rules := map[boot.Layer]boot.LayerRule{}
	for _, l := range boot.Layers() {
		rules[l] = boot.LayerRule{Signers: []crypto.PublicKey{v.Signers[l].Public()}}
	}
	revoking := v.SignPolicy(t, 2, rules, [][]byte{kid})
	if _, err := d.Boot(ctx, &Images{revoking, good.Bootloader, good.OS, good.App}); !errors.Is(err, boot.ErrRevokedSigner) {
		t.Fatalf("revoked signer: %v", err)
	}
}

// The event log the device writes is read by tpm2_eventlog, which computes
// the same registers.
func TestEventLogTPM2Tools(t *testing.T) {
	tool := testdep.LookPath(t, "tpm2_eventlog")
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d := newDevice(t, v)
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	b, err := d.EventLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "log.bin")
	os.WriteFile(path, b, 0o644)
	out, err := exec.Command(tool, path).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_eventlog: %v\n%s", err, out)
	}
	regs, _ := d.Registers(ctx)
	for _, bank := range regs.Banks() {
		for _, r := range []int{PolicyRegister, 1, 2, 3} {
			val, _ := regs.Value(bank, r)
			if !strings.Contains(strings.ToLower(string(out)), strings.ToLower(strings.ToUpper(hexs(val)))) {
				t.Errorf("tpm2_eventlog output lacks register %d of %v (%x)", r, bank, val)
			}
		}
	}
	if _, err := measure.ParseLog(b); err != nil {
		t.Fatal(err)
	}
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// openssl verify accepts the DICE chain the device presents, anchored at
// its DeviceID certificate.
func TestChainOpenSSL(t *testing.T) {
	openssl := testdep.LookPath(t, "openssl")
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d := newDevice(t, v)
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	certs, err := d.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, cs ...*x509.Certificate) string {
		var buf bytes.Buffer
		for _, c := range cs {
			pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, buf.Bytes(), 0o644)
		return p
	}
	n := len(certs)
	out, err := exec.Command(openssl, "verify", "-x509_strict",
		"-CAfile", write("root.pem", certs[n-1]),
		"-untrusted", write("inter.pem", certs[1:n-1]...),
		write("leaf.pem", certs[0])).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

// benchSetup is a booted device and the raw operations a boot, an
// attestation and an evidence check cannot avoid, for the ratios.
type benchSetup struct {
	ctx   context.Context
	d     *Device
	im    *Images
	nonce []byte
	ev    []byte
	roots *x509.CertPool

	p384, p256     crypto.Signer
	msg            []byte
	sig384, sig256 []byte
	cdi            []byte
}

func newBench(b *testing.B) *benchSetup {
	ctx := context.Background()
	v := newVendor(b, "sku-a")
	s := &benchSetup{ctx: ctx, d: newDevice(b, v), im: v.images(b, 1), nonce: []byte("0123456789abcdef")}
	if _, err := s.d.Boot(ctx, s.im); err != nil {
		b.Fatal(err)
	}
	var err error
	if s.ev, err = s.d.Attest(ctx, s.nonce); err != nil {
		b.Fatal(err)
	}
	certs, _ := s.d.Certificates(ctx)
	s.roots = x509.NewCertPool()
	s.roots.AddCert(certs[len(certs)-1])
	s.p384, s.p256 = boottest.GenerateKey(b, pluton.ECDSAP384), boottest.GenerateKey(b, pluton.ECDSAP256)
	s.msg = []byte("manifest")
	s.sig384, _ = s.p384.Sign(rand.Reader, pluton.ECDSAP384.Digest(s.msg), crypto.SHA384)
	s.sig256, _ = s.p256.Sign(rand.Reader, pluton.ECDSAP256.Digest(s.msg), crypto.SHA256)
	s.cdi = make([]byte, 32)
	return s
}

func (s *benchSetup) verify(n384, n256 int) error {
	for range n384 {
		if err := pluton.Verify(s.p384.Public(), pluton.ECDSAP384, s.msg, s.sig384); err != nil {
			return err
		}
	}
	for range n256 {
		if err := pluton.Verify(s.p256.Public(), pluton.ECDSAP256, s.msg, s.sig256); err != nil {
			return err
		}
	}
	return nil
}

func (s *benchSetup) sign(nSign, nKeyPair int) error {
	for range nKeyPair {
		if _, err := dice.KeyPair(s.cdi, pluton.ECDSAP256); err != nil {
			return err
		}
	}
	for range nSign {
		if _, err := s.p256.Sign(rand.Reader, pluton.ECDSAP256.Digest(s.msg), crypto.SHA256); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkBoot is a three-layer boot (verify, measure, derive, certify)
// against the signature work it must do: verify the policy (P-384) and
// three images (P-256), derive three Alias keys, and sign their three
// certificates (P-256) and check them (crypto/x509 verifies each
// certificate it signs).
func BenchmarkBoot(b *testing.B) {
	s := newBench(b)
	b.Run("ratio", func(b *testing.B) {
		benchratio.Compare(b,
			func() error { _, err := s.d.Boot(s.ctx, s.im); return err },
			func() error {
				if err := s.verify(1, 6); err != nil {
					return err
				}
				return s.sign(3, 3)
			})
	})
}

// BenchmarkAttest is evidence creation against making the token's one
// signature and checking it (COSE signing verifies what it signed, against
// faults). The Alias key was derived at the boot's first attestation
// (newBench's) and is kept for the boot, as the app layer of an MCU keeps
// it; "first" is a boot's first attestation, which derives it, against
// deriving it, signing and checking.
func BenchmarkAttest(b *testing.B) {
	s := newBench(b)
	b.Run("ratio", func(b *testing.B) {
		benchratio.Compare(b,
			func() error { _, err := s.d.Attest(s.ctx, s.nonce); return err },
			func() error {
				if err := s.sign(1, 0); err != nil {
					return err
				}
				return s.verify(0, 1)
			})
	})
	b.Run("first", func(b *testing.B) {
		benchratio.Compare(b,
			func() error {
				s.d.running.forgetKeys()
				_, err := s.d.Attest(s.ctx, s.nonce)
				return err
			},
			func() error {
				if err := s.sign(1, 1); err != nil {
					return err
				}
				return s.verify(0, 1)
			})
	})
}

// BenchmarkEvidenceVerify is the verifier's first stage on the device's
// token against the four signatures it must check (token and three
// certificates, all P-256).
func BenchmarkEvidenceVerify(b *testing.B) {
	s := newBench(b)
	b.Run("ratio", func(b *testing.B) {
		benchratio.Compare(b,
			func() error {
				_, err := evidence.Verify(s.ev, &evidence.VerifyOptions{Nonce: s.nonce, Roots: s.roots})
				return err
			},
			func() error { return s.verify(0, 4) })
	})
}

// The boot record and its event log belong together: a log from another
// boot (or a truncated one) next to the record is refused, never used.
func TestBootRecordLogMismatch(t *testing.T) {
	ctx := context.Background()
	v := newVendor(t, "sku-a")
	d := newDevice(t, v)
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(d.Dir(), EventLogFile)
	first, _ := os.ReadFile(logPath)
	if _, err := d.Boot(ctx, v.images(t, 2)); err != nil {
		t.Fatal(err)
	}
	dir := d.Dir()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// As if the process died between writing the log and the record.
	os.WriteFile(logPath, first, 0o600)
	d2, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if _, err := d2.Attest(ctx, []byte("0123456789abcdef")); !errors.Is(err, ErrBootState) {
		t.Fatalf("mismatched log: %v", err)
	}
}
