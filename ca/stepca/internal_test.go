package stepca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rootline/rootline/internal/testdep"
)

// RFC 8037, Appendix A.3: the thumbprint of the Ed25519 key of A.2.
func TestJWKThumbprintRFC8037(t *testing.T) {
	x, err := b64.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	_, kid, err := JWK(ed25519.PublicKey(x))
	if err != nil {
		t.Fatal(err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; kid != want {
		t.Errorf("thumbprint %s, want %s", kid, want)
	}
}

// TestJWTStepCLI: the step CLI (go.step.sm/crypto's JOSE, an independent
// implementation) verifies the tokens of each key type.
func TestJWTStepCLI(t *testing.T) {
	step := testdep.LookPath(t, "step")
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]crypto.Signer{"ES256": p256, "ES384": p384, "EdDSA": ed} {
		t.Run(name, func(t *testing.T) {
			jwk, kid, err := JWK(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			keyFile := filepath.Join(t.TempDir(), "key.json")
			if err := os.WriteFile(keyFile, jwk, 0o600); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			tok, err := signJWT(key, kid, &tokenClaims{Issuer: "iss", Subject: "sub", Audience: "https://ca/1.0/sign",
				NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix(), ID: "j"}, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), step, "crypto", "jwt", "verify", "--key", keyFile, "--iss", "iss", "--aud", "https://ca/1.0/sign")
			cmd.Stdin = strings.NewReader(tok)
			cmd.Env = append(os.Environ(), "STEPPATH="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("step crypto jwt verify: %v\n%s", err, out)
			}
			var v struct {
				Header  map[string]any `json:"header"`
				Payload map[string]any `json:"payload"`
			}
			if err := json.Unmarshal(out, &v); err != nil || v.Header["alg"] != name || v.Header["kid"] != kid || v.Payload["sub"] != "sub" {
				t.Errorf("step read %s (%v)", out, err)
			}
			// A flipped bit in the signature is refused.
			bad := []byte(tok)
			bad[len(bad)-3] ^= 1
			cmd = exec.CommandContext(t.Context(), step, "crypto", "jwt", "verify", "--key", keyFile, "--iss", "iss", "--aud", "https://ca/1.0/sign")
			cmd.Stdin = strings.NewReader(string(bad))
			cmd.Env = append(os.Environ(), "STEPPATH="+t.TempDir())
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Errorf("step verified a corrupted token: %s", out)
			}
		})
	}
}

func TestDERToP1363(t *testing.T) {
	for _, tc := range []struct {
		der  string
		size int
		want string // "" for an error
	}{
		{"3006020101020102", 2, "00010002"},
		{"300702020080020101", 2, "00800001"}, // a 0x00 pad before 0x80
		{"3007020200ff020101", 1, "ff01"},
		{"3006020100020101", 2, ""},     // r = 0
		{"3006020101020100", 2, ""},     // s = 0
		{"30070202ff00020101", 2, ""},   // negative r
		{"3006020101020181", 2, ""},     // negative s
		{"300702020001020101", 2, ""},   // non-minimal r
		{"30080203010000020101", 2, ""}, // r wider than the order
		{"3006020101020101ff", 2, ""},   // trailing data
		{"3106020101020101", 2, ""},     // a SET
		{"3003020101", 2, ""},           // no s
		{"", 2, ""},
	} {
		der, _ := hex.DecodeString(tc.der)
		got, err := derToP1363(der, tc.size)
		if (tc.want == "") != (err != nil) || hex.EncodeToString(got) != tc.want {
			t.Errorf("derToP1363(%s, %d) = %x, %v; want %q", tc.der, tc.size, got, err, tc.want)
		}
	}
}
