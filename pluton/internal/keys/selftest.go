package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/rootline/rootline/pluton"
)

// Self-tests, after FIPS 140-3 IG 10.3.A and the CASTs and PCTs of Go's
// crypto/internal/fips140 (cast.go):
//
//   - a conditional algorithm self-test (known answer) of each algorithm,
//     run once per process before the algorithm's first key is generated
//     or loaded, its result kept: an algorithm that failed stays failed;
//   - a pairwise-consistency test of every generated key.
//
// Every expected value is a published one, cited where it is written.

// SelfTestError says which self-test failed. It wraps [pluton.ErrSelfTest].
// It never holds key material.
type SelfTestError struct {
	Algorithm pluton.Algorithm
	Test      string // "known-answer" or "pairwise-consistency"
	Reason    string
}

func (e *SelfTestError) Error() string {
	return fmt.Sprintf("keys: %v %s self-test failed: %s", e.Algorithm, e.Test, e.Reason)
}

// Unwrap returns [pluton.ErrSelfTest].
func (e *SelfTestError) Unwrap() error { return pluton.ErrSelfTest }

// selfTests is the once-only self-test state of a process (see
// processSelfTests) or of one test. Its fields are set by newSelfTests and
// only read afterwards.
type selfTests struct {
	kat map[pluton.Algorithm]func() error // sync.OnceValue per algorithm

	// breakKAT and breakPCT make that algorithm's known-answer or
	// pairwise-consistency test fail by corrupting the value it checks,
	// like GODEBUG=failfipscast in Go's FIPS module. Only tests set them,
	// through newSelfTests; the process state has none.
	breakKAT, breakPCT pluton.Algorithm
}

func newSelfTests(breakKAT, breakPCT pluton.Algorithm) *selfTests {
	st := &selfTests{
		kat:      make(map[pluton.Algorithm]func() error),
		breakKAT: breakKAT,
		breakPCT: breakPCT,
	}
	for _, alg := range pluton.Algorithms() {
		st.kat[alg] = sync.OnceValue(func() error { return knownAnswerTest(alg, alg == breakKAT) })
	}
	return st
}

// processSelfTests is the self-test state of this process: the only
// package-level state, never reassigned, like the fipsSelfTest
// sync.OnceFunc values of Go's FIPS module.
var processSelfTests = newSelfTests(pluton.AlgorithmUnknown, pluton.AlgorithmUnknown)

func (st *selfTests) run(alg pluton.Algorithm) error {
	f, ok := st.kat[alg]
	if !ok {
		return fmt.Errorf("keys: %w: %v", pluton.ErrUnsupportedAlgorithm, alg)
	}
	return f()
}

// SelfTest runs the known-answer test of alg, once per process; later calls
// return the first result. It returns nil or a *[SelfTestError] (wrapping
// [pluton.ErrSelfTest]); an unknown alg yields an error wrapping
// [pluton.ErrUnsupportedAlgorithm]. [Generate] and [FromPrivate] call it
// before using alg.
//
//   - ECDSA P-256 and P-384: the key of RFC 6979, A.2.5 and A.2.6, its
//     published public key, and the deterministic (RFC 6979) signature of
//     "sample" with SHA-256 or SHA-384, compared with the published r and
//     s, then checked with [pluton.Verify]; the signature of another
//     message must not verify.
//   - Ed25519: RFC 8032, §7.1, TEST 1: public key and signature of the
//     empty message, compared, then verified.
//   - ML-DSA-65: ML-DSA.KeyGen_internal of the seed of NIST ACVP keyGen
//     tcId 36, compared with its published public key; and the valid
//     signature of Wycheproof mldsa_65_verify_test tcId 1 checked with
//     [pluton.Verify] (and refused for another message). Signing is
//     covered by the pairwise-consistency test of every key.
func SelfTest(alg pluton.Algorithm) error { return processSelfTests.run(alg) }

func knownAnswerTest(alg pluton.Algorithm, corrupt bool) error {
	var reason string
	switch alg {
	case pluton.ECDSAP256:
		// RFC 6979, A.2.5: ECDSA, 256 bits (prime field), with SHA-256,
		// message = "sample".
		reason = ecdsaKAT(alg, elliptic.P256(), corrupt,
			"c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721",
			"60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6",
			"7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299",
			"efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
			"f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8")
	case pluton.ECDSAP384:
		// RFC 6979, A.2.6: ECDSA, 384 bits (prime field), with SHA-384,
		// message = "sample".
		reason = ecdsaKAT(alg, elliptic.P384(), corrupt,
			"6b9d3dad2e1b8c1c05b19875b6659f4de23c3b667bf297ba9aa47740787137d896d5724e4c70a825f872c9ea60d2edf5",
			"ec3a4e415b4e19a4568618029f427fa5da9a8bc4ae92e02e06aae5286b300c64def8f0ea9055866064a254515480bc13",
			"8015d9b72d7d57244ea8ef9ac0c621896708a59367f9dfb9f54ca84b3f1c9db1288b231c3ae0d4fe7344fd2533264720",
			"94edbb92a5ecb8aad4736e56c691916b3f88140666ce9fa73d64c4ea95ad133c81a648152e44acf96e36dd1e80fabe46",
			"99ef4aeb15f178cea1fe40db2603138f130e740a19624526203b6351d0a3a94fa329c145786e679e7b82c71a38628ac8")
	case pluton.Ed25519:
		reason = ed25519KAT(corrupt)
	case pluton.MLDSA65:
		reason = mldsa65KAT(corrupt)
	default:
		return fmt.Errorf("keys: %w: %v", pluton.ErrUnsupportedAlgorithm, alg)
	}
	if reason != "" {
		return &SelfTestError{Algorithm: alg, Test: "known-answer", Reason: reason}
	}
	return nil
}

// katDecode decodes a hex constant of this package; they are all valid.
func katDecode(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic("keys: malformed known-answer constant: " + err.Error())
	}
	return b
}

func ecdsaKAT(alg pluton.Algorithm, curve elliptic.Curve, corrupt bool, x, ux, uy, r, s string) string {
	priv, err := ecdsa.ParseRawPrivateKey(curve, katDecode(x))
	if err != nil {
		return "private key: " + err.Error()
	}
	// The public key U = xG.
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return "public key: " + err.Error()
	}
	if !bytes.Equal(pub, append([]byte{4}, append(katDecode(ux), katDecode(uy)...)...)) {
		return "public key differs from the published one"
	}
	msg := []byte("sample")
	// A nil reader makes crypto/ecdsa sign deterministically, by RFC 6979.
	der, err := priv.Sign(nil, alg.Digest(msg), alg.Hash())
	if err != nil {
		return "sign: " + err.Error()
	}
	raw, err := pluton.ECDSASignatureToP1363(alg, der)
	if err != nil {
		return "signature encoding: " + err.Error()
	}
	if corrupt {
		raw[0] ^= 1
	}
	if !bytes.Equal(raw, append(katDecode(r), katDecode(s)...)) {
		return "signature differs from the published one"
	}
	return verifyKAT(alg, &priv.PublicKey, msg, der)
}

func ed25519KAT(corrupt bool) string {
	// RFC 8032, §7.1, TEST 1: SECRET KEY, PUBLIC KEY, MESSAGE (length 0)
	// and SIGNATURE.
	priv := ed25519.NewKeyFromSeed(katDecode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
	defer clear(priv)
	pub := priv.Public().(ed25519.PublicKey)
	if !bytes.Equal(pub, katDecode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")) {
		return "public key differs from the published one"
	}
	sig := ed25519.Sign(priv, nil)
	if corrupt {
		sig[0] ^= 1
	}
	if !bytes.Equal(sig, katDecode("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"+
		"5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")) {
		return "signature differs from the published one"
	}
	return verifyKAT(pluton.Ed25519, pub, nil, sig)
}

func mldsa65KAT(corrupt bool) string {
	// FIPS 204, Algorithm 6 (ML-DSA.KeyGen_internal) of the ACVP seed.
	var seed [mldsa65.SeedSize]byte
	copy(seed[:], katDecode(mldsa65KeyGenSeed))
	pk, _ := mldsa65.NewKeyFromSeed(&seed)
	got := pk.Bytes()
	if corrupt {
		got[0] ^= 1
	}
	if !bytes.Equal(got, katDecode(mldsa65KeyGenPK)) {
		return "public key differs from the published one"
	}
	// FIPS 204, Algorithm 3 (ML-DSA.Verify) of a published valid signature.
	var buf [mldsa65.PublicKeySize]byte
	copy(buf[:], katDecode(mldsa65VerifyPK))
	var vk mldsa65.PublicKey
	vk.Unpack(&buf)
	return verifyKAT(pluton.MLDSA65, &vk, katDecode(mldsa65VerifyMsg), katDecode(mldsa65VerifySig))
}

// verifyKAT checks that sig verifies for msg and not for another message.
func verifyKAT(alg pluton.Algorithm, pub crypto.PublicKey, msg, sig []byte) string {
	if err := pluton.Verify(pub, alg, msg, sig); err != nil {
		return "published signature refused: " + err.Error()
	}
	if err := pluton.Verify(pub, alg, append(bytes.Clone(msg), 0), sig); err == nil {
		return "signature accepted for another message"
	}
	return ""
}

// pairwiseMessage is what the pairwise-consistency test signs.
const pairwiseMessage = "rootline pairwise consistency test"

// PairwiseTest signs a fixed message with s and checks the signature with
// [pluton.Verify] under s.Public() (FIPS 140-3 IG 10.3.A, pairwise
// consistency test of a generated key pair). It returns nil or a
// *[SelfTestError] wrapping [pluton.ErrSelfTest]. The signature is
// randomized where the signer is (ECDSA, ML-DSA), from crypto/rand.
func PairwiseTest(alg pluton.Algorithm, s crypto.Signer) error {
	return pairwiseTest(alg, s, false)
}

func pairwiseTest(alg pluton.Algorithm, s crypto.Signer, corrupt bool) error {
	fail := func(reason string) error {
		return &SelfTestError{Algorithm: alg, Test: "pairwise-consistency", Reason: reason}
	}
	if s == nil {
		return fail("no signer")
	}
	msg := []byte(pairwiseMessage)
	sig, err := s.Sign(rand.Reader, alg.Digest(msg), alg.SignerOpts())
	if err != nil {
		return fail("sign: " + err.Error())
	}
	if corrupt && len(sig) > 0 {
		sig = bytes.Clone(sig)
		sig[len(sig)-1] ^= 1
	}
	if err := pluton.Verify(s.Public(), alg, msg, sig); err != nil {
		return fail(err.Error())
	}
	return nil
}
