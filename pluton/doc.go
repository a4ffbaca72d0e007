// Package pluton is the API of rootline's security subsystem: the small
// trusted computing base that a connected device's firmware talks to.
//
// A [Subsystem] holds the chip's fused secrets (the unique device secret,
// UDS), its key slots, monotonic counters and lifecycle state, and offers a
// handful of operations on them. No operation returns private key material:
// keys are generated inside the subsystem (or derived there from the UDS
// through DICE, see package pluton/dice) and used by handle, through a
// [crypto.Signer] whose Sign call is carried out by the subsystem.
//
// Key slots and counters belong to a [Compartment]: the security monitor,
// the operating system, or an application by name. A compartment cannot use
// another compartment's key or counter; trying fails with [ErrCompartment].
// On silicon the compartment of a request is the identity of the core or
// mailbox it arrived on and cannot be chosen by software; an emulation
// (package pluton/soft) takes it as an argument and enforces the same
// boundary.
//
// The lifecycle is one-way: Blank → Manufacturing (UDS fused) → Provisioned
// (factory identity installed) → Locked, RMA or Decommissioned. See
// [Lifecycle.CanTransition].
//
// [Verify] is the single entry point for checking a signature made by any
// supported [Algorithm]; secure boot, the factory service and the verifier
// all use it. It passes the Wycheproof vectors for every algorithm.
//
// Backends: pluton/soft (a software emulation of the security processor,
// state in one file) and, later, pluton/tpm (a TPM 2.0 through go-tpm).
package pluton
