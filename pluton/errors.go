package pluton

import (
	"errors"
	"fmt"
)

// Errors returned by every Subsystem backend. Backends wrap them with
// context; callers test with errors.Is.
var (
	// ErrWrongLifecycle: the operation is not allowed in the chip's current
	// lifecycle state, or the requested transition is not one-way forward.
	ErrWrongLifecycle = errors.New("pluton: operation not allowed in this lifecycle state")
	// ErrNoSuchKey: no key slot has this handle.
	ErrNoSuchKey = errors.New("pluton: no such key")
	// ErrNoSuchCounter: no counter has this name.
	ErrNoSuchCounter = errors.New("pluton: no such counter")
	// ErrCompartment: the key or counter belongs to another compartment.
	ErrCompartment = errors.New("pluton: key or counter belongs to another compartment")
	// ErrFuseWritten: a write-once fuse has already been written.
	ErrFuseWritten = errors.New("pluton: fuse already written")
	// ErrFuseNotWritten: the operation needs a fuse that is still blank.
	ErrFuseNotWritten = errors.New("pluton: fuse not written")
	// ErrUnsupportedAlgorithm: the algorithm is unknown to this subsystem.
	ErrUnsupportedAlgorithm = errors.New("pluton: unsupported algorithm")
	// ErrUsage: the key's usage does not allow the operation.
	ErrUsage = errors.New("pluton: key usage does not allow this operation")
	// ErrInvalidSignature: a signature did not verify.
	ErrInvalidSignature = errors.New("pluton: invalid signature")
	// ErrInvalidKey: a public key is malformed or of the wrong type.
	ErrInvalidKey = errors.New("pluton: invalid public key")
	// ErrCounterBackward: a counter would move backwards.
	ErrCounterBackward = errors.New("pluton: counter can only move forward")
	// ErrCounterExhausted: a counter reached its maximum value.
	ErrCounterExhausted = errors.New("pluton: counter exhausted")
	// ErrSlotsFull: every key slot (or counter fuse) is in use.
	ErrSlotsFull = errors.New("pluton: no free slot")
	// ErrInvalidArgument: a request is malformed (bad name, wrong length…).
	ErrInvalidArgument = errors.New("pluton: invalid argument")
	// ErrSelfTest: a known-answer or pairwise-consistency self-test failed.
	// The subsystem refuses to use the algorithm (or the entropy source)
	// from then on.
	ErrSelfTest = errors.New("pluton: self-test failed")
	// ErrEntropy: the entropy source failed its health tests.
	ErrEntropy = errors.New("pluton: entropy source failure")
	// ErrClosed: the subsystem was closed.
	ErrClosed = errors.New("pluton: subsystem closed")
)

// LifecycleError says which transition or state was refused. It wraps
// [ErrWrongLifecycle].
type LifecycleError struct {
	Op      string    // the operation that was refused
	Current Lifecycle // the chip's state
	Want    Lifecycle // the requested target state, or Blank if none
}

func (e *LifecycleError) Error() string {
	if e.Want != Blank {
		return fmt.Sprintf("pluton: %s: cannot move from lifecycle %s to %s", e.Op, e.Current, e.Want)
	}
	return fmt.Sprintf("pluton: %s: not allowed in lifecycle %s", e.Op, e.Current)
}

// Unwrap returns [ErrWrongLifecycle].
func (e *LifecycleError) Unwrap() error { return ErrWrongLifecycle }

// CompartmentError says which compartment asked for whose key or counter.
// It wraps [ErrCompartment].
type CompartmentError struct {
	Caller Compartment // the compartment that made the request
	Owner  Compartment // the compartment that owns the object
	Object string      // "key 7", "counter svn/os"
}

func (e *CompartmentError) Error() string {
	return fmt.Sprintf("pluton: compartment %q may not use %s (owned by %q)", e.Caller, e.Object, e.Owner)
}

// Unwrap returns [ErrCompartment].
func (e *CompartmentError) Unwrap() error { return ErrCompartment }
