package hsm

import (
	"crypto"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"regexp"
)

// Identity injection: the HSM side. See the package documentation,
// "Injected identity", for the procedure and why it is built as it is.

// WrappedKind says what a [Wrapped] carries.
type WrappedKind uint8

const (
	// WrappedKeyKind: a device private key, as its PKCS#8 PrivateKeyInfo.
	WrappedKeyKind WrappedKind = 1
	// WrappedSecretKind: a per-device symmetric secret.
	WrappedSecretKind WrappedKind = 2
)

// KDF names how the wrapping key is derived from the ECDH shared secret.
type KDF uint8

// KDFECDHAESECB: CKM_ECDH1_DERIVE with CKD_NULL gives Z as an AES-256 key
// (its last 32 bytes), then CKM_AES_ECB_ENCRYPT_DATA of SHA-256(info)
// under it gives the wrapping key, all inside the token.
const KDFECDHAESECB KDF = 1

// Bounds and labels of the injection formats.
const (
	maxUEID      = 64
	secretLen    = 32
	injectInfo   = "rootline/inject v1"
	secretInfo   = "rootline/inject secret v1"
	maxNameBytes = 64
)

var injectNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ChipTransport is the chip a key or secret is wrapped for: its UEID and
// its ECDH transport public key. The caller must have verified both (the
// chip's DeviceID-signed statement, checked against its DeviceID
// certificate) before asking for a wrap.
type ChipTransport struct {
	// Algorithm of the transport key: P256 or P384.
	Algorithm Algorithm
	// Public is the transport key, a SEC 1 uncompressed point.
	Public []byte
	// UEID of the chip, 1 to 64 bytes.
	UEID []byte
}

func (t *ChipTransport) validate() error {
	var c ecdh.Curve
	switch t.Algorithm {
	case P256:
		c = ecdh.P256()
	case P384:
		c = ecdh.P384()
	default:
		return fmt.Errorf("hsm: transport key algorithm %v (want p256 or p384)", t.Algorithm)
	}
	if _, err := c.NewPublicKey(t.Public); err != nil {
		return fmt.Errorf("hsm: transport key: %w", err)
	}
	if len(t.UEID) == 0 || len(t.UEID) > maxUEID {
		return fmt.Errorf("hsm: UEID of %d bytes (want 1 to %d)", len(t.UEID), maxUEID)
	}
	return nil
}

func validName(name string) error {
	if !injectNameRE.MatchString(name) {
		return fmt.Errorf("hsm: injection name %q (want 1 to %d of [a-z0-9._-])", clip(name), maxNameBytes)
	}
	return nil
}

// InjectKeyRequest asks [Module.InjectKey] for a new device key wrapped for
// one chip.
type InjectKeyRequest struct {
	// Label is the CKA_LABEL of the device key's objects on the token; no
	// object may have it already.
	Label string
	// Name is the key's name on the chip (its slot label), bound into the
	// wrapping: 1 to 64 of [a-z0-9._-].
	Name string
	// Algorithm of the device key: P256 or P384.
	Algorithm Algorithm
	// Chip is the chip it is for.
	Chip ChipTransport
	// WrapWithTrusted sets CKA_WRAP_WITH_TRUSTED on the device key, so
	// that only keys with CKA_TRUSTED can wrap it. Only for tokens where
	// the derived wrapping key can be trusted; SoftHSM2 lets only the SO
	// set CKA_TRUSTED, so a derived key never is, and the wrap fails.
	WrapWithTrusted bool
}

// WrapKeyRequest asks [Module.WrapKey] to wrap an existing device key
// again, for a retry.
type WrapKeyRequest struct {
	// Key is the URI of the device key (as [Wrapped.URI] gave it).
	Key string
	// Name and Chip as in [InjectKeyRequest].
	Name string
	Chip ChipTransport
}

// DeriveSecretRequest asks [Module.DeriveSecret] for a per-device secret.
type DeriveSecretRequest struct {
	// Master is the URI of the product master secret (an AES-256 key made
	// by [Module.CreateSecretMaster]).
	Master string
	// Name of the secret (the chip's secret slot), and its diversifier
	// with the UEID: 1 to 64 of [a-z0-9._-].
	Name string
	// Chip it is for; its UEID is the diversifier.
	Chip ChipTransport
}

// Wrapped is a key or secret wrapped for one chip: what the chip's wire
// blob carries, and, for a key, its public key and the URI of the token
// object to destroy once the chip has confirmed.
type Wrapped struct {
	Kind WrappedKind
	// Transport is the transport key's curve.
	Transport Algorithm
	KDF       KDF
	UEID      []byte
	Name      string
	// KeyAlgorithm of a device key (P256 or P384); AlgorithmUnknown for a
	// secret.
	KeyAlgorithm Algorithm
	// Ephemeral is the HSM's ephemeral ECDH public key, SEC 1 uncompressed.
	Ephemeral []byte
	// Wrapped is the RFC 5649 (CKM_AES_KEY_WRAP_PAD) ciphertext.
	Wrapped []byte
	// Public is the device key's public key, as the token reports it.
	Public crypto.PublicKey
	// URI names the device key on the token (token, object, id).
	URI *URI
}

// MissingMechanismError says which mechanism a token lacks for an
// operation (not in C_GetMechanismList, or without the needed flag in
// C_GetMechanismInfo). It matches [ErrMechanismUnsupported].
type MissingMechanismError struct {
	Op        string // "inject key"
	Mechanism uint   // CKM_ value
	Name      string // "CKM_AES_KEY_WRAP_PAD"
	Token     string
	Reason    string // "is not offered (C_GetMechanismList)", "lacks CKF_DERIVE (C_GetMechanismInfo)"
}

func (e *MissingMechanismError) Error() string {
	return fmt.Sprintf("hsm: %s: token %q: mechanism %s (0x%X) %s", e.Op, e.Token, e.Name, e.Mechanism, e.Reason)
}

// Unwrap returns [ErrMechanismUnsupported].
func (e *MissingMechanismError) Unwrap() error { return ErrMechanismUnsupported }

// transportID and keyAlgID are the one-byte ids of the wire format
// (pluton/soft: 1 = P-256, 2 = P-384 for both).
func wireID(a Algorithm) byte {
	switch a {
	case P256:
		return 1
	case P384:
		return 2
	}
	return 0
}

// kdfInfo is the fixed info of KDF 1 (pluton/soft's inject.go has the
// same definition; the chip rebuilds it from its own UEID and key):
//
//	"rootline/inject v1" || 0x00 || kdf || kind || transport || keyalg
//	|| len16(UEID) || UEID || len16(name) || name
//	|| len16(ephemeral) || ephemeral || len16(transport key) || transport key
func kdfInfo(w *Wrapped, transportPub []byte) []byte {
	var out []byte
	out = append(out, injectInfo...)
	out = append(out, 0, byte(w.KDF), byte(w.Kind), wireID(w.Transport), wireID(w.KeyAlgorithm))
	for _, f := range [][]byte{w.UEID, []byte(w.Name), w.Ephemeral, transportPub} {
		out = binary.BigEndian.AppendUint16(out, uint16(len(f)))
		out = append(out, f...)
	}
	return out
}

// secretDiversifier is what the product master encrypts (AES-256-ECB,
// CKM_AES_ECB_ENCRYPT_DATA) to give a device's secret:
//
//	SHA-256("rootline/inject secret v1" || 0x00 || len16(name) || name
//	        || len16(UEID) || UEID)
func secretDiversifier(name string, ueid []byte) [32]byte {
	var in []byte
	in = append(in, secretInfo...)
	in = append(in, 0)
	for _, f := range [][]byte{[]byte(name), ueid} {
		in = binary.BigEndian.AppendUint16(in, uint16(len(f)))
		in = append(in, f...)
	}
	return sha256.Sum256(in)
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
