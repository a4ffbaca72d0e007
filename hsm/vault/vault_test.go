package vault_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/vault"
	"github.com/rootline/rootline/internal/vaulttest"
)

// open starts a dev server with transit and opens a KMS on it with the
// root token.
func open(t *testing.T) (*vaulttest.Server, *vault.KMS) {
	t.Helper()
	srv := vaulttest.Start(t)
	srv.EnableTransit(t)
	k, err := vault.Open(t.Context(), &vault.Config{Address: srv.Addr, Token: srv.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return srv, k
}

// verify checks sig over msg (or its digest, for ECDSA) with crypto/ecdsa
// or crypto/ed25519, not with this package.
func verify(t *testing.T, pub crypto.PublicKey, msg, sig []byte, h crypto.Hash) {
	t.Helper()
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		hh := h.New()
		hh.Write(msg)
		if !ecdsa.VerifyASN1(pub, hh.Sum(nil), sig) {
			t.Fatalf("ECDSA %s/%v signature does not verify", pub.Curve.Params().Name, h)
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatal("Ed25519 signature does not verify")
		}
	default:
		t.Fatalf("public key of type %T", pub)
	}
}

func TestCreateSignVerify(t *testing.T) {
	srv, k := open(t)
	ctx := t.Context()
	for _, tc := range []struct {
		alg    hsm.Algorithm
		hashes []crypto.Hash
		typ    string
	}{
		{hsm.P256, []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA224, crypto.SHA3_256}, "ecdsa-p256"},
		{hsm.P384, []crypto.Hash{crypto.SHA384, crypto.SHA256, crypto.SHA512}, "ecdsa-p384"},
		{hsm.Ed25519, []crypto.Hash{0}, "ed25519"},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			name := "factory-" + tc.alg.String()
			pub, err := k.CreateKey(ctx, name, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			s, err := k.Signer(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
				t.Fatal("Signer's public key differs from CreateKey's")
			}
			msg := []byte("rootline: an IDevID TBSCertificate stands here")
			for _, h := range tc.hashes {
				in := msg
				if h != 0 {
					hh := h.New()
					hh.Write(msg)
					in = hh.Sum(nil)
				}
				for range 3 {
					sig, err := s.Sign(nil, in, h)
					if err != nil {
						t.Fatalf("%v: %v", h, err)
					}
					verify(t, s.Public(), msg, sig, h)
				}
			}

			// The key's configuration, read with the root token: as
			// created, not exportable, no plaintext backup.
			sec := srv.Read(t, "transit/keys/"+name)
			if sec.Data["type"] != tc.typ || sec.Data["exportable"] != false || sec.Data["allow_plaintext_backup"] != false {
				t.Fatalf("key config: type %v exportable %v allow_plaintext_backup %v",
					sec.Data["type"], sec.Data["exportable"], sec.Data["allow_plaintext_backup"])
			}
			ki, err := k.Key(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if ki.Exportable || ki.AllowPlaintextBackup || ki.Algorithm != tc.alg || ki.Type != tc.typ || ki.LatestVersion != 1 {
				t.Fatalf("KeyInfo %+v", ki)
			}
			// Vault refuses to export it.
			if _, err := srv.Client.Logical().ReadWithContext(ctx, "transit/export/signing-key/"+name); err == nil {
				t.Fatal("Vault exported a key created non-exportable")
			}
		})
	}
}

func TestSignerOptions(t *testing.T) {
	_, k := open(t)
	ctx := t.Context()
	for _, a := range []hsm.Algorithm{hsm.P256, hsm.Ed25519} {
		if _, err := k.CreateKey(ctx, "k-"+a.String(), a); err != nil {
			t.Fatal(err)
		}
	}
	ec, _ := k.Signer(ctx, "k-p256")
	ed, _ := k.Signer(ctx, "k-ed25519")
	d := sha256.Sum256([]byte("x"))
	d512 := sha512.Sum512_256([]byte("x"))
	for _, tc := range []struct {
		name   string
		s      crypto.Signer
		digest []byte
		opts   crypto.SignerOpts
		want   error
	}{
		{"ecdsa short digest", ec, d[:31], crypto.SHA256, nil},
		{"ecdsa no hash", ec, d[:], crypto.Hash(0), vault.ErrUnsupported},
		{"ecdsa SHA-512/256", ec, d512[:], crypto.SHA512_256, vault.ErrUnsupported},
		{"ed25519ph", ed, d[:], crypto.SHA512, vault.ErrUnsupported},
		{"ed25519ctx", ed, []byte("m"), &ed25519.Options{Context: "c"}, vault.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.Sign(nil, tc.digest, tc.opts)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// ed25519.Options with no hash and no context is plain Ed25519.
	sig, err := ed.Sign(nil, []byte("m"), &ed25519.Options{})
	if err != nil || !ed25519.Verify(ed.Public().(ed25519.PublicKey), []byte("m"), sig) {
		t.Fatalf("Ed25519 with empty options: %v", err)
	}
	// SignContext honours its context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ec.(hsm.ContextSigner).SignContext(cctx, d[:], crypto.SHA256); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled SignContext: %v", err)
	}
}

func TestKeyErrors(t *testing.T) {
	srv, k := open(t)
	ctx := t.Context()
	if _, err := k.CreateKey(ctx, "dup", hsm.P256); err != nil {
		t.Fatal(err)
	}
	if _, err := k.CreateKey(ctx, "dup", hsm.P256); !errors.Is(err, vault.ErrKeyExists) {
		t.Fatalf("second CreateKey: %v", err)
	}
	if _, err := k.Signer(ctx, "missing"); !errors.Is(err, vault.ErrKeyNotFound) {
		t.Fatalf("Signer of a missing key: %v", err)
	}
	for _, bad := range []string{"", "../sys/seal", "a/b", "-x", "x.", strings.Repeat("a", 200)} {
		if _, err := k.Signer(ctx, bad); err == nil || errors.Is(err, vault.ErrKeyNotFound) {
			t.Fatalf("Signer(%q): %v", bad, err)
		}
	}
	if _, err := k.CreateKey(ctx, "rsa", hsm.AlgorithmUnknown); !errors.Is(err, vault.ErrKeyAttributes) {
		t.Fatalf("CreateKey of an unknown algorithm: %v", err)
	}
	// Keys made outside this package that it must not sign with.
	srv.Write(t, "transit/keys/exportable", map[string]any{"type": "ecdsa-p256", "exportable": true})
	srv.Write(t, "transit/keys/backup", map[string]any{"type": "ed25519", "allow_plaintext_backup": true})
	srv.Write(t, "transit/keys/rsa", map[string]any{"type": "rsa-2048"})
	for _, name := range []string{"exportable", "backup", "rsa"} {
		if _, err := k.Signer(ctx, name); !errors.Is(err, vault.ErrKeyAttributes) {
			t.Fatalf("Signer(%s): %v", name, err)
		}
	}
	// A transit key that disappears under a signer.
	if _, err := k.CreateKey(ctx, "gone", hsm.P256); err != nil {
		t.Fatal(err)
	}
	s, _ := k.Signer(ctx, "gone")
	srv.Write(t, "transit/keys/gone/config", map[string]any{"deletion_allowed": true})
	if _, err := srv.Client.Logical().DeleteWithContext(ctx, "transit/keys/gone"); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(nil)
	if _, err := s.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, vault.ErrKeyNotFound) {
		t.Fatalf("Sign with a deleted key: %v", err)
	}
}

// TestRotation: a signer stays bound to its key version after the key is
// rotated; a new signer uses the new version.
func TestRotation(t *testing.T) {
	srv, k := open(t)
	ctx := t.Context()
	pub1, err := k.CreateKey(ctx, "rot", hsm.P256)
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := k.Signer(ctx, "rot")
	srv.Write(t, "transit/keys/rot/rotate", nil)
	s2, err := k.Signer(ctx, "rot")
	if err != nil {
		t.Fatal(err)
	}
	if s2.Public().(*ecdsa.PublicKey).Equal(pub1) {
		t.Fatal("the rotated key has the old public key")
	}
	msg := []byte("m")
	d := sha256.Sum256(msg)
	for _, s := range []crypto.Signer{s1, s2} {
		sig, err := s.Sign(nil, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, s.Public(), msg, sig, crypto.SHA256)
	}
}

func TestAppRole(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.EnableTransit(t)
	srv.Policy(t, "signer", `
path "transit/keys/*" { capabilities = ["create", "read", "update"] }
path "transit/sign/*" { capabilities = ["update"] }
`)
	roleID, secretIDFile := srv.AppRole(t, "station", "signer")
	ctx := t.Context()
	var logs bytes.Buffer
	k, err := vault.Open(ctx, &vault.Config{
		Address: srv.Addr,
		AppRole: &vault.AppRole{RoleID: roleID, SecretIDFile: secretIDFile},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	pub, err := k.CreateKey(ctx, "approle-key", hsm.P384)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := k.Signer(ctx, "approle-key")
	d := sha512.Sum384([]byte("m"))
	sig, err := s.Sign(nil, d[:], crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, pub, []byte("m"), sig, crypto.SHA384)

	// Every token of the role revoked (as when it expires): the KMS logs
	// in again and the signature goes through.
	revokeRoleTokens(t, srv)
	if _, err := s.Sign(nil, d[:], crypto.SHA384); err != nil {
		t.Fatalf("Sign after the AppRole token was revoked: %v", err)
	}
	if n := strings.Count(logs.String(), "logged in by AppRole"); n != 2 {
		t.Fatalf("%d AppRole logins, want 2 (at Open, and after the revocation):\n%s", n, logs.String())
	}
	secretID, _ := os.ReadFile(secretIDFile)
	if strings.Contains(logs.String(), strings.TrimSpace(string(secretID))) {
		t.Fatal("the secret ID appears in the log")
	}

	// The policy does not grant everything.
	if _, err := k.KVPIN("secret/data/factory", "pin"); err != nil {
		t.Fatal(err)
	}
	p, _ := k.KVPIN("secret/data/factory", "pin")
	if _, err := p.PIN(ctx); !errors.Is(err, vault.ErrPermission) || !errors.Is(err, hsm.ErrPINSource) {
		t.Fatalf("reading a secret the policy does not grant: %v", err)
	}

	// A wrong secret ID is refused at Open.
	bad := t.TempDir() + "/bad"
	writeFile(t, bad, "not-the-secret-id\n", 0o600)
	_, err = vault.Open(ctx, &vault.Config{Address: srv.Addr, AppRole: &vault.AppRole{RoleID: roleID, SecretIDFile: bad}})
	if err == nil {
		t.Fatal("Open with a wrong secret ID succeeded")
	}
	// A secret ID file anyone may write is refused.
	writeFile(t, bad, "x\n", 0o666)
	if _, err = vault.Open(ctx, &vault.Config{Address: srv.Addr, AppRole: &vault.AppRole{RoleID: roleID, SecretIDFile: bad}}); err == nil ||
		!strings.Contains(err.Error(), "writable by anyone") {
		t.Fatalf("world-writable secret ID file: %v", err)
	}
}

// revokeRoleTokens revokes every token the approle auth method issued, by
// its mount accessor's prefix.
func revokeRoleTokens(t *testing.T, srv *vaulttest.Server) {
	t.Helper()
	srv.Write(t, "sys/leases/revoke-prefix/auth/approle", nil)
}

func TestSealed(t *testing.T) {
	srv, k := open(t)
	ctx := t.Context()
	if _, err := k.CreateKey(ctx, "s", hsm.P256); err != nil {
		t.Fatal(err)
	}
	s, _ := k.Signer(ctx, "s")
	srv.Seal(t)
	d := sha256.Sum256(nil)
	_, err := s.Sign(nil, d[:], crypto.SHA256)
	if !errors.Is(err, vault.ErrSealed) {
		t.Fatalf("Sign on a sealed Vault: %v", err)
	}
	var ve *vault.Error
	var re *api.ResponseError
	if !errors.As(err, &ve) || ve.StatusCode != 503 || !errors.As(err, &re) {
		t.Fatalf("sealed error %#v does not carry the 503 and the API error", err)
	}
	if _, err := vault.Open(ctx, &vault.Config{Address: srv.Addr, Token: srv.RootToken}); !errors.Is(err, vault.ErrSealed) {
		t.Fatalf("Open on a sealed Vault: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	ctx := t.Context()
	_, err := vault.Open(ctx, &vault.Config{Address: vaulttest.ClosedAddr(t), Token: "x"})
	if !errors.Is(err, vault.ErrUnreachable) {
		t.Fatalf("Open on a closed port: %v", err)
	}
	// A Vault that goes away under a signer.
	srv, k := open(t)
	if _, err := k.CreateKey(ctx, "u", hsm.Ed25519); err != nil {
		t.Fatal(err)
	}
	s, _ := k.Signer(ctx, "u")
	srv.Stop()
	if _, err := s.Sign(nil, []byte("m"), crypto.Hash(0)); !errors.Is(err, vault.ErrUnreachable) {
		t.Fatalf("Sign on a stopped Vault: %v", err)
	}
}

func TestWrongToken(t *testing.T) {
	srv, k := open(t)
	ctx := t.Context()
	if _, err := k.CreateKey(ctx, "w", hsm.P256); err != nil {
		t.Fatal(err)
	}
	// Open needs no token (it asks sys/seal-status); the first request
	// that does is refused.
	bad, err := vault.Open(ctx, &vault.Config{Address: srv.Addr, Token: "hvs.not-a-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Signer(ctx, "w"); !errors.Is(err, vault.ErrPermission) {
		t.Fatalf("Signer with a wrong token: %v", err)
	}
	if _, err := bad.CreateKey(ctx, "w2", hsm.P256); !errors.Is(err, vault.ErrPermission) {
		t.Fatalf("CreateKey with a wrong token: %v", err)
	}
	// A token that may read keys but not sign.
	srv.Policy(t, "reader", `path "transit/keys/*" { capabilities = ["read"] }`)
	ro, err := vault.Open(ctx, &vault.Config{Address: srv.Addr, Token: srv.Token(t, "reader")})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	s, err := ro.Signer(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(nil)
	if _, err := s.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, vault.ErrPermission) {
		t.Fatalf("Sign without the sign capability: %v", err)
	}
	// A closed KMS.
	k.Close()
	if _, err := k.Signer(ctx, "w"); !errors.Is(err, vault.ErrClosed) {
		t.Fatalf("Signer on a closed KMS: %v", err)
	}
}

func TestTLS(t *testing.T) {
	srv := vaulttest.StartTLS(t)
	srv.EnableTransit(t)
	ctx := t.Context()
	k, err := vault.Open(ctx, &vault.Config{Address: srv.Addr, Token: srv.RootToken, CACert: srv.CACert})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if _, err := k.CreateKey(ctx, "tls", hsm.P256); err != nil {
		t.Fatal(err)
	}
	// Without the CA, the server's certificate is not trusted.
	_, err = vault.Open(ctx, &vault.Config{Address: srv.Addr, Token: srv.RootToken})
	if !errors.Is(err, vault.ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Open without the CA: %v", err)
	}
	// Plain http to the TLS port fails too.
	_, err = vault.Open(ctx, &vault.Config{Address: strings.Replace(srv.Addr, "https", "http", 1), Token: srv.RootToken})
	if err == nil {
		t.Fatal("plain http to a TLS listener succeeded")
	}
}

func TestKVPINSource(t *testing.T) {
	srv, _ := open(t)
	ctx := t.Context()
	const pin = "714285-secret-pin"
	srv.PutKV(t, "factory", map[string]any{"pin": pin, "other": "x", "num": 5})
	srv.Enable(t, "kv1", "kv")
	srv.Write(t, "kv1/factory", map[string]any{"pin": pin})

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k, err := vault.Open(ctx, &vault.Config{Address: srv.Addr, Token: srv.RootToken, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	opts := &hsm.Options{Logger: logger, PINSources: map[string]hsm.PINSourceFunc{"vault": k.PINSourceFunc()}}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"vault:secret/data/factory#pin", "vault:kv1/factory#pin"} {
		src, err := hsm.ResolvePINSource(ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := src.PIN(ctx)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if string(got) != pin {
			t.Fatalf("%s: PIN %q", ref, got)
		}
		clear(got)
	}
	for _, tc := range []struct {
		ref  string
		want error
	}{
		{"vault:secret/data/factory#missing", vault.ErrKeyNotFound},
		{"vault:secret/data/nothing#pin", vault.ErrKeyNotFound},
		{"vault:secret/data/factory#num", nil},
		{"vault:nomount/x#pin", nil},
	} {
		src, err := hsm.ResolvePINSource(tc.ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.PIN(ctx)
		if !errors.Is(err, hsm.ErrPINSource) || tc.want != nil && !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		if strings.Contains(err.Error(), pin) {
			t.Fatalf("%s: the error quotes the PIN: %v", tc.ref, err)
		}
	}
	for _, ref := range []string{"vault:secret/data/factory", "vault:../sys#x", "vault:a#", "vault:#pin", "vault:a#b c"} {
		if _, err := hsm.ResolvePINSource(ref, opts); !errors.Is(err, hsm.ErrPINSource) {
			t.Fatalf("%s: %v", ref, err)
		}
	}
	if !strings.Contains(logs.String(), "read a PIN") {
		t.Fatalf("the Debug log does not record the read:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), pin) || strings.Contains(srv.Log(), pin) {
		t.Fatal("the PIN appears in a log")
	}
	// A secret whose current version was deleted.
	if _, err := srv.Client.Logical().DeleteWithContext(ctx, "secret/data/factory"); err != nil {
		t.Fatal(err)
	}
	src, _ := hsm.ResolvePINSource("vault:secret/data/factory#pin", opts)
	if _, err := src.PIN(ctx); !errors.Is(err, vault.ErrKeyNotFound) {
		t.Fatalf("deleted secret: %v", err)
	}
}
