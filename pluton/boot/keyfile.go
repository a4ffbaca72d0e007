package boot

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/keys"
)

// Key files of the signing tool.
//
//   - Private keys: PEM "PRIVATE KEY", an unencrypted PKCS#8
//     OneAsymmetricKey (RFC 5958). ECDSA (RFC 5915 inside PKCS#8) and
//     Ed25519 (RFC 8410, §7) through crypto/x509; ML-DSA-65 as RFC 9881,
//     §6: algorithm id-ml-dsa-65 (2.16.840.1.101.3.4.3.18), parameters
//     absent, and privateKey holding the ML-DSA-65-PrivateKey CHOICE in
//     its seed form, "seed [0] IMPLICIT OCTET STRING (SIZE (32))": the 32
//     bytes ξ of FIPS 204, Algorithm 1. Reading also accepts the "both"
//     form (seed and expanded key, as OpenSSL 3.5 writes by default) after
//     checking that the expanded key is the one the seed gives; the
//     "expandedKey"-only form is refused, since the seed cannot be
//     recovered from it.
//   - Public keys: PEM "PUBLIC KEY", a DER SubjectPublicKeyInfo as
//     [pluton.MarshalPublicKey] writes it.
//
// Private key files hold secrets: write them mode 0600.

const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
	keyIDSize  = sha256.Size
)

// DER prefixes of the two ML-DSA-65 private key forms this package reads
// (RFC 9881, §6 and Appendix C): OneAsymmetricKey { version 0,
// AlgorithmIdentifier { id-ml-dsa-65 }, privateKey OCTET STRING { … } }.
var (
	// … { [0] IMPLICIT OCTET STRING (32 bytes) }: 52 bytes in all.
	mldsaSeedPrefix = []byte{
		0x30, 0x34, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12,
		0x04, 0x22, 0x80, 0x20,
	}
	// … { SEQUENCE { OCTET STRING (32), OCTET STRING (4032) } }: 4098
	// bytes in all.
	mldsaBothPrefix = []byte{
		0x30, 0x82, 0x0f, 0xfe, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12,
		0x04, 0x82, 0x0f, 0xea, 0x30, 0x82, 0x0f, 0xe6, 0x04, 0x20,
	}
	mldsaBothExpanded = []byte{0x04, 0x82, 0x0f, 0xc0}
	// The AlgorithmIdentifier of ML-DSA-65, to recognize other forms.
	mldsaAlgID = []byte{0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12}
)

// KeyID returns the identifier of a signing key in manifests and trust
// policies: the SHA-256 of its DER SubjectPublicKeyInfo
// ([pluton.MarshalPublicKey]), 32 bytes.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	return RootKeyHash(pub, crypto.SHA256)
}

// RootKeyHash returns the value to fuse into a chip as its root key hash:
// the SHA-256 (32 bytes) or SHA-384 (48 bytes) of the root key's DER
// SubjectPublicKeyInfo.
func RootKeyHash(pub crypto.PublicKey, h crypto.Hash) ([]byte, error) {
	if h != crypto.SHA256 && h != crypto.SHA384 {
		return nil, fmt.Errorf("boot: root key hash with %v (want SHA-256 or SHA-384)", h)
	}
	der, err := pluton.MarshalPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	d := h.New()
	d.Write(der)
	return d.Sum(nil), nil
}

// GenerateKey draws a new signing key of alg from rand (through
// pluton/internal/keys, with its self-tests) and returns its private key
// file (PEM, PKCS#8) and its public key. The caller should write the file
// with mode 0600 and then clear the returned slice.
func GenerateKey(rand io.Reader, alg pluton.Algorithm) (privatePEM []byte, pub crypto.PublicKey, err error) {
	priv, s, err := keys.Generate(alg, rand)
	if err != nil {
		return nil, nil, fmt.Errorf("boot: %w", err)
	}
	defer clear(priv)
	var der []byte
	switch alg {
	case pluton.MLDSA65:
		der = append(bytes.Clone(mldsaSeedPrefix), priv...)
	default:
		// *ecdsa.PrivateKey or ed25519.PrivateKey.
		if der, err = x509.MarshalPKCS8PrivateKey(s); err != nil {
			return nil, nil, fmt.Errorf("boot: encoding %v private key: %w", alg, err)
		}
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), s.Public(), nil
}

// ParsePrivateKeyPEM reads a private key file (see the file comment) and
// returns its signer, rebuilt through pluton/internal/keys (which runs the
// algorithm's known-answer self-test before first use). Encrypted PEM,
// other PEM types, trailing data and other algorithms or curves are
// refused. The caller should clear b when done.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, pluton.Algorithm, error) {
	der, err := decodePEM(b, pemPrivate)
	if err != nil {
		return nil, pluton.AlgorithmUnknown, err
	}
	defer clear(der)
	var alg pluton.Algorithm
	var priv []byte
	switch {
	case len(der) == len(mldsaSeedPrefix)+mldsa65.SeedSize && bytes.HasPrefix(der, mldsaSeedPrefix):
		alg, priv = pluton.MLDSA65, bytes.Clone(der[len(mldsaSeedPrefix):])
	case len(der) == len(mldsaBothPrefix)+mldsa65.SeedSize+len(mldsaBothExpanded)+mldsa65.PrivateKeySize &&
		bytes.HasPrefix(der, mldsaBothPrefix) &&
		bytes.Equal(der[len(mldsaBothPrefix)+mldsa65.SeedSize:][:len(mldsaBothExpanded)], mldsaBothExpanded):
		seed := der[len(mldsaBothPrefix):][:mldsa65.SeedSize]
		expanded := der[len(der)-mldsa65.PrivateKeySize:]
		// RFC 9881, §8: check that the expanded key is the seed's.
		var s [mldsa65.SeedSize]byte
		copy(s[:], seed)
		_, sk := mldsa65.NewKeyFromSeed(&s)
		clear(s[:])
		want, _ := sk.MarshalBinary()
		ok := subtle.ConstantTimeCompare(want, expanded) == 1
		clear(want)
		if !ok {
			return nil, pluton.AlgorithmUnknown, errors.New("boot: ML-DSA-65 private key: the expanded key does not match the seed")
		}
		alg, priv = pluton.MLDSA65, bytes.Clone(seed)
	case bytes.Contains(der[:min(len(der), 32)], mldsaAlgID):
		return nil, pluton.AlgorithmUnknown, errors.New("boot: ML-DSA-65 private key in a form other than the seed or both forms of RFC 9881 (the seed is required)")
	default:
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, pluton.AlgorithmUnknown, fmt.Errorf("boot: private key: %w", err)
		}
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			switch k.Curve {
			case elliptic.P256():
				alg = pluton.ECDSAP256
			case elliptic.P384():
				alg = pluton.ECDSAP384
			default:
				return nil, pluton.AlgorithmUnknown, fmt.Errorf("boot: %w: ECDSA curve %s", pluton.ErrUnsupportedAlgorithm, k.Curve.Params().Name)
			}
			if priv, err = k.Bytes(); err != nil {
				return nil, pluton.AlgorithmUnknown, fmt.Errorf("boot: private key: %w", err)
			}
		case ed25519.PrivateKey:
			alg, priv = pluton.Ed25519, bytes.Clone(k.Seed())
		default:
			return nil, pluton.AlgorithmUnknown, fmt.Errorf("boot: %w: private key of type %T", pluton.ErrUnsupportedAlgorithm, k)
		}
	}
	defer clear(priv)
	s, err := keys.FromPrivate(alg, priv)
	if err != nil {
		return nil, pluton.AlgorithmUnknown, fmt.Errorf("boot: %w", err)
	}
	return s, alg, nil
}

// MarshalPublicKeyPEM encodes a public key as a PEM "PUBLIC KEY" file.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := pluton.MarshalPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// ParsePublicKeyPEM reads a PEM "PUBLIC KEY" file, strictly
// ([pluton.ParsePublicKey]).
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, pluton.Algorithm, error) {
	der, err := decodePEM(b, pemPublic)
	if err != nil {
		return nil, pluton.AlgorithmUnknown, err
	}
	pub, alg, err := pluton.ParsePublicKey(der)
	if err != nil {
		return nil, pluton.AlgorithmUnknown, fmt.Errorf("boot: %w", err)
	}
	return pub, alg, nil
}

func decodePEM(b []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(b)
	switch {
	case block == nil:
		return nil, fmt.Errorf("boot: no PEM %q block", typ)
	case block.Type != typ:
		return nil, fmt.Errorf("boot: PEM block %q, want %q", block.Type, typ)
	case len(block.Headers) != 0:
		return nil, fmt.Errorf("boot: PEM %q with headers (encrypted keys are not supported)", typ)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, fmt.Errorf("boot: data after the PEM %q block", typ)
	}
	return block.Bytes, nil
}
