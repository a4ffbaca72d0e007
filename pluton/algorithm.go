package pluton

import (
	"crypto"
	"fmt"
	"strings"
)

// Algorithm names a signature algorithm supported by the subsystem.
type Algorithm uint8

const (
	// AlgorithmUnknown is the zero value; it is never valid.
	AlgorithmUnknown Algorithm = iota
	// ECDSAP256 is ECDSA over NIST P-256 with SHA-256 (FIPS 186-5).
	// Signatures are ASN.1 DER (SEC 1, ECDSA-Sig-Value).
	ECDSAP256
	// ECDSAP384 is ECDSA over NIST P-384 with SHA-384 (FIPS 186-5).
	// Signatures are ASN.1 DER.
	ECDSAP384
	// Ed25519 is pure Ed25519 (RFC 8032). Signatures are 64 bytes.
	Ed25519
	// MLDSA65 is ML-DSA-65 (FIPS 204), pure mode, empty context string.
	// Signatures are 3309 bytes.
	MLDSA65
)

// Algorithms lists every supported algorithm, in a stable order.
func Algorithms() []Algorithm { return []Algorithm{ECDSAP256, ECDSAP384, Ed25519, MLDSA65} }

var algNames = map[Algorithm]string{
	ECDSAP256: "p256",
	ECDSAP384: "p384",
	Ed25519:   "ed25519",
	MLDSA65:   "mldsa65",
}

// String returns the short name used on command lines and in files:
// "p256", "p384", "ed25519" or "mldsa65".
func (a Algorithm) String() string {
	if n, ok := algNames[a]; ok {
		return n
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// Valid reports whether a is a supported algorithm.
func (a Algorithm) Valid() bool { _, ok := algNames[a]; return ok }

// ParseAlgorithm parses a name as printed by [Algorithm.String]. It also
// accepts the common aliases "ecdsa-p256", "es256", "ecdsa-p384", "es384",
// "eddsa" and "ml-dsa-65".
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "p256", "p-256", "ecdsa-p256", "es256":
		return ECDSAP256, nil
	case "p384", "p-384", "ecdsa-p384", "es384":
		return ECDSAP384, nil
	case "ed25519", "eddsa":
		return Ed25519, nil
	case "mldsa65", "ml-dsa-65", "mldsa-65":
		return MLDSA65, nil
	}
	return AlgorithmUnknown, fmt.Errorf("%w: %q (want p256, p384, ed25519 or mldsa65)", ErrUnsupportedAlgorithm, s)
}

// Hash returns the hash function the algorithm signs with: the message is
// hashed with it and the digest is what [crypto.Signer.Sign] takes. It
// returns 0 for Ed25519 and ML-DSA-65, which sign the message itself.
func (a Algorithm) Hash() crypto.Hash {
	switch a {
	case ECDSAP256:
		return crypto.SHA256
	case ECDSAP384:
		return crypto.SHA384
	}
	return 0
}

// SignerOpts returns the options to pass to a [crypto.Signer] of this
// algorithm.
func (a Algorithm) SignerOpts() crypto.SignerOpts { return a.Hash() }

// Digest prepares msg for [crypto.Signer.Sign]: the hash of msg for ECDSA,
// msg itself for Ed25519 and ML-DSA-65.
func (a Algorithm) Digest(msg []byte) []byte {
	h := a.Hash()
	if h == 0 {
		return msg
	}
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}
