package dice

import (
	"crypto/hkdf"
	"crypto/sha512"
	"fmt"

	"github.com/rootline/rootline/pluton"
)

// Sizes fixed by the Open Profile for DICE.
const (
	// CDISize is the size of a CDI, and of the UDS this package accepts in
	// its place ("CDI Values": each CDI value is 32 bytes).
	CDISize = 32
	// HashSize is the size of the code, configuration, authority and hidden
	// input values ("Input Values"), and of H = SHA-512.
	HashSize = sha512.Size
	// SeedSize is the size of ASYM_KDF's output, the seed of a CDI's key
	// pair ("Asymmetric Key Pair Derivation": KDF(32, input, ASYM_SALT,
	// "Key Pair")).
	SeedSize = 32
	// IDSize is the size of a DICE identifier ("Deriving Identifiers").
	IDSize = 20
)

// Layout of the buffer hashed into the CDI_Attest salt. Open Profile for
// DICE, "Attestation CDI": "the input values are hashed in this order: code,
// config, authority, mode, hidden". open-dice (src/dice.c, DiceMainFlow)
// hashes the same buffer from the authority offset for CDI_Seal.
const (
	codeOffset      = 0
	configOffset    = codeOffset + HashSize
	authorityOffset = configOffset + HashSize
	modeOffset      = authorityOffset + HashSize
	hiddenOffset    = modeOffset + 1
	inputSize       = hiddenOffset + HashSize // 257 bytes
)

// KDF info strings ("Attestation CDI", "Sealing CDI").
const (
	infoAttest = "CDI_Attest"
	infoSeal   = "CDI_Seal"
)

// ConfigType says which of [InputValues.ConfigValue] and
// [InputValues.ConfigDescriptor] makes the configuration input. The values
// are open-dice's DiceConfigType.
type ConfigType int

const (
	// ConfigInline: the 64-byte ConfigValue is the configuration input
	// (kDiceConfigTypeInline).
	ConfigInline ConfigType = 0
	// ConfigDescriptor: the configuration input is SHA-512 of
	// ConfigDescriptor, and the descriptor goes into the certificate
	// (kDiceConfigTypeDescriptor).
	ConfigDescriptor ConfigType = 1
)

// String returns "inline" or "descriptor".
func (c ConfigType) String() string {
	switch c {
	case ConfigInline:
		return "inline"
	case ConfigDescriptor:
		return "descriptor"
	}
	return fmt.Sprintf("ConfigType(%d)", int(c))
}

// Mode is the one-byte mode decision input (Open Profile for DICE, "Mode
// Value Details").
type Mode uint8

const (
	// ModeNotInitialized: at least one security mechanism is not
	// configured; also the catch-all ("Not Configured", 0).
	ModeNotInitialized Mode = 0
	// ModeNormal: the device runs normally under a secure configuration
	// (1).
	ModeNormal Mode = 1
	// ModeDebug: at least one criterion of ModeNormal is not met (2).
	ModeDebug Mode = 2
	// ModeMaintenance: a recovery or maintenance boot (3). The
	// specification calls it "Recovery", open-dice kDiceModeMaintenance.
	ModeMaintenance Mode = 3
)

// String returns the mode's name, or "Mode(n)" for a value the
// specification does not define.
func (m Mode) String() string {
	switch m {
	case ModeNotInitialized:
		return "not-initialized"
	case ModeNormal:
		return "normal"
	case ModeDebug:
		return "debug"
	case ModeMaintenance:
		return "maintenance"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// InputValues are the measurements of the next layer (Open Profile for
// DICE, "Input Values"), as open-dice's DiceInputValues holds them.
//
// Only CodeHash, the configuration input, AuthorityHash, Mode and Hidden
// enter the CDIs. CodeDescriptor and AuthorityDescriptor (and
// ConfigDescriptor, besides its hash) are for the certificate only; Derive
// ignores them.
type InputValues struct {
	// CodeHash is the code input: a hash of the next layer's code.
	CodeHash [HashSize]byte
	// CodeDescriptor optionally describes the code; certificate only.
	CodeDescriptor []byte
	// ConfigType selects ConfigValue or ConfigDescriptor.
	ConfigType ConfigType
	// ConfigValue is the configuration input when ConfigType is
	// ConfigInline; ignored otherwise.
	ConfigValue [HashSize]byte
	// ConfigDescriptor is hashed with SHA-512 into the configuration input
	// when ConfigType is ConfigDescriptor; ignored otherwise. It must be
	// non-nil then (open-dice refuses a NULL descriptor); an empty non-nil
	// slice is hashed like any other.
	ConfigDescriptor []byte
	// AuthorityHash is the authority input: a hash of the verified-boot
	// authority, or zeros if there is none.
	AuthorityHash [HashSize]byte
	// AuthorityDescriptor optionally describes the authority; certificate
	// only.
	AuthorityDescriptor []byte
	// Mode is the mode decision. Any byte is hashed as is, as open-dice
	// does; the specification asks verifiers to read an undefined value as
	// ModeNotInitialized.
	Mode Mode
	// Hidden is the hidden input: it enters both CDIs but no certificate.
	// Zeros if unused.
	Hidden [HashSize]byte
}

// Derive computes the next layer's CDI_Attest and CDI_Seal from the current
// ones and the next layer's input values (Open Profile for DICE, "Computing
// CDI Values" and "Computing Layered CDI Values"). For the first layer,
// pass the UDS as both attest and seal.
//
// attest and seal must be [CDISize] bytes; in must not be nil and its
// ConfigType must be ConfigInline or ConfigDescriptor. Otherwise Derive
// returns an error wrapping [pluton.ErrInvalidArgument]. The results are
// fresh [CDISize]-byte slices; the caller wipes them (and the current CDIs)
// when done, as "Protecting Layered CDI Values" requires.
func Derive(attest, seal []byte, in *InputValues) (nextAttest, nextSeal []byte, err error) {
	if len(attest) != CDISize {
		return nil, nil, fmt.Errorf("dice: current CDI_Attest is %d bytes, want %d: %w", len(attest), CDISize, pluton.ErrInvalidArgument)
	}
	if len(seal) != CDISize {
		return nil, nil, fmt.Errorf("dice: current CDI_Seal is %d bytes, want %d: %w", len(seal), CDISize, pluton.ErrInvalidArgument)
	}
	if in == nil {
		return nil, nil, fmt.Errorf("dice: nil input values: %w", pluton.ErrInvalidArgument)
	}

	// Assemble code || config || authority || mode || hidden ("Attestation
	// CDI"), as open-dice's DiceMainFlow does. The hidden input makes the
	// buffer secret: wipe it on the way out.
	var buf [inputSize]byte
	defer clear(buf[:])
	copy(buf[codeOffset:], in.CodeHash[:])
	switch in.ConfigType {
	case ConfigInline:
		copy(buf[configOffset:], in.ConfigValue[:])
	case ConfigDescriptor:
		if in.ConfigDescriptor == nil {
			return nil, nil, fmt.Errorf("dice: config type is descriptor but ConfigDescriptor is nil: %w", pluton.ErrInvalidArgument)
		}
		// "Input Values", 2: the configuration input may be a hash of the
		// configuration data; open-dice uses H(config_descriptor).
		h := sha512.Sum512(in.ConfigDescriptor)
		copy(buf[configOffset:], h[:])
	default:
		return nil, nil, fmt.Errorf("dice: unknown config type %d: %w", int(in.ConfigType), pluton.ErrInvalidArgument)
	}
	copy(buf[authorityOffset:], in.AuthorityHash[:])
	buf[modeOffset] = byte(in.Mode)
	copy(buf[hiddenOffset:], in.Hidden[:])

	// "Attestation CDI": H(code + config + authority + mode + hidden).
	attestSalt := sha512.Sum512(buf[:])
	defer clear(attestSalt[:])
	// "Sealing CDI": H(authority + mode + hidden), the tail of the buffer.
	sealSalt := sha512.Sum512(buf[authorityOffset:])
	defer clear(sealSalt[:])

	// CDI_Attest = KDF(32, CDI_Attest_current, attestSalt, "CDI_Attest"),
	// with KDF = HKDF-SHA-512 ("Key Derivation Functions": the KDF inputs
	// map exactly to the HKDF parameters, ikm, salt and info). HKDF's
	// pseudorandom key lives inside crypto/hkdf and cannot be wiped here.
	nextAttest, err = hkdf.Key(sha512.New, attest, attestSalt[:], infoAttest, CDISize)
	if err != nil {
		return nil, nil, fmt.Errorf("dice: deriving CDI_Attest: %w", err)
	}
	// CDI_Seal = KDF(32, CDI_Seal_current, sealSalt, "CDI_Seal").
	nextSeal, err = hkdf.Key(sha512.New, seal, sealSalt[:], infoSeal, CDISize)
	if err != nil {
		clear(nextAttest)
		return nil, nil, fmt.Errorf("dice: deriving CDI_Seal: %w", err)
	}
	return nextAttest, nextSeal, nil
}
