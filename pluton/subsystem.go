package pluton

import (
	"context"
	"crypto"
	"fmt"
)

// KeyHandle names a key slot. Handles are assigned by the subsystem and are
// never reused while the chip lives.
type KeyHandle uint32

// DeviceIDHandle is the reserved handle of the DICE DeviceID key, owned by
// [SecurityMonitor]. It exists from the moment the UDS is fused.
const DeviceIDHandle KeyHandle = 1

func (h KeyHandle) String() string { return fmt.Sprintf("key %d", uint32(h)) }

// Usage says what a key may sign. A key has exactly one usage.
type Usage uint8

const (
	// UsageSign: general-purpose signing on behalf of its compartment.
	UsageSign Usage = iota + 1
	// UsageAttest: attestation evidence and certificate requests only.
	UsageAttest
)

func (u Usage) String() string {
	switch u {
	case UsageSign:
		return "sign"
	case UsageAttest:
		return "attest"
	}
	return fmt.Sprintf("Usage(%d)", uint8(u))
}

// Valid reports whether u is a defined usage.
func (u Usage) Valid() bool { return u == UsageSign || u == UsageAttest }

// ParseUsage parses "sign" or "attest".
func ParseUsage(s string) (Usage, error) {
	switch s {
	case "sign":
		return UsageSign, nil
	case "attest":
		return UsageAttest, nil
	}
	return 0, fmt.Errorf("%w: usage %q (want sign or attest)", ErrInvalidArgument, s)
}

// KeyRequest asks for a new key generated inside the subsystem.
type KeyRequest struct {
	Compartment Compartment // owner of the new key slot
	Algorithm   Algorithm
	Usage       Usage
	Label       string // optional, at most 64 bytes, for humans
}

// Validate checks the request without touching the subsystem.
func (r *KeyRequest) Validate() error {
	if r == nil {
		return fmt.Errorf("%w: nil key request", ErrInvalidArgument)
	}
	if err := r.Compartment.Validate(); err != nil {
		return err
	}
	if !r.Algorithm.Valid() {
		return fmt.Errorf("%w: %v", ErrUnsupportedAlgorithm, r.Algorithm)
	}
	if !r.Usage.Valid() {
		return fmt.Errorf("%w: usage %v", ErrInvalidArgument, r.Usage)
	}
	if len(r.Label) > 64 {
		return fmt.Errorf("%w: label longer than 64 bytes", ErrInvalidArgument)
	}
	return nil
}

// KeyInfo describes a key slot. It never holds private material.
type KeyInfo struct {
	Handle      KeyHandle
	Compartment Compartment
	Algorithm   Algorithm
	Usage       Usage
	Label       string
	Public      crypto.PublicKey // *ecdsa.PublicKey, ed25519.PublicKey or *mldsa65.PublicKey
}

// Identity is the chip's fused identity: its UEID and DICE DeviceID key.
type Identity struct {
	// UEID is the Universal Entity ID (RFC 9711 §4.2.1): a type byte
	// (0x01, RAND) followed by 16 random bytes drawn when the chip was
	// fused.
	UEID []byte
	// Algorithm of the DeviceID key.
	Algorithm Algorithm
	// DeviceID is the public half of the DICE DeviceID key, derived from
	// the UDS (Open Profile for DICE, ASYM_KDF of CDI_Attest of layer 0's
	// input). It is the same after every restart.
	DeviceID crypto.PublicKey
}

// Subsystem is the whole interface of the security subsystem. Every method
// is safe for concurrent use. Methods that take a Compartment act on behalf
// of that compartment and fail with an error wrapping [ErrCompartment] when
// the object belongs to another one.
//
// Implementations: pluton/soft (emulated), pluton/tpm (TPM 2.0).
type Subsystem interface {
	// Random fills p with output of the subsystem's DRBG (NIST SP 800-90A),
	// seeded from a health-tested entropy source (SP 800-90B).
	Random(ctx context.Context, p []byte) error

	// FuseIdentity draws the UDS and the UEID from the entropy source and
	// burns them into fuses, moving the chip from Blank to Manufacturing.
	// A second call fails with ErrFuseWritten.
	FuseIdentity(ctx context.Context) error
	// FuseRootKeyHash burns the hash of the product's root image-signing
	// key (the boot ROM's trust anchor). Write-once: ErrFuseWritten.
	FuseRootKeyHash(ctx context.Context, hash []byte) error
	// RootKeyHash returns the fused root key hash, or ErrFuseNotWritten.
	RootKeyHash(ctx context.Context) ([]byte, error)

	// Identity returns the UEID and the DICE DeviceID public key.
	Identity(ctx context.Context) (*Identity, error)

	// Lifecycle returns the current lifecycle state.
	Lifecycle(ctx context.Context) (Lifecycle, error)
	// Transition moves the lifecycle forward; see Lifecycle.CanTransition.
	// It fails with a *LifecycleError for any other move.
	Transition(ctx context.Context, to Lifecycle) error

	// GenerateKey creates a key in a free slot of req.Compartment. The key
	// passes a pairwise-consistency test before the handle is returned.
	GenerateKey(ctx context.Context, req *KeyRequest) (*KeyInfo, error)
	// Key describes a key slot.
	Key(ctx context.Context, c Compartment, h KeyHandle) (*KeyInfo, error)
	// Keys lists the key slots of compartment c.
	Keys(ctx context.Context, c Compartment) ([]*KeyInfo, error)
	// Signer returns a crypto.Signer for the key; its Sign runs inside the
	// subsystem (it checks compartment, usage and lifecycle on every call).
	// ctx bounds the lookup only: crypto.Signer has no context.
	Signer(ctx context.Context, c Compartment, h KeyHandle) (crypto.Signer, error)
	// DestroyKey erases the key slot. The DeviceID key cannot be destroyed.
	DestroyKey(ctx context.Context, c Compartment, h KeyHandle) error

	// Counter reads a monotonic counter of compartment c.
	Counter(ctx context.Context, c Compartment, name string) (uint64, error)
	// IncrementCounter adds one to the counter (creating it at 0 first if
	// it does not exist yet) and returns the new value.
	IncrementCounter(ctx context.Context, c Compartment, name string) (uint64, error)
	// AdvanceCounter raises the counter to value (creating it if needed).
	// A value below the current one fails with ErrCounterBackward; equal is
	// a no-op. Anti-rollback uses it to store a confirmed image's SVN.
	AdvanceCounter(ctx context.Context, c Compartment, name string, value uint64) error

	// Close releases the subsystem. Further calls fail with ErrClosed.
	Close() error
}
