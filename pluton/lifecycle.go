package pluton

import (
	"fmt"
	"strings"
)

// Lifecycle is the chip's one-way lifecycle state, held in fuses.
type Lifecycle uint8

const (
	// Blank: nothing fused. Only fusing the identity is allowed.
	Blank Lifecycle = iota
	// Manufacturing: UDS and UEID fused; the factory may fuse the root key
	// hash, generate keys and install the factory identity.
	Manufacturing
	// Provisioned: the factory identity (IDevID chain) is installed.
	Provisioned
	// Locked: provisioned and closed for debug and factory operations.
	Locked
	// RMA: returned for analysis; keys of the device's owner are unusable.
	RMA
	// Decommissioned: end of life. No key can be used again.
	Decommissioned
)

var lifecycleNames = [...]string{"blank", "manufacturing", "provisioned", "locked", "rma", "decommissioned"}

func (l Lifecycle) String() string {
	if int(l) < len(lifecycleNames) {
		return lifecycleNames[l]
	}
	return fmt.Sprintf("Lifecycle(%d)", uint8(l))
}

// Valid reports whether l is a defined state.
func (l Lifecycle) Valid() bool { return int(l) < len(lifecycleNames) }

// ParseLifecycle parses a name as printed by [Lifecycle.String].
func ParseLifecycle(s string) (Lifecycle, error) {
	for i, n := range lifecycleNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Lifecycle(i), nil
		}
	}
	return Blank, fmt.Errorf("%w: unknown lifecycle state %q", ErrInvalidArgument, s)
}

// CanTransition reports whether the fuses allow moving from l to next.
// Every move is forward and final:
//
//	Blank → Manufacturing → Provisioned → Locked → RMA → Decommissioned
//	                                    ↘ RMA ↗     ↘ Decommissioned
//	Manufacturing → Decommissioned (a chip scrapped on the line)
func (l Lifecycle) CanTransition(next Lifecycle) bool {
	switch l {
	case Blank:
		return next == Manufacturing
	case Manufacturing:
		return next == Provisioned || next == Decommissioned
	case Provisioned:
		return next == Locked || next == RMA || next == Decommissioned
	case Locked:
		return next == RMA || next == Decommissioned
	case RMA:
		return next == Decommissioned
	}
	return false
}

// KeysUsable reports whether keys can be generated and used in state l.
func (l Lifecycle) KeysUsable() bool {
	return l == Manufacturing || l == Provisioned || l == Locked
}
