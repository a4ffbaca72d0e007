package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
)

// checkEARWithJose checks an EAR with go-jose, an independent JOSE
// implementation, given only the verifier's JWKS.
func checkEARWithJose(t *testing.T, v *Verifier, ear []byte) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(v.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0].KeyID != v.KeyID() || set.Keys[0].Algorithm != "ES256" || set.Keys[0].Use != "sig" {
		t.Fatalf("JWKS %s", v.JWKS())
	}
	// RFC 7638 thumbprint, as go-jose computes it.
	tp, err := set.Keys[0].Thumbprint(crypto.SHA256)
	if err != nil || base64.RawURLEncoding.EncodeToString(tp) != v.KeyID() {
		t.Fatalf("kid %s is not the RFC 7638 thumbprint: %v", v.KeyID(), err)
	}
	tok, err := jwt.ParseSigned(string(ear), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Headers[0].KeyID != v.KeyID() {
		t.Fatal("kid header")
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatal("kid not in the JWKS")
	}
	var claims map[string]any
	var std jwt.Claims
	if err := tok.Claims(keys[0].Key, &claims, &std); err != nil {
		t.Fatalf("go-jose refuses the EAR: %v", err)
	}
	if std.IssuedAt == nil || time.Since(std.IssuedAt.Time()) > time.Hour {
		t.Fatal("iat")
	}
	return claims
}

func TestEARInterop(t *testing.T) {
	e := newEnv(t, nil)
	d := e.newDevice(2)
	tok := e.evidence(d.Device)
	res := e.attest(&Request{Evidence: tok})
	claims := checkEARWithJose(t, e.v, res.EAR)
	if claims["eat_profile"] != "tag:github.com,2023:veraison/ear" {
		t.Fatal(claims)
	}
	vid := claims["ear.verifier-id"].(map[string]any)
	if vid["developer"] != "rootline" || vid["build"] != "test" {
		t.Fatal(vid)
	}
	sub := claims["submods"].(map[string]any)[EARSubmod].(map[string]any)
	if sub["ear.status"] != "affirming" || sub["ear.appraisal-policy-id"] != DefaultPolicyID {
		t.Fatal(sub)
	}
	tv := sub["ear.trustworthiness-vector"].(map[string]any)
	for _, k := range []string{"instance-identity", "configuration", "executables", "file-system", "hardware", "runtime-opaque", "storage-opaque", "sourced-data"} {
		if _, ok := tv[k]; !ok {
			t.Fatalf("trustworthiness vector without %s", k)
		}
	}
	if tv["instance-identity"] != 2.0 || tv["executables"] != 3.0 {
		t.Fatal(tv)
	}
	nonce, _ := base64.RawURLEncoding.DecodeString(claims["eat_nonce"].(string))
	ver, _ := parseNonce(tok)
	if !bytes.Equal(nonce, ver) {
		t.Fatal("eat_nonce is not the evidence's nonce")
	}
	// The signature is r || s, 64 bytes (RFC 7518, §3.4), not DER.
	parts := strings.Split(string(res.EAR), ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if len(sig) != 64 {
		t.Fatalf("signature of %d bytes", len(sig))
	}
	// A refusal's EAR carries its reasons.
	res = e.attest(&Request{Evidence: tok}) // replayed
	sub = checkEARWithJose(t, e.v, res.EAR)["submods"].(map[string]any)[EARSubmod].(map[string]any)
	rs := sub["rootline.reasons"].([]any)
	if sub["ear.status"] != "contraindicated" || rs[0].(map[string]any)["code"] != string(CodeNonceReplayed) {
		t.Fatal(sub)
	}
	// Tampering is detected by both checkers.
	bad := bytes.Clone(res.EAR)
	bad[len(bad)/2] ^= 1
	if _, err := ParseEAR(bad, e.earKey.Public().(*ecdsa.PublicKey), time.Now(), 0); err == nil {
		t.Fatal("ParseEAR accepted a tampered EAR")
	}
}

// TestKeyIDKnownAnswer: the RFC 7638 thumbprint of a fixed P-256 key,
// computed by hand from §3 of the RFC.
func TestKeyIDKnownAnswer(t *testing.T) {
	k, err := newEARKey(mustP256(t))
	if err != nil {
		t.Fatal(err)
	}
	x, y := k.jwk["x"], k.jwk["y"]
	h := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	if k.kid != base64.RawURLEncoding.EncodeToString(h[:]) {
		t.Fatal("kid")
	}
	// RFC 7517, Appendix A.1, first key: kid "1" there; its RFC 7638
	// thumbprint, computed with go-jose, is fixed.
	var jwk jose.JSONWebKey
	if err := json.Unmarshal([]byte(`{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"enc","kid":"1"}`), &jwk); err != nil {
		t.Fatal(err)
	}
	k2, err := newEARKey(jwk.Key)
	if err != nil {
		t.Fatal(err)
	}
	tp, _ := jwk.Thumbprint(crypto.SHA256)
	if k2.kid != base64.RawURLEncoding.EncodeToString(tp) || k2.jwk["x"] != "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4" {
		t.Fatalf("kid %s", k2.kid)
	}
}

func mustP256(t *testing.T) *ecdsa.PublicKey {
	var jwk jose.JSONWebKey
	if err := json.Unmarshal([]byte(`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`), &jwk); err != nil {
		t.Fatal(err)
	}
	return jwk.Key.(*ecdsa.PublicKey)
}

// TestEARSoftHSM signs EARs with a key in SoftHSM2 (the production
// setup) and checks them with go-jose.
func TestEARSoftHSM(t *testing.T) {
	uri, _ := hsmtest.NewSoftHSM(t)
	ctx := t.Context()
	m, err := hsm.Open(ctx, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	_, u, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: "ear", Algorithm: hsm.P256})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := m.Signer(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, &envOptions{signer: signer})
	d := e.newDevice(1)
	res := e.attest(&Request{Evidence: e.evidence(d.Device)})
	if res.Status != StatusAffirming {
		t.Fatal(res.Reasons)
	}
	checkEARWithJose(t, e.v, res.EAR)
	if _, err := ParseEAR(res.EAR, signer.Public().(*ecdsa.PublicKey), e.clock.now(), time.Minute); err != nil {
		t.Fatal(err)
	}
}
