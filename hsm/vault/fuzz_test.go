package vault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/rootline/rootline/hsm"
)

// FuzzParseSignature: no panic; an accepted signature round-trips to the
// text it came from.
func FuzzParseSignature(f *testing.F) {
	f.Add("vault:v1:MAYCAQECAQI=", 1)
	f.Add("vault:v7:MAYCAQECAQI=", 0)
	f.Add("vault:v01:AA==", 1)
	f.Add("vault:v1:", 1)
	f.Add("", 0)
	f.Fuzz(func(t *testing.T, text string, version int) {
		sig, err := parseSignature(text, version)
		if err != nil {
			return
		}
		v := strings.TrimPrefix(text, "vault:v")
		v = v[:strings.IndexByte(v, ':')]
		if again := "vault:v" + v + ":" + base64.StdEncoding.EncodeToString(sig); again != text {
			t.Fatalf("%q parsed, re-encodes as %q", text, again)
		}
		if n, _ := strconv.Atoi(v); version != 0 && n != version {
			t.Fatalf("%q accepted for version %d", text, version)
		}
		_ = checkEncoding(hsm.P256, sig)
		_ = checkEncoding(hsm.P384, sig)
	})
}

// FuzzParsePublicKey: no panic; an accepted key is of the algorithm asked.
func FuzzParsePublicKey(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add(uint8(hsm.P256), pemPublicKey(f, &k.PublicKey))
	f.Add(uint8(hsm.Ed25519), base64.StdEncoding.EncodeToString(make([]byte, 32)))
	f.Add(uint8(hsm.P384), "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
	f.Fuzz(func(t *testing.T, a uint8, text string) {
		alg := hsm.Algorithm(a % 4)
		pub, err := parsePublicKey(alg, text)
		if err != nil {
			return
		}
		switch p := pub.(type) {
		case *ecdsa.PublicKey:
			if alg == hsm.P256 && p.Curve != elliptic.P256() || alg == hsm.P384 && p.Curve != elliptic.P384() || alg == hsm.Ed25519 {
				t.Fatalf("%v key accepted as %v", p.Curve.Params().Name, alg)
			}
		default:
			if alg != hsm.Ed25519 {
				t.Fatalf("%T accepted as %v", pub, alg)
			}
		}
	})
}

// FuzzParseKeyInfo feeds transit/keys answers (JSON, decoded as the API
// client decodes) to parseKeyInfo.
func FuzzParseKeyInfo(f *testing.F) {
	f.Add([]byte(`{"type":"ed25519","exportable":false,"allow_plaintext_backup":false,"latest_version":1,"keys":{"1":{"public_key":"` +
		base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}}}`))
	f.Add([]byte(`{"type":"rsa-2048","exportable":true,"allow_plaintext_backup":false,"latest_version":3}`))
	f.Add([]byte(`{"type":"ecdsa-p256","exportable":false,"allow_plaintext_backup":false,"latest_version":1e3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if dec.Decode(&d) != nil {
			return
		}
		ki, err := parseKeyInfo("p", "k", d)
		if err != nil {
			return
		}
		if ki.Algorithm != hsm.AlgorithmUnknown && ki.Public == nil || ki.LatestVersion < 1 {
			t.Fatalf("%+v", ki)
		}
	})
}

// FuzzParseKVRef: an accepted reference splits back into itself.
func FuzzParseKVRef(f *testing.F) {
	f.Add("secret/data/factory#pin")
	f.Add("kv/a.b@c/d-e#f_g")
	f.Add("../x#y")
	f.Fuzz(func(t *testing.T, ref string) {
		p, fl, err := ParseKVRef(ref)
		if err != nil {
			return
		}
		if p+"#"+fl != ref || strings.Contains(p, "..") && strings.Contains("/"+p+"/", "/../") {
			t.Fatalf("%q → %q %q", ref, p, fl)
		}
	})
}
