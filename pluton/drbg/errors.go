package drbg

import (
	"errors"

	"github.com/rootline/rootline/pluton"
)

// Errors of the DRBG mechanisms. Malformed inputs (wrong length, request too
// large, unsupported parameters) are reported by errors that wrap
// [pluton.ErrInvalidArgument]; entropy failures by errors that wrap
// [pluton.ErrEntropy] (see [HealthError]); a failed self-test by errors that
// wrap [pluton.ErrSelfTest].
var (
	// ErrReseedRequired is the "reseed required" status of SP 800-90A
	// 9.3.1: the DRBG has served reseed_interval Generate requests since it
	// was last seeded and must be reseeded before the next one.
	ErrReseedRequired = errors.New("drbg: reseed required")
	// ErrUninstantiated: the DRBG is the zero value or was uninstantiated
	// (SP 800-90A 9.4).
	ErrUninstantiated = errors.New("drbg: DRBG not instantiated")
)

// HealthError reports that an entropy source failed: one of the continuous
// health tests of SP 800-90B 4.4 fired on its samples, or the underlying
// noise source could not be read. A [HealthTestedSource] that returned a
// HealthError stays in the error state for good, and so does a [Live] DRBG
// fed by it.
//
// HealthError wraps [pluton.ErrEntropy] and, for "source read", the read error.
type HealthError struct {
	// Test is "repetition count" (SP 800-90B 4.4.1), "adaptive proportion"
	// (4.4.2) or "source read".
	Test string
	// Startup is set if the failure happened during the start-up tests
	// (SP 800-90B 4.3), before the source produced any output.
	Startup bool
	// Err is the error of the noise source, for "source read"; nil otherwise.
	Err error
}

func (e *HealthError) Error() string {
	msg := "drbg: entropy source failed"
	switch e.Test {
	case "repetition count":
		msg += " the repetition count test (SP 800-90B 4.4.1)"
	case "adaptive proportion":
		msg += " the adaptive proportion test (SP 800-90B 4.4.2)"
	default:
		msg += ": " + e.Test
	}
	if e.Startup {
		msg += " during start-up"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns [pluton.ErrEntropy] and, if set, Err.
func (e *HealthError) Unwrap() []error {
	if e.Err != nil {
		return []error{pluton.ErrEntropy, e.Err}
	}
	return []error{pluton.ErrEntropy}
}
