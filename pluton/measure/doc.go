// Package measure implements rootline's measured boot: extend-only
// measurement registers with the semantics of TPM 2.0 PCRs, and the event
// log of every extend in the crypto-agile format of the TCG PC Client
// Platform Firmware Profile (PFP, version 1.05 and 1.06), which standard
// tools such as tpm2_eventlog read.
//
// # Registers
//
// [New] makes [NumRegisters] (24) registers in each bank, SHA-256 and
// SHA-384 by default, all starting at zero. A boot layer measures the next
// before running it:
//
//	r, _ := measure.New()
//	err := r.Measure(4, measure.EVIPL, image, []byte("os 1.2.0"))
//
// [Registers.Measure] digests the measured bytes with each bank's hash and
// extends the register as TPM 2.0 Library Part 1, clause 17 ("PCR
// Operations"), "Extend of a PCR", defines it:
//
//	PCR_new := H_bank(PCR_old || digest)
//
// so a register's value depends on every measurement made into it and on
// their order, and cannot be set to a chosen value. [Registers.ExtendDigests]
// extends digests computed elsewhere (for example by the boot ROM).
// Nothing resets a register; a new boot makes new Registers. All 24
// registers behave like PCRs 0–16 and 23 of a PC Client TPM reset at
// locality 0: rootline models neither localities nor the dynamic-launch
// PCRs 17–22.
//
// # The event log
//
// Every extend is logged as an [Event]: register, [EventType], the digest
// extended in each bank, and event data describing what was measured.
// [Log.MarshalBinary] writes the PFP crypto-agile log:
//
//   - first the Spec ID event (PFP §10.4.5.1): a TCG_PCR_EVENT in the SHA-1
//     format with PCRIndex 0, EventType EV_NO_ACTION and a zero 20-byte
//     digest, whose data is a TCG_EfiSpecIDEvent ("Spec ID Event03",
//     platform class client, spec version 2.0, errata 2, the algorithm list
//     with TPM_ALG_SHA256 = 0x000B and TPM_ALG_SHA384 = 0x000C and their
//     digest sizes, no vendor info). It is not extended;
//   - then one TCG_PCR_EVENT2 per event: PCRIndex, EventType, a
//     TPML_DIGEST_VALUES with one digest per bank in the header's order,
//     EventSize and the event data.
//
// All integers are little-endian, as the PFP requires. The event types
// rootline writes and accepts are those of [EventType] (PFP §10.4.1); an
// unknown type is an error, never skipped.
//
// # Verifying a log
//
// A log that comes from a device is untrusted, and so is every event in it,
// until it is replayed against register values from a trusted source: a
// quote signed by the device's attestation key and checked by the verifier.
// [ParseLog] reads a log strictly and within bounds ([MaxLogSize],
// [MaxEvents], [MaxEventDataSize]), [Log.Replay] computes the values it
// produces, and [Log.Verify] compares them with the quoted values, returning
// a [*ReplayError] that names the registers that do not reproduce:
//
//	l, err := measure.ParseLog(untrusted)
//	if err != nil { ... }                     // a *ParseError
//	if err := l.Verify(quoted); err != nil { ... } // errors.Is(err, measure.ErrReplay)
//	// only now may the events of the quoted registers be appraised.
//
// What a successful replay proves is which digests were extended into each
// quoted register, and in what order. As in every TCG log, no digest covers
// an event's type, nor its data, except for EV_SEPARATOR and
// EV_S_CRTM_VERSION whose digest is that of their data (checked by
// [ParseLog]): a verifier appraises digests against reference values, and
// treats the type and data of other events as hints.
//
// A device keeps its log between runs and rebuilds its registers from it
// with [Restore].
//
// # Interoperability
//
// tpm2_eventlog (tpm2-tools) parses the logs this package writes and
// computes the same register values (tested). It warns, without failing,
// about EV_IPL events in registers other than 8, 9, 12 and 14, where Linux
// boot loaders put them, and prints EV_POST_CODE event data of exactly 16
// bytes as a UEFI_PLATFORM_FIRMWARE_BLOB.
package measure
