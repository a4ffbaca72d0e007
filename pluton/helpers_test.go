package pluton

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/hex"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// testSigners returns one fixed key per algorithm: the RFC 6979 A.2.5 and
// A.2.6 keys for ECDSA, the RFC 8032 §7.1 TEST 1 key for Ed25519, and the
// ML-DSA-65 key of the seed 00 01 … 1f.
func testSigners(tb testing.TB) map[Algorithm]crypto.Signer {
	tb.Helper()
	p256, err := ecdsa.ParseRawPrivateKey(elliptic.P256(),
		mustDecode(tb, "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"))
	if err != nil {
		tb.Fatal(err)
	}
	p384, err := ecdsa.ParseRawPrivateKey(elliptic.P384(),
		mustDecode(tb, "6b9d3dad2e1b8c1c05b19875b6659f4de23c3b667bf297ba9aa47740787137d896d5724e4c70a825f872c9ea60d2edf5"))
	if err != nil {
		tb.Fatal(err)
	}
	ed := ed25519.NewKeyFromSeed(mustDecode(tb, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
	var seed [mldsa65.SeedSize]byte
	for i := range seed {
		seed[i] = byte(i)
	}
	_, ml := mldsa65.NewKeyFromSeed(&seed)
	return map[Algorithm]crypto.Signer{ECDSAP256: p256, ECDSAP384: p384, Ed25519: ed, MLDSA65: ml}
}

// testSign signs msg deterministically: RFC 6979 for ECDSA (a nil random
// reader), Ed25519, and circl's deterministic ML-DSA signing.
func testSign(tb testing.TB, alg Algorithm, s crypto.Signer, msg []byte) []byte {
	tb.Helper()
	sig, err := s.Sign(nil, alg.Digest(msg), alg.SignerOpts())
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

func mustDecode(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
