package vault

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/rootline/rootline/hsm"
)

func TestParseSignature(t *testing.T) {
	sig := []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02}
	b64 := base64.StdEncoding.EncodeToString(sig)
	for _, tc := range []struct {
		in      string
		version int
		ok      bool
	}{
		{"vault:v1:" + b64, 1, true},
		{"vault:v12:" + b64, 12, true},
		{"vault:v12:" + b64, 0, true},
		{"vault:v2:" + b64, 1, false},  // another key version
		{"vault:v01:" + b64, 1, false}, // leading zero
		{"vault:v-1:" + b64, 0, false}, // sign
		{"vault:v:" + b64, 0, false},   // no version
		{"vault:1:" + b64, 1, false},   // no "v"
		{"Vault:v1:" + b64, 1, false},  // case
		{"vault:v1" + b64, 1, false},   // no separator
		{"vault:v1:", 1, false},        // empty signature
		{"vault:v1:MEUCIQ", 1, false},  // bad padding
		{"vault:v1:" + b64 + "\n", 1, false},
		{"vault:v1:" + strings.TrimRight(base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff}), "="), 1, false},
		{"vault:v99999999999:" + b64, 0, false},
		{"", 1, false},
		{"vault:v1:" + strings.Repeat("A", 2000), 1, false},
	} {
		got, err := parseSignature(tc.in, tc.version)
		if (err == nil) != tc.ok {
			t.Errorf("parseSignature(%q, %d): %v", clip(tc.in), tc.version, err)
			continue
		}
		if tc.ok && !bytes.Equal(got, sig) {
			t.Errorf("parseSignature(%q) = %x", tc.in, got)
		}
	}
}

func TestCheckEncoding(t *testing.T) {
	// A real signature of each size passes; malformed DER does not.
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		key, _ := ecdsa.GenerateKey(curve, rand.Reader)
		alg := hsm.P256
		if curve == elliptic.P384() {
			alg = hsm.P384
		}
		d := sha256.Sum256(nil)
		for range 20 {
			sig, _ := ecdsa.SignASN1(rand.Reader, key, d[:])
			if err := checkEncoding(alg, sig); err != nil {
				t.Fatalf("%v: %v (%x)", alg, err, sig)
			}
		}
	}
	for _, tc := range []struct {
		name string
		sig  string
	}{
		{"empty", ""},
		{"not a sequence", "020101020102"},
		{"trailing data", "3006020101020102" + "00"},
		{"data after s", "3009020101020102020103"},
		{"negative r", "3006020181020102"},
		{"zero r", "3006020100020102"},
		{"non-minimal r", "300702020001020102"},
		{"one integer", "3003020101"},
		{"r too long", "3026" + "0221" + "01" + strings.Repeat("00", 32) + "020101"},
	} {
		sig, _ := hexDecode(tc.sig)
		if err := checkEncoding(hsm.P256, sig); err == nil {
			t.Errorf("%s: accepted %x", tc.name, sig)
		}
	}
	if err := checkEncoding(hsm.Ed25519, make([]byte, 63)); err == nil {
		t.Error("63-byte Ed25519 signature accepted")
	}
}

func hexDecode(s string) ([]byte, error) {
	b := make([]byte, len(s)/2)
	_, err := fmt.Sscanf(s, "%x", &b)
	if s == "" {
		return nil, nil
	}
	return b, err
}

func pemPublicKey(t testing.TB, pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestParsePublicKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	good := []struct {
		alg hsm.Algorithm
		in  string
		pub crypto.PublicKey
	}{
		{hsm.P256, pemPublicKey(t, &p256.PublicKey), &p256.PublicKey},
		{hsm.P384, pemPublicKey(t, &p384.PublicKey), &p384.PublicKey},
		{hsm.Ed25519, base64.StdEncoding.EncodeToString(edPub), edPub},
	}
	for _, tc := range good {
		got, err := parsePublicKey(tc.alg, tc.in)
		if err != nil {
			t.Fatalf("%v: %v", tc.alg, err)
		}
		if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.pub) {
			t.Fatalf("%v: wrong key", tc.alg)
		}
	}
	for _, tc := range []struct {
		name string
		alg  hsm.Algorithm
		in   string
	}{
		{"P-384 key for P-256", hsm.P256, good[1].in},
		{"Ed25519 PEM for P-256", hsm.P256, pemPublicKey(t, edPub)},
		{"two blocks", hsm.P256, good[0].in + good[0].in},
		{"certificate block", hsm.P256, strings.ReplaceAll(good[0].in, "PUBLIC KEY", "CERTIFICATE")},
		{"short Ed25519", hsm.Ed25519, base64.StdEncoding.EncodeToString(edPub[:31])},
		{"Ed25519 not base64", hsm.Ed25519, "!!"},
		{"empty", hsm.P256, ""},
		{"huge", hsm.P256, strings.Repeat("A", 5000)},
		{"unknown algorithm", hsm.AlgorithmUnknown, good[0].in},
	} {
		if _, err := parsePublicKey(tc.alg, tc.in); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestParseKeyInfo(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	data := func(mod func(map[string]any)) map[string]any {
		d := map[string]any{
			"type": "ecdsa-p256", "exportable": false, "allow_plaintext_backup": false,
			"latest_version": json.Number("2"),
			"keys": map[string]any{
				"1": map[string]any{"public_key": "old"},
				"2": map[string]any{"public_key": pemPublicKey(t, &p256.PublicKey)},
			},
		}
		if mod != nil {
			mod(d)
		}
		return d
	}
	ki, err := parseKeyInfo("p", "k", data(nil))
	if err != nil || ki.LatestVersion != 2 || !ki.Public.(*ecdsa.PublicKey).Equal(&p256.PublicKey) {
		t.Fatalf("%+v, %v", ki, err)
	}
	ki, err = parseKeyInfo("p", "k", data(func(d map[string]any) { d["type"] = "rsa-2048"; delete(d, "keys") }))
	if err != nil || ki.Algorithm != hsm.AlgorithmUnknown {
		t.Fatalf("RSA key: %+v, %v", ki, err)
	}
	for name, mod := range map[string]func(map[string]any){
		"no type":          func(d map[string]any) { delete(d, "type") },
		"exportable text":  func(d map[string]any) { d["exportable"] = "false" },
		"no backup flag":   func(d map[string]any) { delete(d, "allow_plaintext_backup") },
		"version 0":        func(d map[string]any) { d["latest_version"] = json.Number("0") },
		"version fraction": func(d map[string]any) { d["latest_version"] = 1.5 },
		"version text":     func(d map[string]any) { d["latest_version"] = "2" },
		"missing version":  func(d map[string]any) { d["latest_version"] = json.Number("3") },
		"bad public key":   func(d map[string]any) { d["latest_version"] = json.Number("1") },
		"no keys":          func(d map[string]any) { delete(d, "keys") },
	} {
		if _, err := parseKeyInfo("p", "k", data(mod)); !errors.Is(err, ErrBadResponse) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := []Config{
		{Address: "https://vault.example:8200", Token: "hvs.x"},
		{Address: "http://127.0.0.1:8200", Token: "t"},
		{Address: "http://[::1]:8200/", Token: "t"},
		{Address: "http://localhost:8200", AppRole: &AppRole{RoleID: "r", SecretIDFile: "/f", Mount: "approle-factory"}},
		{Address: "https://v", Token: "t", TransitMount: "factory/transit"},
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []Config{
		{Address: "http://vault.example:8200", Token: "t"}, // plain http off loopback
		{Address: "http://10.0.0.1:8200", Token: "t"},
		{Address: "ftp://127.0.0.1", Token: "t"},
		{Address: "https://v/ui", Token: "t"},
		{Address: "https://u:p@v", Token: "t"},
		{Address: "vault:8200", Token: "t"},
		{Address: "", Token: "t"},
		{Address: "https://v"},
		{Address: "https://v", Token: "t", AppRole: &AppRole{RoleID: "r", SecretIDFile: "/f"}},
		{Address: "https://v", Token: "a b"},
		{Address: "https://v", Token: strings.Repeat("t", 5000)},
		{Address: "https://v", AppRole: &AppRole{SecretIDFile: "/f"}},
		{Address: "https://v", AppRole: &AppRole{RoleID: "r"}},
		{Address: "https://v", AppRole: &AppRole{RoleID: "r", SecretIDFile: "/f", Mount: "../sys"}},
		{Address: "https://v", Token: "t", TransitMount: "transit/../sys"},
		{Address: "https://v", Token: "t", TransitMount: "/transit"},
		{Address: "https://v", Token: "t", TransitMount: "tran sit"},
		{Address: "https://v", Token: "t", Timeout: -1},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
	if err := (*Config)(nil).Validate(); err == nil {
		t.Error("nil Config accepted")
	}
}

func TestParseKVRef(t *testing.T) {
	p, f, err := ParseKVRef("secret/data/factory#pin")
	if err != nil || p != "secret/data/factory" || f != "pin" {
		t.Fatalf("%q %q %v", p, f, err)
	}
	for _, bad := range []string{"", "secret", "#pin", "secret#", "../x#pin", "a//b#pin", "a#b#c", "a#b c", "a#\x00", "/a#b"} {
		if _, _, err := ParseKVRef(bad); err == nil {
			t.Errorf("ParseKVRef(%q) accepted", bad)
		}
	}
}

// TestRequestError sorts synthetic failures.
func TestRequestError(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	sealedYes := func() bool { return true }
	resp := func(code int, msgs ...string) error {
		return &api.ResponseError{StatusCode: code, Errors: msgs}
	}
	dial := &url.Error{Op: "Put", URL: "http://127.0.0.1:1", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		err    error
		sealed func() bool
		want   error
	}{
		{"sealed message", ctx, resp(503, "Vault is sealed"), nil, ErrSealed},
		{"503 and seal-status sealed", ctx, resp(503, "maintenance"), sealedYes, ErrSealed},
		{"503 not sealed", ctx, resp(503, "maintenance"), func() bool { return false }, nil},
		{"403", ctx, resp(403, "permission denied"), nil, ErrPermission},
		{"404", ctx, resp(404), nil, ErrKeyNotFound},
		{"400 key not found", ctx, resp(400, "signing key not found"), nil, ErrKeyNotFound},
		{"400 other", ctx, resp(400, "invalid input"), nil, nil},
		{"connection refused", ctx, dial, nil, ErrUnreachable},
		{"client timeout", ctx, fmt.Errorf("x: %w", context.DeadlineExceeded), nil, ErrUnreachable},
		{"caller cancelled", cancelled, dial, nil, nil},
	} {
		err := requestError(tc.ctx, "op", "p", tc.err, tc.sealed)
		for _, k := range []error{ErrSealed, ErrPermission, ErrKeyNotFound, ErrUnreachable, ErrKeyExists} {
			if errors.Is(err, k) != (k == tc.want) {
				t.Errorf("%s: %v: errors.Is(%v) = %v", tc.name, err, k, !(k == tc.want))
			}
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v does not unwrap to the API error", tc.name, err)
		}
	}
}

// TestSelfTestFailure: a signer whose public key is not the key Vault
// signs with fails its first signature, and every later one, with
// ErrSelfTest.
func TestSelfTestFailure(t *testing.T) {
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	real, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	calls := 0
	s := &signer{
		k:   &KMS{log: slog.New(slog.DiscardHandler)},
		alg: hsm.P256, pub: &other.PublicKey, path: "transit/sign/x", version: 1,
	}
	d := sha256.Sum256([]byte("m"))
	sig, _ := ecdsa.SignASN1(rand.Reader, real, d[:])
	sec := &api.Secret{Data: map[string]any{"signature": "vault:v1:" + base64.StdEncoding.EncodeToString(sig)}}
	got, err := s.parseResponse(sec)
	if err != nil {
		t.Fatal(err)
	}
	calls++
	if err := s.verify(d[:], crypto.SHA256, got); !errors.Is(err, ErrSelfTest) {
		t.Fatalf("verify under the wrong key: %v", err)
	}
	s.checked.Store(selfTestFailed)
	if _, err := s.SignContext(context.Background(), d[:], crypto.SHA256); !errors.Is(err, ErrSelfTest) {
		t.Fatalf("Sign after a failed self-test: %v", err)
	}
	// And with the right key the same signature passes.
	s.pub = &real.PublicKey
	if err := s.verify(d[:], crypto.SHA256, got); err != nil {
		t.Fatal(err)
	}
	_ = calls
}
