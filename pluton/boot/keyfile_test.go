package boot

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
)

// counting is a reader that returns 0x00, 0x01, 0x02, …
type counting struct{ n byte }

func (c *counting) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.n
		c.n++
	}
	return len(p), nil
}

// RFC 9881, Appendix C.2: the ML-DSA-65 private key in seed form, for the
// seed 000102…1f.
const rfc9881SeedPKCS8 = "MDQCAQAwCwYJYIZIAWUDBAMSBCKAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"

func TestMLDSAPrivateKeySeedForm(t *testing.T) {
	der, err := base64.StdEncoding.DecodeString(rfc9881SeedPKCS8)
	if err != nil {
		t.Fatal(err)
	}
	// GenerateKey draws the seed ξ from the reader: 00…1f gives RFC 9881's
	// file byte for byte.
	got, pub, err := GenerateKey(&counting{}, pluton.MLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	want := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if !bytes.Equal(got, want) {
		t.Fatalf("GenerateKey =\n%s\nwant\n%s", got, want)
	}
	s, alg, err := ParsePrivateKeyPEM(want)
	if err != nil || alg != pluton.MLDSA65 {
		t.Fatalf("ParsePrivateKeyPEM = %v, %v", alg, err)
	}
	var seed [32]byte
	(&counting{}).Read(seed[:])
	wantPub, wantSK := mldsa65.NewKeyFromSeed(&seed)
	if !wantPub.Equal(s.Public()) || !wantPub.Equal(pub) {
		t.Fatal("public key differs from KeyGen(seed)")
	}

	// The "both" form (RFC 9881, §6), as OpenSSL 3.5 writes it.
	expanded, _ := wantSK.MarshalBinary()
	both := append(bytes.Clone(mldsaBothPrefix), seed[:]...)
	both = append(append(both, mldsaBothExpanded...), expanded...)
	if s, _, err := ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: both})); err != nil || !wantPub.Equal(s.Public()) {
		t.Fatalf("both form: %v", err)
	}
	both[len(both)-1] ^= 1
	if _, _, err := ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: both})); err == nil {
		t.Fatal("both form with a mismatched expanded key accepted")
	}
	// The expandedKey-only form is refused: the seed is required.
	inner := append([]byte{0x04, 0x82, 0x0f, 0xc0}, expanded...)
	body := append([]byte{0x02, 0x01, 0x00}, mldsaAlgID...)
	body = append(append(body, 0x04, 0x82, 0x0f, 0xc4), inner...)
	only := append([]byte{0x30, 0x82, 0x0f, 0xd8}, body...)
	if _, _, err := ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: only})); err == nil || !strings.Contains(err.Error(), "seed") {
		t.Fatalf("expanded-only form: %v", err)
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	for _, alg := range pluton.Algorithms() {
		t.Run(alg.String(), func(t *testing.T) {
			priv, pub, err := GenerateKey(mrand.NewChaCha8([32]byte{byte(alg)}), alg)
			if err != nil {
				t.Fatal(err)
			}
			s, got, err := ParsePrivateKeyPEM(priv)
			if err != nil || got != alg {
				t.Fatalf("ParsePrivateKeyPEM = %v, %v", got, err)
			}
			pubPEM, err := MarshalPublicKeyPEM(pub)
			if err != nil {
				t.Fatal(err)
			}
			back, got, err := ParsePublicKeyPEM(pubPEM)
			if err != nil || got != alg {
				t.Fatalf("ParsePublicKeyPEM = %v, %v", got, err)
			}
			msg := []byte("message")
			sig, err := s.Sign(nil, alg.Digest(msg), alg.SignerOpts())
			if err != nil {
				t.Fatal(err)
			}
			if err := pluton.Verify(back, alg, msg, sig); err != nil {
				t.Fatal(err)
			}
			id, err := KeyID(back)
			if err != nil || len(id) != 32 {
				t.Fatalf("KeyID = %x, %v", id, err)
			}
			if alg != pluton.MLDSA65 {
				// ECDSA and Ed25519 files are plain PKCS#8 for crypto/x509.
				block, _ := pem.Decode(priv)
				if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestKeyFileRefuses(t *testing.T) {
	priv, _, err := GenerateKey(mrand.NewChaCha8([32]byte{1}), pluton.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(priv)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: block.Bytes})},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: block.Bytes})},
		{"trailing data", append(bytes.Clone(priv), "more"...)},
		{"two keys", append(bytes.Clone(priv), priv...)},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}})},
		{"truncated ML-DSA seed", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: append(bytes.Clone(mldsaSeedPrefix), make([]byte, 31)...)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParsePrivateKeyPEM(tc.in); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, _, err := ParsePublicKeyPEM(priv); err == nil {
		t.Fatal("ParsePublicKeyPEM accepted a private key")
	}
	if _, err := RootKeyHash(nil, crypto.SHA256); !errors.Is(err, pluton.ErrInvalidKey) {
		t.Fatalf("RootKeyHash(nil) = %v", err)
	}
	if _, err := RootKeyHash(newKey(t, pluton.Ed25519, 1).Public(), crypto.SHA512); err == nil {
		t.Fatal("RootKeyHash with SHA-512")
	}
}

// OpenSSL reads our ECDSA and Ed25519 key files, and we read its.
func TestKeyFileOpenSSL(t *testing.T) {
	openssl := testdep.LookPath(t, "openssl")
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	for _, tc := range []struct {
		alg     pluton.Algorithm
		genArgs []string
	}{
		{pluton.ECDSAP256, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}},
		{pluton.ECDSAP384, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"}},
		{pluton.Ed25519, []string{"-algorithm", "ED25519"}},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			// Ours → OpenSSL.
			priv, pub, err := GenerateKey(mrand.NewChaCha8([32]byte{byte(tc.alg), 2}), tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			ours := filepath.Join(dir, tc.alg.String()+"-ours.key")
			if err := os.WriteFile(ours, priv, 0o600); err != nil {
				t.Fatal(err)
			}
			wantPub, _ := MarshalPublicKeyPEM(pub)
			if got := run("pkey", "-in", ours, "-pubout"); !bytes.Equal(got, wantPub) {
				t.Fatalf("openssl derives\n%s\nwe have\n%s", got, wantPub)
			}
			// OpenSSL → ours.
			theirs := filepath.Join(dir, tc.alg.String()+"-theirs.key")
			run(append(append([]string{"genpkey"}, tc.genArgs...), "-out", theirs)...)
			b, err := os.ReadFile(theirs)
			if err != nil {
				t.Fatal(err)
			}
			s, alg, err := ParsePrivateKeyPEM(b)
			if err != nil || alg != tc.alg {
				t.Fatalf("ParsePrivateKeyPEM(openssl's) = %v, %v", alg, err)
			}
			theirPub, _, err := ParsePublicKeyPEM(run("pkey", "-in", theirs, "-pubout"))
			if err != nil {
				t.Fatal(err)
			}
			a, _ := pluton.MarshalPublicKey(theirPub)
			c, _ := pluton.MarshalPublicKey(s.Public())
			if !bytes.Equal(a, c) {
				t.Fatal("public keys differ")
			}
		})
	}
}
