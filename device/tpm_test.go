package device

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io/fs"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
)

// newTPMDevice makes a device of v's product on a fresh swtpm.
func newTPMDevice(t *testing.T, v *vendor) (*Device, *tpmtest.SWTPM) {
	t.Helper()
	sw := tpmtest.Start(t)
	d, err := InitTPM(t.Context(), t.TempDir(), &InitRequest{Product: v.Product, RootKeyHash: v.RootHash}, &TPMOptions{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, sw
}

// verifyTPMEvidence checks evidence of d as a verifier does: the EAT with
// roots, then the quote with the TPM's IAK.
func verifyTPMEvidence(t *testing.T, d *Device, ev, nonce []byte, roots *x509.CertPool) *evidence.Token {
	t.Helper()
	tok, err := evidence.Verify(ev, &evidence.VerifyOptions{Nonce: nonce, Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.TPM().Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := tpm.VerifyEvidenceQuote(tok, id.DeviceID); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tok.Claims.UEID, id.UEID) {
		t.Fatalf("UEID %x, TPM's %x", tok.Claims.UEID, id.UEID)
	}
	return tok
}

func TestTPMBootAttest(t *testing.T) {
	ctx := t.Context()
	v := newVendor(t, "sku-a")
	d, sw := newTPMDevice(t, v)
	im := v.images(t, 3)
	res, err := d.Boot(ctx, im)
	if err != nil {
		t.Fatal(err)
	}
	// The TPM's PCRs hold what the event log replays to, in every bank.
	for _, bank := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		vals, err := d.TPM().ReadPCRs(ctx, bank, usedRegisters())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range usedRegisters() {
			want, _ := res.Registers.Value(bank, r)
			if !bytes.Equal(vals[r], want) {
				t.Fatalf("%v PCR %d: TPM %x, event log %x", bank, r, vals[r], want)
			}
		}
	}

	nonce := []byte("0123456789abcdef")
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	// Before provisioning the EAT is signed by the IDevID key under its
	// self-signed certificate.
	certs, err := d.Certificates(ctx)
	if err != nil || len(certs) != 1 {
		t.Fatalf("certificates %d, %v", len(certs), err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[0])
	tok := verifyTPMEvidence(t, d, ev, nonce, roots)
	cl := tok.Claims
	if cl.Product != "sku-a" || cl.Lifecycle != pluton.Manufacturing || len(cl.Layers) != 3 || cl.Layers[1].SVN != 3 {
		t.Fatalf("claims %+v", cl)
	}
	if cl.TPMQuote == nil || cl.TPMQuote.Bank != EvidenceBank || len(cl.TPMQuote.PCRs) != 4 {
		t.Fatalf("quote claim %+v", cl.TPMQuote)
	}
	// The quote is by the IAK, not by the key that signed the EAT.
	idevid, _ := d.idevidSigner(ctx)
	if err := tpm.VerifyEvidenceQuote(tok, idevid.Public()); !errors.Is(err, tpm.ErrQuoteSignature) {
		t.Fatalf("quote checked with the IDevID: %v", err)
	}
	// Another nonce.
	if _, err := evidence.Verify(ev, &evidence.VerifyOptions{Nonce: []byte("fedcba9876543210"), Roots: roots}); !errors.Is(err, evidence.ErrNonce) {
		t.Fatalf("other nonce: %v", err)
	}

	// Counters are the TPM's NV counters: Confirm raises them, and the
	// next evidence says so.
	if err := d.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := d.TPM().Counter(ctx, pluton.SecurityMonitor, "svn/os"); err != nil || c != 3 {
		t.Fatalf("os counter %d, %v", c, err)
	}

	// Another process: the boot record and the TPM's PCRs still agree.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := OpenTPM(ctx, d.Dir(), &TPMOptions{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	ev2, err := d2.Attest(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	tok2 := verifyTPMEvidence(t, d2, ev2, nonce, roots)
	if tok2.Claims.Counters["svn/os"] != 3 {
		t.Fatalf("counters %v", tok2.Claims.Counters)
	}
	// The same images again, without a TPM reset: the PCRs already hold
	// this boot, nothing is extended.
	if _, err := d2.Boot(ctx, im); err != nil {
		t.Fatalf("same boot again: %v", err)
	}
	// A rolled-back OS is refused by the NV counter before any PCR moves.
	_, err = d2.Boot(ctx, v.images(t, 2))
	var be *BootError
	if !errors.As(err, &be) || be.Stage != "os" || !errors.Is(err, boot.ErrRollback) {
		t.Fatalf("rolled-back OS: %v", err)
	}
	// Other images need a TPM reset: the PCRs hold the first boot.
	if _, err := d2.Boot(ctx, v.images(t, 4)); !errors.Is(err, ErrTPMPCRs) {
		t.Fatalf("another boot without a TPM reset: %v", err)
	}
	if _, err := d2.Attest(ctx, nonce); !errors.Is(err, ErrNotBooted) {
		t.Fatalf("attest after a refused boot: %v", err)
	}
	if _, err := d2.FactoryRequestTPM(ctx, nonce); !errors.Is(err, ErrNotBooted) {
		t.Fatalf("factory request after a refused boot: %v", err)
	}
	// The emulated chip has no TPM part.
	if _, err := newDevice(t, v).FactoryRequestTPM(ctx, nonce); !errors.Is(err, ErrNotTPM) {
		t.Fatalf("FactoryRequestTPM on the emulated chip: %v", err)
	}
}

// TestTPMPCRRead checks the PCRs with tpm2_pcrread, an independent TPM
// client, against the event log's replay.
func TestTPMPCRRead(t *testing.T) {
	bin := testdep.LookPath(t, "tpm2_pcrread")
	ctx := t.Context()
	v := newVendor(t, "sku-a")
	d, sw := newTPMDevice(t, v)
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	raw, err := d.EventLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// swtpm serves one connection at a time.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "sha256:0,1,2,3+sha384:0,1,2,3")
	cmd.Env = append(cmd.Environ(), "TPM2TOOLS_TCTI="+sw.TCTI())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	got := map[crypto.Hash]map[int][]byte{crypto.SHA256: {}, crypto.SHA384: {}}
	bank := crypto.Hash(0)
	for _, line := range regexp.MustCompile(`\r?\n`).Split(string(out), -1) {
		switch {
		case regexp.MustCompile(`^\s*sha256:`).MatchString(line):
			bank = crypto.SHA256
		case regexp.MustCompile(`^\s*sha384:`).MatchString(line):
			bank = crypto.SHA384
		default:
			if m := regexp.MustCompile(`^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)`).FindStringSubmatch(line); m != nil && bank != 0 {
				i, _ := strconv.Atoi(m[1])
				got[bank][i], _ = hex.DecodeString(m[2])
			}
		}
	}
	lg, err := measure.ParseLog(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := lg.Verify(got); err != nil {
		t.Fatalf("the event log does not replay to tpm2_pcrread's PCRs: %v\n%s", err, out)
	}
	for _, b := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		if len(got[b]) != 4 {
			t.Fatalf("tpm2_pcrread gave %d %v PCRs:\n%s", len(got[b]), b, out)
		}
	}
}

// TestTPMInstallIdentity installs an IDevID chain of the TPM's IDevID key:
// the lifecycle counter moves to Provisioned, and the evidence chains to
// the factory root.
func TestTPMInstallIdentity(t *testing.T) {
	ctx := t.Context()
	v := newVendor(t, "sku-a")
	d, _ := newTPMDevice(t, v)
	if _, err := d.Boot(ctx, v.images(t, 1)); err != nil {
		t.Fatal(err)
	}
	nonce := []byte("factory nonce 0123")
	fr, err := d.FactoryRequestTPM(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	// The IAK certifies the IDevID, which is the CSR's key and the EAT's.
	iak, err := tpm.ParseIAKPublic(fr.IAKPublic)
	if err != nil {
		t.Fatal(err)
	}
	idevid, err := tpm.VerifyCertify(iak, fr.IDevIDPublic, fr.CertifyAttest, fr.CertifySignature, nonce)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ca.ParseCSR(fr.CSR)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyEqual(csr.PublicKey, idevid) {
		t.Fatal("the CSR's key is not the certified IDevID")
	}
	if u, _ := tpm.UEID(iak); !bytes.Equal(u, fr.UEID) {
		t.Fatal("the UEID is not the IAK's")
	}
	tok, err := evidence.Verify(fr.Evidence, &evidence.VerifyOptions{Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyEqual(tok.PublicKey, idevid) {
		t.Fatal("the evidence is not signed by the IDevID")
	}
	if err := tpm.VerifyEvidenceQuote(tok, iak); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Identity(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("identity before install: %v", err)
	}

	h := catest.NewHierarchy(t, "sku-a")
	l, err := ca.NewLocal(&ca.LocalOptions{Root: h.Root, Products: h.Products})
	if err != nil {
		t.Fatal(err)
	}
	chain := issueIdentity(t, l, "sku-a", fr.UEID, fr.CSR)
	// A chain of another key is refused, and nothing moves.
	other := issueIdentity(t, l, "sku-a", fr.UEID, catest.CSR(t, catest.Key(t), csr.Subject))
	if err := d.InstallIdentity(ctx, other); !errors.Is(err, ErrIdentity) {
		t.Fatalf("other key: %v", err)
	}
	if lc, _ := d.lifecycle(ctx); lc != pluton.Manufacturing {
		t.Fatalf("lifecycle %v after a refused install", lc)
	}
	if err := d.InstallIdentity(ctx, chain); err != nil {
		t.Fatal(err)
	}
	if err := d.InstallIdentity(ctx, chain); err != nil {
		t.Fatalf("installing again: %v", err)
	}
	if lc, _ := d.lifecycle(ctx); lc != pluton.Provisioned {
		t.Fatalf("lifecycle %v", lc)
	}
	if c, _ := d.TPM().Counter(ctx, pluton.SecurityMonitor, lifecycleCounter); c != 1 {
		t.Fatalf("lifecycle counter %d", c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.Root)
	nonce2 := []byte("field nonce 0123456789")
	ev, err := d.Attest(ctx, nonce2)
	if err != nil {
		t.Fatal(err)
	}
	tok = verifyTPMEvidence(t, d, ev, nonce2, roots)
	if tok.Claims.Lifecycle != pluton.Provisioned || !bytes.Equal(tok.Chain[0].Raw, chain[0]) {
		t.Fatal("evidence after provisioning is not under the IDevID certificate")
	}
}

func TestTPMDeviceInfo(t *testing.T) {
	ctx := t.Context()
	v := newVendor(t, "sku-a")
	d, sw := newTPMDevice(t, v)
	if !IsTPM(d.Dir()) || IsTPM(newDevice(t, v).Dir()) {
		t.Fatal("IsTPM")
	}
	u, err := d.UEID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := d.TPM().Identity(ctx)
	if !bytes.Equal(u, id.UEID) {
		t.Fatal("UEID")
	}
	if lc, err := d.Lifecycle(ctx); err != nil || lc != pluton.Manufacturing {
		t.Fatalf("lifecycle %v, %v", lc, err)
	}
	// A directory holds one device.
	if _, err := InitTPM(ctx, d.Dir(), &InitRequest{Product: v.Product, RootKeyHash: v.RootHash}, &TPMOptions{Address: sw.Addr}); err == nil {
		t.Fatal("InitTPM over an existing device")
	}
	if _, err := InitTPM(ctx, t.TempDir(), &InitRequest{Product: v.Product}, &TPMOptions{Address: sw.Addr}); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("no root key hash: %v", err)
	}
	// Another TPM cannot open this device: its IDevID is not the one
	// certified.
	d.Close()
	other := tpmtest.Start(t)
	if _, err := OpenTPM(ctx, d.Dir(), &TPMOptions{Address: other.Addr}); !errors.Is(err, ErrBootState) {
		t.Fatalf("device opened on another TPM: %v", err)
	}
}
