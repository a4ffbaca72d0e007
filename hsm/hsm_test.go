//go:build cgo && !nopkcs11

package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
	"github.com/rootline/rootline/internal/testdep"
)

// The tests here run on a real SoftHSM2 token, a new one per test (see
// hsmtest.NewSoftHSM, which is why none of them is parallel).

// openToken creates a token and opens it, closing it when the test ends.
func openToken(t *testing.T, opts *hsm.Options) (*hsm.Module, string, string) {
	t.Helper()
	uri, pinFile := hsmtest.NewSoftHSM(t)
	m, err := hsm.Open(t.Context(), uri, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, uri, pinFile
}

// sign signs msg with s the way its algorithm wants and verifies the
// signature with the public key, independently of the package.
func signAndVerify(t testing.TB, s crypto.Signer, msg []byte) []byte {
	t.Helper()
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		var digest []byte
		var h crypto.Hash
		switch pub.Curve.Params().BitSize {
		case 256:
			d := sha256.Sum256(msg)
			digest, h = d[:], crypto.SHA256
		case 384:
			d := sha512.Sum384(msg)
			digest, h = d[:], crypto.SHA384
		}
		sig, err := s.Sign(rand.Reader, digest, h)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			t.Fatalf("ECDSA signature %x does not verify", sig)
		}
		return sig
	case ed25519.PublicKey:
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("Ed25519 signature %x does not verify", sig)
		}
		return sig
	default:
		t.Fatalf("public key of type %T", pub)
	}
	return nil
}

func TestCreateKeySignVerify(t *testing.T) {
	m, _, _ := openToken(t, nil)
	ctx := t.Context()
	for _, alg := range []hsm.Algorithm{hsm.P256, hsm.P384, hsm.Ed25519} {
		t.Run(alg.String(), func(t *testing.T) {
			label := "key-" + alg.String()
			pub, u, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: label, Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			if u.Object != label || len(u.ID) != 16 || u.Type != "private" || u.Token != hsmtest.Label || u.ModulePath == "" || u.PINSource == "" {
				t.Fatalf("key URI %s", u)
			}
			// The key is found by label and id, by label alone, by id alone.
			for _, name := range []string{u.String(), "pkcs11:object=" + label, (&hsm.URI{ID: u.ID}).String()} {
				s, err := m.Signer(ctx, name)
				if err != nil {
					t.Fatalf("Signer(%s): %v", name, err)
				}
				if !publicEqual(s.Public(), pub) {
					t.Fatalf("Signer(%s).Public() is not the created key", name)
				}
				signAndVerify(t, s, []byte("factory line 7"))
			}
		})
	}
	// Every signer's signatures differ from one call to the next for
	// ECDSA (random k inside the token) and repeat for Ed25519.
	s, err := m.Signer(ctx, "pkcs11:object=key-ed25519")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signAndVerify(t, s, []byte("m")), signAndVerify(t, s, []byte("m"))) {
		t.Error("Ed25519 signatures of one message differ")
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// A certificate signed by an HSM key verifies with crypto/x509: the signer
// returns the DER signatures X.509 carries.
func TestSignerMakesCertificates(t *testing.T) {
	m, _, _ := openToken(t, nil)
	for _, alg := range []hsm.Algorithm{hsm.P256, hsm.P384, hsm.Ed25519} {
		_, u, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "ca-" + alg.String(), Algorithm: alg})
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.Signer(t.Context(), u.String())
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "rootline test CA " + alg.String()},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
		if err != nil {
			t.Fatalf("%v: %v", alg, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.CheckSignatureFrom(cert); err != nil {
			t.Fatalf("%v: %v", alg, err)
		}
	}
}

// pkcs11-tool, reading the same token, sees the private keys as sensitive
// and never extractable, usable only to sign.
func TestPkcs11ToolSeesProtectedKeys(t *testing.T) {
	tool := testdep.LookPath(t, "pkcs11-tool")
	m, _, pinFile := openToken(t, nil)
	for _, alg := range []hsm.Algorithm{hsm.P256, hsm.P384, hsm.Ed25519} {
		if _, _, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k-" + alg.String(), Algorithm: alg}); err != nil {
			t.Fatal(err)
		}
	}
	pin, err := os.ReadFile(pinFile)
	if err != nil {
		t.Fatal(err)
	}
	// pkcs11-tool takes the PIN on its command line; acceptable in a test.
	cmd := exec.Command(tool, "--module", m.ModulePathForTest(), "--token-label", hsmtest.Label,
		"--login", "--pin", strings.TrimSpace(string(pin)), "--list-objects")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	keys := parseToolObjects(string(out), "Private Key Object")
	if len(keys) != 3 {
		t.Fatalf("pkcs11-tool lists %d private keys, want 3:\n%s", len(keys), out)
	}
	for label, o := range keys {
		access := splitList(o["Access"])
		for _, want := range []string{"sensitive", "always sensitive", "never extractable", "local"} {
			if !access[want] {
				t.Errorf("%s: Access %q lacks %q", label, o["Access"], want)
			}
		}
		if access["extractable"] {
			t.Errorf("%s: Access %q says extractable", label, o["Access"])
		}
		if o["Usage"] != "sign" {
			t.Errorf("%s: Usage %q, want sign only", label, o["Usage"])
		}
	}
	t.Logf("pkcs11-tool --list-objects:\n%s", out)
}

// parseToolObjects reads pkcs11-tool --list-objects output: the objects of
// one kind, by label, each as its "name: value" lines.
func parseToolObjects(out, kind string) map[string]map[string]string {
	objs := map[string]map[string]string{}
	var cur map[string]string
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, " ") {
			cur = nil
			if strings.HasPrefix(line, kind) {
				cur = map[string]string{}
			}
			continue
		}
		if cur == nil {
			continue
		}
		name, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		cur[name] = strings.TrimSpace(val)
		if name == "label" {
			objs[cur["label"]] = cur
		}
	}
	return objs
}

func splitList(s string) map[string]bool {
	m := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		m[strings.TrimSpace(f)] = true
	}
	return m
}

func TestWrongPIN(t *testing.T) {
	uri, _ := hsmtest.NewSoftHSM(t)
	wrong := filepath.Join(t.TempDir(), "wrong.pin")
	const badPIN = "not-the-pin-8713"
	if err := os.WriteFile(wrong, []byte(badPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, _ := hsm.ParseURI(uri)
	u.PINSource = "file:" + wrong
	var logs bytes.Buffer
	_, err := hsm.Open(t.Context(), u.String(), &hsm.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if !errors.Is(err, hsm.ErrPINIncorrect) {
		t.Fatalf("Open with a wrong PIN: %v, want ErrPINIncorrect", err)
	}
	var he *hsm.Error
	if !errors.As(err, &he) || he.Code != pkcs11.CKR_PIN_INCORRECT || he.Op != "C_Login" {
		t.Fatalf("error %#v, want an *hsm.Error with CKR_PIN_INCORRECT from C_Login", err)
	}
	if !strings.Contains(err.Error(), "CKR_PIN_INCORRECT") {
		t.Errorf("error %q does not name CKR_PIN_INCORRECT", err)
	}
	if strings.Contains(err.Error(), badPIN) || strings.Contains(logs.String(), badPIN) {
		t.Errorf("the PIN leaked: error %q, logs %q", err, logs.String())
	}
}

func TestMissingToken(t *testing.T) {
	uri, _ := hsmtest.NewSoftHSM(t)
	u, _ := hsm.ParseURI(uri)
	u.Token, u.Serial = "no-such-token", ""
	_, err := hsm.Open(t.Context(), u.String(), nil)
	if !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Fatalf("Open: %v, want ErrTokenNotFound", err)
	}
	if !strings.Contains(err.Error(), "no-such-token") {
		t.Errorf("error %q does not name the token asked for", err)
	}
	// A key URI naming another token than the open one.
	m, _, _ := openTokenFrom(t, uri)
	if _, err := m.Signer(t.Context(), "pkcs11:token=other;object=k"); !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Fatalf("Signer on another token: %v, want ErrTokenNotFound", err)
	}
}

func openTokenFrom(t *testing.T, uri string) (*hsm.Module, string, string) {
	t.Helper()
	m, err := hsm.Open(t.Context(), uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, uri, ""
}

// rawKeyPair makes a P-256 key pair with bare PKCS#11 calls, as another
// tool could, so that two keys can share a label.
func rawKeyPair(t *testing.T, m *hsm.Module, pinFile, label string, id []byte) {
	t.Helper()
	p := pkcs11.New(m.ModulePathForTest())
	if err := p.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatal(err)
	}
	defer p.Destroy() // no Finalize: the hsm package owns the initialisation
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
	params := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	_, _, err = p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAmbiguousKey(t *testing.T) {
	m, _, pinFile := openToken(t, nil)
	rawKeyPair(t, m, pinFile, "dup", []byte{1})
	rawKeyPair(t, m, pinFile, "dup", []byte{2})
	_, err := m.Signer(t.Context(), "pkcs11:object=dup")
	if !errors.Is(err, hsm.ErrAmbiguousKey) {
		t.Fatalf("Signer: %v, want ErrAmbiguousKey", err)
	}
	if err := m.DestroyKey(t.Context(), "pkcs11:object=dup"); !errors.Is(err, hsm.ErrAmbiguousKey) {
		t.Fatalf("DestroyKey: %v, want ErrAmbiguousKey", err)
	}
	// The id tells them apart.
	s, err := m.Signer(t.Context(), "pkcs11:object=dup;id=%02")
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, s, []byte("x"))
	// A key made elsewhere, with CKA_EXTRACTABLE left to the token's
	// default, is listed as it is.
	keys, err := m.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Label != "dup" || keys[0].Algorithm != hsm.P256 || keys[0].Public == nil {
		t.Fatalf("List: %+v", keys)
	}
}

func TestKeyErrors(t *testing.T) {
	m, _, _ := openToken(t, nil)
	ctx := t.Context()
	if _, err := m.Signer(ctx, "pkcs11:object=absent"); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("Signer of a missing key: %v, want ErrKeyNotFound", err)
	}
	if _, err := m.Signer(ctx, "pkcs11:token=test"); !errors.Is(err, hsm.ErrBadURI) {
		t.Errorf("Signer of a token URI: %v, want ErrBadURI", err)
	}
	if _, err := m.Signer(ctx, "pkcs11:object=k;type=public"); !errors.Is(err, hsm.ErrBadURI) {
		t.Errorf("Signer of type=public: %v, want ErrBadURI", err)
	}
	if _, err := m.Signer(ctx, "pkcs11:object=k?pin-value=1234"); !errors.Is(err, hsm.ErrBadURI) {
		t.Errorf("Signer with pin-value: %v, want ErrBadURI", err)
	}
	if _, _, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.P256}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.P384}); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("CreateKey of an existing label: %v, want ErrKeyExists", err)
	}
	if _, _, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: "", Algorithm: hsm.P256}); err == nil {
		t.Error("CreateKey with no label succeeded")
	}
	if _, _, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: "x", Algorithm: hsm.AlgorithmUnknown}); err == nil {
		t.Error("CreateKey with no algorithm succeeded")
	}
	keys, err := m.List(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("after refused requests, List: %v, %v", keys, err)
	}
}

// A key whose pairwise-consistency test fails is destroyed, and its label
// is free again.
func TestPairwiseTestFailure(t *testing.T) {
	m, _, _ := openToken(t, nil)
	m.BreakPairwiseTestForTest()
	for _, alg := range []hsm.Algorithm{hsm.P256, hsm.Ed25519} {
		if _, _, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k", Algorithm: alg}); !errors.Is(err, hsm.ErrSelfTest) {
			t.Fatalf("%v: CreateKey: %v, want ErrSelfTest", alg, err)
		}
		if keys, err := m.List(t.Context()); err != nil || len(keys) != 0 {
			t.Fatalf("after a failed test, List: %v, %v", keys, err)
		}
	}
}

// A token that does not honour CKA_EXTRACTABLE=false gets its key
// destroyed.
func TestKeyAttributesChecked(t *testing.T) {
	m, _, _ := openToken(t, nil)
	m.ReportExtractableForTest()
	if _, _, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.P384}); !errors.Is(err, hsm.ErrKeyAttributes) {
		t.Fatalf("CreateKey: %v, want ErrKeyAttributes", err)
	}
	if keys, err := m.List(t.Context()); err != nil || len(keys) != 0 {
		t.Fatalf("after a refused key, List: %v, %v", keys, err)
	}
}

func TestSignerOptions(t *testing.T) {
	m, _, _ := openToken(t, nil)
	ctx := t.Context()
	for _, alg := range []hsm.Algorithm{hsm.P256, hsm.Ed25519} {
		if _, _, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: alg.String(), Algorithm: alg}); err != nil {
			t.Fatal(err)
		}
	}
	ec, _ := m.Signer(ctx, "pkcs11:object=p256")
	d := sha256.Sum256([]byte("m"))
	if _, err := ec.Sign(nil, d[:20], crypto.SHA256); err == nil {
		t.Error("ECDSA signed a digest of the wrong length")
	}
	if _, err := ec.Sign(nil, d[:], crypto.Hash(0)); err == nil {
		t.Error("ECDSA signed without a hash")
	}
	ed, _ := m.Signer(ctx, "pkcs11:object=ed25519")
	if _, err := ed.Sign(nil, d[:], crypto.SHA512); !errors.Is(err, hsm.ErrMechanismUnsupported) {
		t.Errorf("Ed25519ph: %v, want ErrMechanismUnsupported", err)
	}
	if _, err := ed.Sign(nil, []byte("m"), &ed25519.Options{Context: "ctx"}); !errors.Is(err, hsm.ErrMechanismUnsupported) {
		t.Errorf("Ed25519ctx: %v, want ErrMechanismUnsupported", err)
	}
	// SignContext honours its context while waiting for a session.
	cs := ec.(hsm.ContextSigner)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := cs.SignContext(cctx, d[:], crypto.SHA256); err != nil {
		// An idle session is handed out without waiting, so a cancelled
		// context may still sign; it must not fail in another way.
		if !errors.Is(err, context.Canceled) {
			t.Errorf("SignContext: %v", err)
		}
	}
}

// The token closes every session behind the pool's back (and so logs out):
// the next signature opens a session, logs in, finds the key again.
func TestSessionRecovery(t *testing.T) {
	var logs syncBuffer
	m, _, _ := openToken(t, &hsm.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	_, u, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.P256})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Signer(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, s, []byte("before"))
	for i := range 3 {
		if err := m.CloseAllSessionsForTest(); err != nil {
			t.Fatal(err)
		}
		signAndVerify(t, s, []byte{byte(i)})
	}
	if !strings.Contains(logs.String(), "session lost") {
		t.Errorf("recovery not logged: %s", logs.String())
	}
	// Other calls recover too.
	if err := m.CloseAllSessionsForTest(); err != nil {
		t.Fatal(err)
	}
	if keys, err := m.List(t.Context()); err != nil || len(keys) != 1 {
		t.Fatalf("List after C_CloseAllSessions: %v, %v", keys, err)
	}
}

func TestRelogin(t *testing.T) {
	m, _, _ := openToken(t, nil)
	_, u, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.Ed25519})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Signer(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := m.LogoutForTest(); err != nil {
			t.Fatal(err)
		}
		signAndVerify(t, s, []byte{byte(i)})
	}
	// Creating a key needs the login too.
	if err := m.LogoutForTest(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k2", Algorithm: hsm.P256}); err != nil {
		t.Fatalf("CreateKey after logout: %v", err)
	}
}

func TestConcurrentSigning(t *testing.T) {
	m, _, _ := openToken(t, &hsm.Options{MaxSessions: 2})
	ctx := t.Context()
	var signers []crypto.Signer
	for _, alg := range []hsm.Algorithm{hsm.P256, hsm.P384, hsm.Ed25519} {
		_, u, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: alg.String(), Algorithm: alg})
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.Signer(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	run := func(phase int) {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 30 {
					s := signers[(g+i)%len(signers)]
					signAndVerify(t, s, []byte{byte(phase), byte(g), byte(i)})
					if open, limit := m.SessionsForTest(); open > limit || limit != 2 {
						t.Errorf("%d sessions open, limit %d", open, limit)
					}
				}
			})
		}
		wg.Wait()
	}
	run(0)
	// Lose every session between two runs. (Not during one: SoftHSM2 2.6
	// crashes when C_CloseAllSessions races a C_Sign on another thread.)
	if err := m.CloseAllSessionsForTest(); err != nil {
		t.Fatal(err)
	}
	run(1)
}

// The PIN appears in no log line and no error, whatever happens.
func TestPINNeverLogged(t *testing.T) {
	var logs syncBuffer
	opts := &hsm.Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	m, uri, pinFile := openToken(t, opts)
	pinBytes, err := os.ReadFile(pinFile)
	if err != nil {
		t.Fatal(err)
	}
	pin := strings.TrimSpace(string(pinBytes))
	var errs []error
	_, u, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.P256})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := m.Signer(t.Context(), u.String())
	m.CloseAllSessionsForTest()
	signAndVerify(t, s, []byte("m"))
	m.LogoutForTest()
	signAndVerify(t, s, []byte("m"))
	_, _, err = m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.P256})
	errs = append(errs, err)
	if _, err := m.List(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A second Module with the PIN from an environment variable, and one
	// with a PIN that is wrong by one character.
	env := func(v string) func(string) (string, bool) {
		return func(string) (string, bool) { return v, true }
	}
	ou, _ := hsm.ParseURI(uri)
	ou.PINSource = "env:FACTORY_PIN"
	o2 := *opts
	o2.LookupEnv = env(pin)
	m2, err := hsm.Open(t.Context(), ou.String(), &o2)
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	// Login state is per process (PKCS#11 v3.0, 5.6): while m is open the
	// token stays logged in and a second Open cannot check its PIN. Close
	// m first.
	m.Close()
	o2.LookupEnv = env(pin + "x")
	m3, err := hsm.Open(t.Context(), ou.String(), &o2)
	if !errors.Is(err, hsm.ErrPINIncorrect) {
		m3.Close()
		t.Fatalf("Open with a wrong PIN from the environment: %v", err)
	}
	errs = append(errs, err)
	if logs.Len() == 0 {
		t.Fatal("nothing was logged")
	}
	if strings.Contains(logs.String(), pin) {
		t.Errorf("the PIN is in the logs:\n%s", logs.String())
	}
	for _, err := range errs {
		if err == nil || strings.Contains(err.Error(), pin) {
			t.Errorf("error %v: nil or holds the PIN", err)
		}
	}
}

func TestEnvAndPluggablePINSources(t *testing.T) {
	uri, pinFile := hsmtest.NewSoftHSM(t)
	pin, _ := os.ReadFile(pinFile)
	pin = bytes.TrimSuffix(pin, []byte("\n"))
	u, _ := hsm.ParseURI(uri)

	u.PINSource = "vault:secret/factory#pin"
	var gotRef string
	opts := &hsm.Options{PINSources: map[string]hsm.PINSourceFunc{
		"vault": func(ref string) (hsm.PINSource, error) {
			gotRef = ref
			return pinFunc(func(context.Context) ([]byte, error) { return bytes.Clone(pin), nil }), nil
		},
	}}
	m, err := hsm.Open(t.Context(), u.String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if gotRef != "secret/factory#pin" {
		t.Errorf("vault source got %q", gotRef)
	}
	if _, err := hsm.Open(t.Context(), u.String(), nil); !errors.Is(err, hsm.ErrPINSource) {
		t.Errorf("unknown pin-source scheme: %v, want ErrPINSource", err)
	}
	// Without a pin-source, Options.PIN is used; with neither, Open fails.
	u.PINSource = ""
	m, err = hsm.Open(t.Context(), u.String(), &hsm.Options{PIN: &hsm.FilePIN{Path: pinFile}})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := hsm.Open(t.Context(), u.String(), nil); !errors.Is(err, hsm.ErrPINSource) {
		t.Errorf("no PIN source: %v, want ErrPINSource", err)
	}
}

type pinFunc func(context.Context) ([]byte, error)

func (f pinFunc) PIN(ctx context.Context) ([]byte, error) { return f(ctx) }

func TestListAndDestroy(t *testing.T) {
	m, _, _ := openToken(t, nil)
	ctx := t.Context()
	created := map[string]crypto.PublicKey{}
	for _, alg := range []hsm.Algorithm{hsm.Ed25519, hsm.P384, hsm.P256} {
		pub, _, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: "b-" + alg.String(), Algorithm: alg})
		if err != nil {
			t.Fatal(err)
		}
		created["b-"+alg.String()] = pub
	}
	keys, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0].Label != "b-ed25519" || keys[2].Label != "b-p384" {
		t.Fatalf("List: %+v", keys)
	}
	for _, k := range keys {
		if !k.Sensitive || !k.AlwaysSensitive || k.Extractable || !k.NeverExtractable || !publicEqual(k.Public, created[k.Label]) || len(k.ID) != 16 {
			t.Errorf("List: %+v", k)
		}
		if u, err := hsm.ParseURI(k.URI.String()); err != nil || u.Object != k.Label {
			t.Errorf("List URI %s: %v", k.URI, err)
		}
	}
	s, err := m.Signer(ctx, keys[1].URI.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.DestroyKey(ctx, keys[1].URI.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, make([]byte, 32), crypto.SHA256); !errors.Is(err, hsm.ErrKeyNotFound) {
		// The handle is cached; the token reports it invalid, the key is
		// looked up again and is gone.
		t.Errorf("signing with a destroyed key: %v, want ErrKeyNotFound", err)
	}
	if err := m.DestroyKey(ctx, keys[1].URI.String()); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("destroying twice: %v", err)
	}
	if keys, _ := m.List(ctx); len(keys) != 2 {
		t.Errorf("List after destroy: %d keys", len(keys))
	}
	// No public-key object is left behind.
	if _, _, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: keys[1].Label, Algorithm: hsm.P256}); err != nil {
		t.Errorf("label of a destroyed key not free again: %v", err)
	}
}

func TestClose(t *testing.T) {
	m, _, _ := openToken(t, nil)
	_, u, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.P256})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := m.Signer(t.Context(), u.String())
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, make([]byte, 32), crypto.SHA256); !errors.Is(err, hsm.ErrClosed) {
		t.Errorf("Sign after Close: %v, want ErrClosed", err)
	}
	// The key outlives the Module: a new one (which loads SoftHSM2 again)
	// signs with it, and finds the module itself when the URI has no
	// module-path.
	u.ModulePath = ""
	m2, err := hsm.Open(t.Context(), u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	s2, err := m2.Signer(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, s2, []byte("again"))
}

func TestInitToken(t *testing.T) {
	uri, pinFile := hsmtest.NewSoftHSM(t)
	u, _ := hsm.ParseURI(uri)
	req := &hsm.InitTokenRequest{ModulePath: u.ModulePath, Label: hsmtest.Label, PIN: &hsm.FilePIN{Path: pinFile}}
	if _, err := hsm.InitToken(t.Context(), req); !errors.Is(err, hsm.ErrTokenExists) {
		t.Fatalf("InitToken of an existing label: %v, want ErrTokenExists", err)
	}
	// A second token: the URI must now say which one.
	req.Label = "second"
	u2, err := hsm.InitToken(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if u2.Token != "second" || u2.Serial == "" {
		t.Fatalf("InitToken: %s", u2)
	}
	noLabel := &hsm.URI{ModulePath: u.ModulePath, PINSource: u.PINSource}
	if _, err := hsm.Open(t.Context(), noLabel.String(), nil); !errors.Is(err, hsm.ErrAmbiguousToken) {
		t.Fatalf("Open without a label, two tokens: %v, want ErrAmbiguousToken", err)
	}
	u2.PINSource = u.PINSource
	m, err := hsm.Open(t.Context(), u2.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	short := filepath.Join(t.TempDir(), "short.pin")
	os.WriteFile(short, []byte("12\n"), 0o600)
	req.Label, req.PIN = "third", &hsm.FilePIN{Path: short}
	if _, err := hsm.InitToken(t.Context(), req); !errors.Is(err, hsm.ErrPINSource) {
		t.Errorf("InitToken with a 2-byte PIN: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (slog handlers
// serialise their own writes, but tests read it while signers run).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}
