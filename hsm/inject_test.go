//go:build cgo && !nopkcs11

package hsm_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
)

// These tests run identity injection end to end: a SoftHSM2 token on the
// service's side, an emulated chip (pluton/soft) on the other, and only
// the wire blob between them. (A test-only import of pluton/soft: the hsm
// package itself imports nothing of rootline's.)

type testChip struct {
	c    *soft.Chip
	path string
	vt   *soft.VerifiedTransportKey
}

func newTestChip(t testing.TB, alg soft.TransportAlgorithm) *testChip {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chip.state")
	c, err := soft.Create(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.FuseIdentity(context.Background()); err != nil {
		t.Fatal(err)
	}
	tc := &testChip{c: c, path: path}
	tc.vt = tc.transport(t, alg)
	return tc
}

// transport runs the service's side of step 1: a nonce, the chip's
// statement, checked against the DeviceID key.
func (tc *testChip) transport(t testing.TB, alg soft.TransportAlgorithm) *soft.VerifiedTransportKey {
	t.Helper()
	nonce := make([]byte, 16)
	rand.Read(nonce)
	tk, err := tc.c.TransportKey(context.Background(), alg, nonce)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tc.c.Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	vt, err := soft.VerifyTransportKey(tk.Statement, tk.Signature, id.DeviceID, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return vt
}

func (tc *testChip) hsmTransport() hsm.ChipTransport {
	a := hsm.P256
	if tc.vt.Algorithm == soft.TransportP384 {
		a = hsm.P384
	}
	return hsm.ChipTransport{Algorithm: a, Public: tc.vt.Public.Bytes(), UEID: tc.vt.UEID}
}

func (tc *testChip) file(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// toBlob is what the service does with the HSM's answer: the chip's wire
// blob.
func toBlob(t testing.TB, w *hsm.Wrapped) []byte {
	t.Helper()
	data, err := blobOf(w)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func blobOf(w *hsm.Wrapped) ([]byte, error) {
	b := &soft.WrappedBlob{
		Kind:      soft.BlobKind(w.Kind),
		Transport: soft.TransportP256,
		KDF:       soft.KDF(w.KDF),
		UEID:      w.UEID,
		Name:      w.Name,
		Ephemeral: w.Ephemeral,
		Wrapped:   w.Wrapped,
	}
	if w.Transport == hsm.P384 {
		b.Transport = soft.TransportP384
	}
	switch w.KeyAlgorithm {
	case hsm.P256:
		b.KeyAlgorithm = pluton.ECDSAP256
	case hsm.P384:
		b.KeyAlgorithm = pluton.ECDSAP384
	}
	return b.Marshal()
}

// signWithChip signs with the installed key on the chip and verifies with
// the public key the HSM reported: the key arrived intact.
func signWithChip(t *testing.T, tc *testChip, info *pluton.KeyInfo, want any) {
	t.Helper()
	s, err := tc.c.Signer(t.Context(), info.Compartment, info.Handle)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("injected identity")
	sig, err := s.Sign(nil, info.Algorithm.Digest(msg), info.Algorithm.SignerOpts())
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(want.(*ecdsa.PublicKey), info.Algorithm.Digest(msg), sig) {
		t.Fatal("signature of the installed key does not verify with the HSM's public key")
	}
}

func TestInjectKeyEndToEnd(t *testing.T) {
	tool := testdep.LookPath(t, "pkcs11-tool")
	m, _, pinFile := openToken(t, nil)
	ctx := t.Context()
	for _, tc := range []struct {
		name      string
		transport soft.TransportAlgorithm
		alg       hsm.Algorithm
	}{
		{"p256-p256", soft.TransportP256, hsm.P256},
		{"p384-p384", soft.TransportP384, hsm.P384},
		{"p256-p384", soft.TransportP256, hsm.P384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chip := newTestChip(t, tc.transport)
			label := "dev-" + tc.name
			w, err := m.InjectKey(ctx, &hsm.InjectKeyRequest{Label: label, Name: "idevid", Algorithm: tc.alg, Chip: chip.hsmTransport()})
			if err != nil {
				t.Fatal(err)
			}
			// The token's own report: sensitive, extractable (by wrapping only).
			keys, err := m.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, k := range keys {
				if k.Label == label {
					found = true
					if !k.Sensitive || !k.Extractable || !k.AlwaysSensitive || k.NeverExtractable {
						t.Fatalf("device key attributes %+v", k)
					}
				}
			}
			if !found {
				t.Fatal("device key not on the token")
			}
			readValueFails(t, m, pinFile, label)

			blob := toBlob(t, w)
			info, err := chip.c.InstallWrappedKey(ctx, blob, pluton.OS, w.Public)
			if err != nil {
				t.Fatal(err)
			}
			if info.Label != "idevid" || info.Compartment != pluton.OS || info.Usage != pluton.UsageSign {
				t.Fatalf("installed %+v", info)
			}
			signWithChip(t, chip, info, w.Public)

			// A retry of the same blob is a no-op: same slot, file untouched.
			before := chip.file(t)
			again, err := chip.c.InstallWrappedKey(ctx, blob, pluton.OS, w.Public)
			if err != nil || again.Handle != info.Handle {
				t.Fatalf("replay: %v, %+v", err, again)
			}
			if !bytes.Equal(before, chip.file(t)) {
				t.Fatal("replay changed the state file")
			}
			// The state survives a restart.
			chip.c.Close()
			c2, err := soft.Open(chip.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			chip.c = c2
			t.Cleanup(func() { c2.Close() })
			signWithChip(t, chip, info, w.Public)

			// pkcs11-tool sees the device key as sensitive and extractable
			// (by wrapping; CKA_VALUE is refused above).
			objs := parseToolObjects(listObjects(t, tool, m, pinFile), "Private Key Object")
			access := splitList(objs[label]["Access"])
			if !access["sensitive"] || !access["always sensitive"] || !access["extractable"] {
				t.Fatalf("pkcs11-tool: %s has Access %q", label, objs[label]["Access"])
			}
			// The chip confirmed: the HSM's copy goes, named by its CKA_ID.
			if err := m.DestroyKey(ctx, (&hsm.URI{ID: w.URI.ID}).String()); err != nil {
				t.Fatal(err)
			}
		})
	}
	// pkcs11-tool sees nothing left: no device key, no ephemeral key,
	// no derived key.
	out := listObjects(t, tool, m, pinFile)
	if strings.Contains(out, "Object") {
		t.Fatalf("objects remain on the token after Destroy:\n%s", out)
	}
	// Nor does this process (session objects included).
	if n := countObjects(t, m, pinFile); n != 0 {
		t.Fatalf("%d objects remain visible to this process", n)
	}
}

func listObjects(t *testing.T, tool string, m *hsm.Module, pinFile string) string {
	t.Helper()
	pin, err := os.ReadFile(pinFile)
	if err != nil {
		t.Fatal(err)
	}
	// pkcs11-tool takes the PIN on its command line; acceptable in a test.
	out, err := exec.Command(tool, "--module", m.ModulePathForTest(), "--token-label", hsmtest.Label,
		"--login", "--pin", strings.TrimSpace(string(pin)), "--list-objects").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	return string(out)
}

// withRaw runs f on a bare PKCS#11 session of the test token.
func withRaw(t *testing.T, m *hsm.Module, pinFile string, f func(p *pkcs11.Ctx, sh pkcs11.SessionHandle)) {
	t.Helper()
	p := pkcs11.New(m.ModulePathForTest())
	if err := p.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatal(err)
	}
	defer p.Destroy()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	var slot uint
	for _, s := range slots {
		if ti, _ := p.GetTokenInfo(s); ti.Label == hsmtest.Label {
			slot = s
		}
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer p.CloseSession(sh)
	pin, _ := os.ReadFile(pinFile)
	if err := p.Login(sh, pkcs11.CKU_USER, strings.TrimSpace(string(pin))); err != nil && err != pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		t.Fatal(err)
	}
	f(p, sh)
}

func findRaw(t *testing.T, p *pkcs11.Ctx, sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) []pkcs11.ObjectHandle {
	t.Helper()
	if err := p.FindObjectsInit(sh, tmpl); err != nil {
		t.Fatal(err)
	}
	hs, _, err := p.FindObjects(sh, 1000)
	p.FindObjectsFinal(sh)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// readValueFails checks that the device key's CKA_VALUE cannot be read.
func readValueFails(t *testing.T, m *hsm.Module, pinFile, label string) {
	withRaw(t, m, pinFile, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		hs := findRaw(t, p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)})
		if len(hs) != 1 {
			t.Fatalf("%d private keys labelled %q", len(hs), label)
		}
		_, err := p.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
			t.Fatalf("reading CKA_VALUE of the device key: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
	})
}

func countObjects(t *testing.T, m *hsm.Module, pinFile string) int {
	var n int
	withRaw(t, m, pinFile, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		n = len(findRaw(t, p, sh, nil))
	})
	return n
}

// A station that lost the first blob asks again before the chip
// confirmed: the same key, wrapped anew, installs.
func TestInjectKeyRetry(t *testing.T) {
	m, _, _ := openToken(t, nil)
	ctx := t.Context()
	chip := newTestChip(t, soft.TransportP256)
	w1, err := m.InjectKey(ctx, &hsm.InjectKeyRequest{Label: "dev", Name: "idevid", Algorithm: hsm.P256, Chip: chip.hsmTransport()})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := m.WrapKey(ctx, &hsm.WrapKeyRequest{Key: w1.URI.String(), Name: "idevid", Chip: chip.hsmTransport()})
	if err != nil {
		t.Fatal(err)
	}
	if !w2.Public.(*ecdsa.PublicKey).Equal(w1.Public) || bytes.Equal(w1.Wrapped, w2.Wrapped) || bytes.Equal(w1.Ephemeral, w2.Ephemeral) {
		t.Fatal("re-wrap is not the same key under a new ephemeral key")
	}
	info, err := chip.c.InstallWrappedKey(ctx, toBlob(t, w2), pluton.OS, w1.Public)
	if err != nil {
		t.Fatal(err)
	}
	signWithChip(t, chip, info, w1.Public)
	// The first blob, arriving late, is another blob for the same slot.
	before := chip.file(t)
	_, err = chip.c.InstallWrappedKey(ctx, toBlob(t, w1), pluton.OS, w1.Public)
	if !errors.Is(err, soft.ErrAlreadyInjected) {
		t.Fatalf("late first blob: %v, want ErrAlreadyInjected", err)
	}
	if !bytes.Equal(before, chip.file(t)) {
		t.Fatal("refused blob changed the state file")
	}
	if err := m.DestroyKey(ctx, w1.URI.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WrapKey(ctx, &hsm.WrapKeyRequest{Key: w1.URI.String(), Name: "idevid", Chip: chip.hsmTransport()}); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("wrap after destroy: %v", err)
	}
}

func TestInjectKeyRefusals(t *testing.T) {
	m, _, _ := openToken(t, nil)
	ctx := t.Context()
	a := newTestChip(t, soft.TransportP256)
	b := newTestChip(t, soft.TransportP256)
	wa, err := m.InjectKey(ctx, &hsm.InjectKeyRequest{Label: "dev-a", Name: "idevid", Algorithm: hsm.P256, Chip: a.hsmTransport()})
	if err != nil {
		t.Fatal(err)
	}
	wb, err := m.InjectKey(ctx, &hsm.InjectKeyRequest{Label: "dev-b", Name: "idevid", Algorithm: hsm.P256, Chip: b.hsmTransport()})
	if err != nil {
		t.Fatal(err)
	}
	good := toBlob(t, wa)
	mutate := func(f func(w *hsm.Wrapped)) []byte {
		c := *wa
		c.Wrapped, c.Ephemeral, c.UEID = bytes.Clone(wa.Wrapped), bytes.Clone(wa.Ephemeral), bytes.Clone(wa.UEID)
		f(&c)
		return toBlob(t, &c)
	}
	for _, tc := range []struct {
		name     string
		blob     []byte
		expected any
		want     error
	}{
		{"for-other-chip", toBlob(t, wb), wb.Public, soft.ErrWrongChip},
		{"other-chip-relabelled", mutate(func(w *hsm.Wrapped) { w.Wrapped, w.Ephemeral = wb.Wrapped, wb.Ephemeral }), wb.Public, soft.ErrUnwrap},
		{"tampered-wrapped", mutate(func(w *hsm.Wrapped) { w.Wrapped[5] ^= 1 }), wa.Public, soft.ErrUnwrap},
		{"other-ephemeral", mutate(func(w *hsm.Wrapped) { w.Ephemeral = wb.Ephemeral }), wa.Public, soft.ErrUnwrap},
		{"other-name", mutate(func(w *hsm.Wrapped) { w.Name = "other" }), wa.Public, soft.ErrUnwrap},
		{"wrong-expected-key", good, wb.Public, soft.ErrKeyMismatch},
		{"garbage", []byte{0xa0}, wa.Public, soft.ErrBlobMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.file(t)
			_, err := a.c.InstallWrappedKey(ctx, tc.blob, pluton.OS, tc.expected)
			var ie *soft.InjectError
			if !errors.Is(err, tc.want) || !errors.As(err, &ie) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !bytes.Equal(before, a.file(t)) {
				t.Fatal("refused blob changed the state file")
			}
			ks, _ := a.c.Keys(ctx, pluton.OS)
			if len(ks) != 0 {
				t.Fatalf("a refused blob installed %d keys", len(ks))
			}
		})
	}
	// Once provisioned, no new injection.
	if err := a.c.Transition(ctx, pluton.Provisioned); err != nil {
		t.Fatal(err)
	}
	before := a.file(t)
	if _, err := a.c.InstallWrappedKey(ctx, good, pluton.OS, wa.Public); !errors.Is(err, pluton.ErrWrongLifecycle) {
		t.Fatalf("after provisioning: %v", err)
	}
	if !bytes.Equal(before, a.file(t)) {
		t.Fatal("refused blob changed the state file")
	}
}

// An HSM without a needed mechanism is refused before anything is made.
func TestInjectMissingMechanism(t *testing.T) {
	m, _, _ := openToken(t, nil)
	chip := newTestChip(t, soft.TransportP256)
	for _, mech := range []struct {
		code uint
		name string
	}{
		// Dropped one after the other, each earlier in the order checked.
		{pkcs11.CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD"},
		{pkcs11.CKM_AES_ECB_ENCRYPT_DATA, "CKM_AES_ECB_ENCRYPT_DATA"},
		{pkcs11.CKM_ECDH1_DERIVE, "CKM_ECDH1_DERIVE"},
	} {
		m.DropMechanismForTest(mech.code)
		_, err := m.InjectKey(t.Context(), &hsm.InjectKeyRequest{Label: "dev", Name: "idevid", Algorithm: hsm.P256, Chip: chip.hsmTransport()})
		var me *hsm.MissingMechanismError
		if !errors.As(err, &me) || me.Name != mech.name || !errors.Is(err, hsm.ErrMechanismUnsupported) {
			t.Fatalf("without %s: %v", mech.name, err)
		}
		if !strings.Contains(err.Error(), mech.name) {
			t.Fatalf("error %q does not name %s", err, mech.name)
		}
	}
	if keys, _ := m.List(t.Context()); len(keys) != 0 {
		t.Fatalf("%d keys created anyway", len(keys))
	}
}

// SoftHSM2 lets only the SO set CKA_TRUSTED, so a derived wrapping key is
// never trusted: a key marked CKA_WRAP_WITH_TRUSTED cannot be wrapped by
// it, and the key is destroyed.
func TestInjectWrapWithTrusted(t *testing.T) {
	m, _, _ := openToken(t, nil)
	chip := newTestChip(t, soft.TransportP256)
	_, err := m.InjectKey(t.Context(), &hsm.InjectKeyRequest{Label: "dev", Name: "idevid", Algorithm: hsm.P256,
		Chip: chip.hsmTransport(), WrapWithTrusted: true})
	if !errors.Is(err, hsm.ErrWrapWithTrusted) {
		t.Fatalf("got %v, want ErrWrapWithTrusted", err)
	}
	if keys, _ := m.List(t.Context()); len(keys) != 0 {
		t.Fatalf("%d keys left after the failed wrap", len(keys))
	}
}

// secretDiversifier recomputes, from the package documentation, what the
// product master encrypts.
func secretDiversifier(name string, ueid []byte) [32]byte {
	in := append([]byte("rootline/inject secret v1"), 0)
	for _, f := range [][]byte{[]byte(name), ueid} {
		in = binary.BigEndian.AppendUint16(in, uint16(len(f)))
		in = append(in, f...)
	}
	return sha256.Sum256(in)
}

func TestInjectSecretEndToEnd(t *testing.T) {
	m, _, pinFile := openToken(t, nil)
	ctx := t.Context()
	// A master of known value (imported with bare PKCS#11, for the known
	// answer) beside one generated in the token.
	masterValue := bytes.Repeat([]byte{0x5a}, 32)
	withRaw(t, m, pinFile, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		_, err := p.CreateObject(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, "known-master"),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, masterValue),
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	gen, err := m.CreateSecretMaster(ctx, "join-master")
	if err != nil {
		t.Fatal(err)
	}
	a := newTestChip(t, soft.TransportP256)
	b := newTestChip(t, soft.TransportP384)

	// Known answer: the secret is AES-256-ECB_master(diversifier).
	w, err := m.DeriveSecret(ctx, &hsm.DeriveSecretRequest{Master: "pkcs11:object=known-master", Name: "join-key", Chip: a.hsmTransport()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.c.InstallWrappedSecret(ctx, toBlob(t, w), pluton.OS); err != nil {
		t.Fatal(err)
	}
	got, err := a.c.Secret(ctx, pluton.OS, "join-key")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := aes.NewCipher(masterValue)
	d := secretDiversifier("join-key", a.vt.UEID)
	want := make([]byte, 32)
	blk.Encrypt(want[:16], d[:16])
	blk.Encrypt(want[16:], d[16:])
	if !bytes.Equal(got, want) {
		t.Fatalf("secret %x, want %x", got, want)
	}

	// The generated master: the same diversifier gives the same secret
	// (re-derived and re-wrapped), another chip another secret.
	secretOf := func(tc *testChip, cm pluton.Compartment) []byte {
		w, err := m.DeriveSecret(ctx, &hsm.DeriveSecretRequest{Master: gen.String(), Name: "debug-unlock", Chip: tc.hsmTransport()})
		if err != nil {
			t.Fatal(err)
		}
		blob := toBlob(t, w)
		if err := tc.c.InstallWrappedSecret(ctx, blob, cm); err != nil {
			t.Fatal(err)
		}
		before := tc.file(t)
		if err := tc.c.InstallWrappedSecret(ctx, blob, cm); err != nil {
			t.Fatalf("replay: %v", err)
		}
		if !bytes.Equal(before, tc.file(t)) {
			t.Fatal("replay changed the state file")
		}
		s, err := tc.c.Secret(ctx, cm, "debug-unlock")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1 := secretOf(a, pluton.OS)
	s2 := secretOf(a, pluton.SecurityMonitor)
	s3 := secretOf(b, pluton.OS)
	if !bytes.Equal(s1, s2) || bytes.Equal(s1, s3) || len(s1) != 32 {
		t.Fatalf("secrets %x %x %x", s1, s2, s3)
	}
	// Another compartment cannot read it; a second blob for the name is
	// refused; a blob for chip b does not install on a; and the secret
	// persists across a restart.
	if _, err := a.c.Secret(ctx, pluton.App("x"), "debug-unlock"); !errors.Is(err, soft.ErrNoSuchSecret) {
		t.Fatalf("other compartment: %v", err)
	}
	w2, err := m.DeriveSecret(ctx, &hsm.DeriveSecretRequest{Master: gen.String(), Name: "debug-unlock", Chip: a.hsmTransport()})
	if err != nil {
		t.Fatal(err)
	}
	wb, err := m.DeriveSecret(ctx, &hsm.DeriveSecretRequest{Master: gen.String(), Name: "other", Chip: b.hsmTransport()})
	if err != nil {
		t.Fatal(err)
	}
	before := a.file(t)
	if err := a.c.InstallWrappedSecret(ctx, toBlob(t, w2), pluton.OS); !errors.Is(err, soft.ErrAlreadyInjected) {
		t.Fatalf("second blob: %v", err)
	}
	if err := a.c.InstallWrappedSecret(ctx, toBlob(t, wb), pluton.OS); !errors.Is(err, soft.ErrWrongChip) {
		t.Fatalf("blob for b: %v", err)
	}
	if _, err := a.c.InstallWrappedKey(ctx, toBlob(t, w2), pluton.OS, nil); err == nil {
		t.Fatal("a secret blob installed as a key")
	}
	if !bytes.Equal(before, a.file(t)) {
		t.Fatal("refused blobs changed the state file")
	}
	a.c.Close()
	c2, err := soft.Open(a.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if s, err := c2.Secret(ctx, pluton.OS, "debug-unlock"); err != nil || !bytes.Equal(s, s1) {
		t.Fatalf("after restart: %x, %v", s, err)
	}
	// Only the masters remain on the token: every per-device object was a
	// session object, destroyed.
	if n := countObjects(t, m, pinFile); n != 2 {
		t.Fatalf("%d objects on the token, want the 2 masters", n)
	}
}

// BenchmarkInject measures the HSM's part (generate, derive, wrap) and the
// chip's (unwrap, install, persist) for one chip.
func BenchmarkInject(b *testing.B) {
	uri, _ := hsmtest.NewSoftHSM(b)
	m, err := hsm.Open(context.Background(), uri, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	var hsmNS, chipNS int64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		chip := newTestChip(b, soft.TransportP256)
		b.StartTimer()
		t0 := nowNS()
		w, err := m.InjectKey(ctx, &hsm.InjectKeyRequest{Label: "bench-" + strconv.Itoa(i), Name: "idevid", Algorithm: hsm.P256, Chip: chip.hsmTransport()})
		if err != nil {
			b.Fatal(err)
		}
		blob := toBlob(b, w)
		t1 := nowNS()
		if _, err := chip.c.InstallWrappedKey(ctx, blob, pluton.OS, w.Public); err != nil {
			b.Fatal(err)
		}
		t2 := nowNS()
		hsmNS += t1 - t0
		chipNS += t2 - t1
		b.StopTimer()
		if err := m.DestroyKey(ctx, w.URI.String()); err != nil {
			b.Fatal(err)
		}
		chip.c.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(hsmNS)/float64(b.N)/1e6, "hsm-ms/chip")
	b.ReportMetric(float64(chipNS)/float64(b.N)/1e6, "install-ms/chip")
}

// Stations inject into their chips at once through one Module.
func TestInjectConcurrent(t *testing.T) {
	m, _, pinFile := openToken(t, nil)
	const n = 6
	chips := make([]*testChip, n)
	for i := range chips {
		chips[i] = newTestChip(t, soft.TransportP256)
	}
	errs := make(chan error, n)
	for i, chip := range chips {
		go func() {
			w, err := m.InjectKey(t.Context(), &hsm.InjectKeyRequest{Label: "dev-" + strconv.Itoa(i), Name: "idevid", Algorithm: hsm.P256, Chip: chip.hsmTransport()})
			var blob []byte
			if err == nil {
				blob, err = blobOf(w)
			}
			if err == nil {
				_, err = chip.c.InstallWrappedKey(t.Context(), blob, pluton.OS, w.Public)
			}
			if err == nil {
				err = m.DestroyKey(t.Context(), w.URI.String())
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if c := countObjects(t, m, pinFile); c != 0 {
		t.Fatalf("%d objects left", c)
	}
}

// BenchmarkDeriveSecret measures a per-device secret: derive and wrap in
// the HSM, install on the chip.
func BenchmarkDeriveSecret(b *testing.B) {
	uri, _ := hsmtest.NewSoftHSM(b)
	m, err := hsm.Open(context.Background(), uri, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	master, err := m.CreateSecretMaster(ctx, "master")
	if err != nil {
		b.Fatal(err)
	}
	var hsmNS, chipNS int64
	for b.Loop() {
		b.StopTimer()
		chip := newTestChip(b, soft.TransportP256)
		b.StartTimer()
		t0 := nowNS()
		w, err := m.DeriveSecret(ctx, &hsm.DeriveSecretRequest{Master: master.String(), Name: "join-key", Chip: chip.hsmTransport()})
		if err != nil {
			b.Fatal(err)
		}
		blob := toBlob(b, w)
		t1 := nowNS()
		if err := chip.c.InstallWrappedSecret(ctx, blob, pluton.OS); err != nil {
			b.Fatal(err)
		}
		hsmNS += t1 - t0
		chipNS += nowNS() - t1
		b.StopTimer()
		chip.c.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(hsmNS)/float64(b.N)/1e6, "hsm-ms/chip")
	b.ReportMetric(float64(chipNS)/float64(b.N)/1e6, "install-ms/chip")
}
