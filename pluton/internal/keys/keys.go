// Package keys creates the signing keys of the security subsystem from the
// subsystem's own random bit generator, rebuilds them from the compact
// private material the subsystem stores, and runs the algorithms'
// self-tests. The emulated security processor (pluton/soft) and later
// backends use it; nothing outside the subsystem should.
//
// Private material is kept in its most compact form:
//
//   - ECDSA P-256 / P-384: the private scalar d, big-endian, 32 / 48 bytes
//     (SEC 1 v2, §2.3.6, as ecdsa.PrivateKey.Bytes returns it);
//   - Ed25519: the 32-byte private key (seed) of RFC 8032, §5.1.5;
//   - ML-DSA-65: the 32-byte seed ξ of FIPS 204, Algorithm 1, from which
//     ML-DSA.KeyGen_internal (Algorithm 6) derives the key pair.
//
// Signers returned by this package:
//
//   - ECDSA: *ecdsa.PrivateKey. Sign takes a digest (opts = alg.Hash())
//     and returns an ASN.1 DER signature. Since Go 1.26 it ignores the
//     reader it is passed (unless GODEBUG=cryptocustomrand=1) and draws its
//     nonce from the system's secure source; a nil reader gives RFC 6979
//     deterministic signatures.
//   - Ed25519: ed25519.PrivateKey, pure Ed25519, opts = crypto.Hash(0).
//   - ML-DSA-65: a signer of this package whose Public is an
//     *mldsa65.PublicKey. Sign takes the message itself and opts must be
//     crypto.Hash(0) (or nil); the signature is pure ML-DSA with an empty
//     context, hedged (FIPS 204, §3.4): a fresh rnd from crypto/rand for
//     every signature. Like ECDSA's, it ignores the reader it is passed.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/rootline/rootline/pluton"
)

// maxScalarDraws bounds the rejection sampling of an ECDSA scalar. A draw
// is refused with probability below 2^-32 (P-256) or 2^-190 (P-384), so 32
// refusals in a row mean a broken random source, not bad luck.
const maxScalarDraws = 32

// PrivateKeyError says why stored private material was refused. It wraps
// [pluton.ErrInvalidArgument] and never holds the material.
type PrivateKeyError struct {
	Algorithm pluton.Algorithm
	Reason    string
}

func (e *PrivateKeyError) Error() string {
	return fmt.Sprintf("keys: invalid %v private key: %s", e.Algorithm, e.Reason)
}

// Unwrap returns [pluton.ErrInvalidArgument].
func (e *PrivateKeyError) Unwrap() error { return pluton.ErrInvalidArgument }

// PrivateSize returns the length of the private material of alg, or 0 for
// an unknown algorithm.
func PrivateSize(alg pluton.Algorithm) int {
	switch alg {
	case pluton.ECDSAP256:
		return 32
	case pluton.ECDSAP384:
		return 48
	case pluton.Ed25519:
		return ed25519.SeedSize
	case pluton.MLDSA65:
		return mldsa65.SeedSize
	}
	return 0
}

// Generate draws a new private key of alg from rand, the subsystem's SP
// 800-90A DRBG, and returns its private material in compact form (see the
// package documentation; the caller stores it and wipes it with clear when
// done) and a [crypto.Signer] built from it.
//
// Before the first key of an algorithm, Generate runs that algorithm's
// known-answer test ([SelfTest]); after generating, a pairwise-consistency
// test ([PairwiseTest]). If either fails it returns no key and a
// *[SelfTestError] wrapping [pluton.ErrSelfTest]. A failing or exhausted
// random source yields an error wrapping [pluton.ErrEntropy].
//
// Generation is deterministic in the bytes read from rand: the same bytes
// give the same key.
//
//   - ECDSA: the scalar is drawn by rejection sampling (FIPS 186-5,
//     Appendix A.2.2) and the key built with ecdsa.ParseRawPrivateKey;
//     crypto/ecdsa's GenerateKey cannot be used, since Go 1.26 it ignores
//     the reader it is given.
//   - Ed25519: 32 bytes of rand are the private key (RFC 8032, §5.1.5).
//   - ML-DSA-65: 32 bytes of rand are the seed ξ (FIPS 204, Algorithm 1,
//     step 1), expanded by ML-DSA.KeyGen_internal (Algorithm 6).
func Generate(alg pluton.Algorithm, rand io.Reader) (priv []byte, s crypto.Signer, err error) {
	return generate(processSelfTests, alg, rand)
}

func generate(st *selfTests, alg pluton.Algorithm, rand io.Reader) ([]byte, crypto.Signer, error) {
	if !alg.Valid() {
		return nil, nil, fmt.Errorf("keys: %w: %v", pluton.ErrUnsupportedAlgorithm, alg)
	}
	if rand == nil {
		return nil, nil, fmt.Errorf("keys: %w: nil random source", pluton.ErrInvalidArgument)
	}
	if err := st.run(alg); err != nil {
		return nil, nil, err
	}
	var priv []byte
	var err error
	switch alg {
	case pluton.ECDSAP256, pluton.ECDSAP384:
		priv, err = drawScalar(alg, rand)
	default:
		priv, err = drawBytes(alg, rand, PrivateSize(alg))
	}
	if err != nil {
		return nil, nil, err
	}
	s, err := signerFromPrivate(alg, priv)
	if err != nil {
		clear(priv)
		return nil, nil, err
	}
	if err := pairwiseTest(alg, s, st.breakPCT == alg); err != nil {
		clear(priv)
		return nil, nil, err
	}
	return priv, s, nil
}

func drawBytes(alg pluton.Algorithm, rand io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand, b); err != nil {
		clear(b)
		return nil, fmt.Errorf("keys: %v key generation: random source: %w (%w)", alg, pluton.ErrEntropy, err)
	}
	return b, nil
}

// drawScalar draws an ECDSA private scalar d uniformly from [1, n-1].
//
// FIPS 186-5, Appendix A.2.2 (ECDSA Key Pair Generation by Rejection
// Sampling), with N = len(n) = 256 or 384 bits (a whole number of bytes, so
// no bits are dropped): obtain N bits from the RBG, convert them to the
// integer c big-endian (Appendix B.2.1), draw again if c > n − 2, and take
// d = c + 1. Like Go's crypto/internal/fips140/ecdsa (randomPoint, "a
// procedure equivalent to FIPS 186-5, Appendix A.2.2"), this takes d = c
// and draws again if c = 0 or c ≥ n: d is uniform on [1, n-1] either way,
// with the same chance of a redraw. The comparison is constant-time.
func drawScalar(alg pluton.Algorithm, rand io.Reader) ([]byte, error) {
	n := curveOrder(alg)
	for range maxScalarDraws {
		d, err := drawBytes(alg, rand, len(n))
		if err != nil {
			return nil, err
		}
		if scalarValid(d, n) == 1 {
			return d, nil
		}
		clear(d)
	}
	return nil, fmt.Errorf("keys: %v key generation: %w: no scalar in [1, n-1] in %d draws from the random source",
		alg, pluton.ErrEntropy, maxScalarDraws)
}

func curveFor(alg pluton.Algorithm) elliptic.Curve {
	switch alg {
	case pluton.ECDSAP256:
		return elliptic.P256()
	case pluton.ECDSAP384:
		return elliptic.P384()
	}
	return nil
}

// curveOrder returns the order n of the base point, big-endian, as wide as
// a scalar.
func curveOrder(alg pluton.Algorithm) []byte {
	return curveFor(alg).Params().N.FillBytes(make([]byte, PrivateSize(alg)))
}

// scalarValid returns 1 if 0 < d < n, in constant time; d and n have the
// same length.
func scalarValid(d, n []byte) int {
	var acc byte
	for _, b := range d {
		acc |= b
	}
	nonZero := 1 - subtle.ConstantTimeByteEq(acc, 0)
	// d < n iff d − n borrows. Each step's difference is in [−256, 255];
	// bit 8 of its two's complement is the borrow.
	var borrow int
	for i := len(d) - 1; i >= 0; i-- {
		borrow = (int(d[i]) - int(n[i]) - borrow) >> 8 & 1
	}
	return nonZero & borrow
}

// FromPrivate rebuilds the signer of stored private material (as returned
// by [Generate]). It checks the length, and for ECDSA that the scalar is in
// [1, n-1] (in constant time), returning a *[PrivateKeyError] (wrapping
// [pluton.ErrInvalidArgument]) otherwise. Before the first use of an
// algorithm it runs its known-answer test, as Generate does. priv is not
// retained.
func FromPrivate(alg pluton.Algorithm, priv []byte) (crypto.Signer, error) {
	return fromPrivate(processSelfTests, alg, priv)
}

func fromPrivate(st *selfTests, alg pluton.Algorithm, priv []byte) (crypto.Signer, error) {
	if !alg.Valid() {
		return nil, fmt.Errorf("keys: %w: %v", pluton.ErrUnsupportedAlgorithm, alg)
	}
	if err := st.run(alg); err != nil {
		return nil, err
	}
	return signerFromPrivate(alg, priv)
}

func signerFromPrivate(alg pluton.Algorithm, priv []byte) (crypto.Signer, error) {
	if want := PrivateSize(alg); len(priv) != want {
		return nil, &PrivateKeyError{Algorithm: alg, Reason: fmt.Sprintf("%d bytes, want %d", len(priv), want)}
	}
	switch alg {
	case pluton.ECDSAP256, pluton.ECDSAP384:
		if scalarValid(priv, curveOrder(alg)) != 1 {
			return nil, &PrivateKeyError{Algorithm: alg, Reason: "scalar not in [1, n-1]"}
		}
		k, err := ecdsa.ParseRawPrivateKey(curveFor(alg), priv)
		if err != nil {
			return nil, &PrivateKeyError{Algorithm: alg, Reason: err.Error()}
		}
		return k, nil
	case pluton.Ed25519:
		return ed25519.NewKeyFromSeed(priv), nil
	case pluton.MLDSA65:
		var seed [mldsa65.SeedSize]byte
		copy(seed[:], priv)
		pk, sk := mldsa65.NewKeyFromSeed(&seed)
		clear(seed[:])
		return &mldsaSigner{sk: sk, pk: pk}, nil
	}
	return nil, fmt.Errorf("keys: %w: %v", pluton.ErrUnsupportedAlgorithm, alg)
}

// mldsaSigner signs with ML-DSA-65: pure ML-DSA.Sign (FIPS 204, Algorithm
// 2) with an empty context string, hedged: the 32-byte rnd of step 5 is
// drawn fresh from the system's secure source (crypto/rand, through circl's
// SignTo with randomized = true), as FIPS 204, §3.4 recommends over the
// deterministic variant (rnd = 0) for its resistance to fault and
// side-channel attacks. circl's own (*mldsa65.PrivateKey).Sign is the
// deterministic variant and ignores its reader, so it is not exposed.
// Like Go 1.26's ecdsa, Sign ignores the reader it is passed.
type mldsaSigner struct {
	sk *mldsa65.PrivateKey
	pk *mldsa65.PublicKey
}

var _ crypto.Signer = (*mldsaSigner)(nil)

// Public returns the *mldsa65.PublicKey.
func (s *mldsaSigner) Public() crypto.PublicKey { return s.pk }

// Sign signs msg itself (not a digest); opts must be nil or have
// HashFunc() == 0 (HashML-DSA is not offered).
func (s *mldsaSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, errors.New("keys: ML-DSA-65 signs the message itself; opts must be crypto.Hash(0)")
	}
	sig := make([]byte, mldsa65.SignatureSize)
	if err := mldsa65.SignTo(s.sk, msg, nil, true, sig); err != nil {
		return nil, fmt.Errorf("keys: ML-DSA-65 sign: %w", err)
	}
	return sig, nil
}
