package measure

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync"
)

// NumRegisters is the number of measurement registers in every bank,
// numbered 0 to 23 like the PCRs of a PC Client TPM.
const NumRegisters = 24

// Bounds on a log. [ParseLog] refuses a log beyond them, and [Registers]
// refuses a measurement that would take its log beyond them, so every log
// rootline writes can be read back.
const (
	// MaxLogSize is the largest log, in bytes, header included.
	MaxLogSize = 4 << 20
	// MaxEvents is the largest number of TCG_PCR_EVENT2 records, not
	// counting the Spec ID header event.
	MaxEvents = 4096
	// MaxEventDataSize is the largest event data of one record.
	MaxEventDataSize = 64 << 10
)

// Errors. Errors from [ParseLog] are a [*ParseError], which wraps
// [ErrMalformed] and one of the more specific errors below; callers test
// with errors.Is.
var (
	// ErrMalformed: an event log is not a well-formed crypto-agile log that
	// this package accepts. Every [*ParseError] wraps it.
	ErrMalformed = errors.New("measure: malformed event log")
	// ErrHeader: the Spec ID header event is missing or malformed.
	ErrHeader = errors.New("measure: missing or malformed Spec ID event")
	// ErrTruncated: the log ends inside a record.
	ErrTruncated = errors.New("measure: event log truncated")
	// ErrRegister: a register index is not below NumRegisters.
	ErrRegister = errors.New("measure: register index out of range")
	// ErrBank: a hash algorithm is not a bank this package supports, is
	// given twice, or is not one of the log's or registers' banks.
	ErrBank = errors.New("measure: unsupported or undeclared bank")
	// ErrDigest: the digests of an event do not match the banks (one
	// missing, one extra, out of order, of the wrong size), or, for the
	// event types whose digest is that of their event data, do not match
	// the data.
	ErrDigest = errors.New("measure: bad event digests")
	// ErrEventType: the event type is not one this package accepts (see
	// [EventType]).
	ErrEventType = errors.New("measure: unknown event type")
	// ErrNoAction: an EV_NO_ACTION event other than the Spec ID header, or
	// an attempt to extend one. EV_NO_ACTION events are never extended.
	ErrNoAction = errors.New("measure: EV_NO_ACTION event in place of an extended event")
	// ErrTooLarge: a log, its number of events or an event's data exceeds
	// MaxLogSize, MaxEvents or MaxEventDataSize.
	ErrTooLarge = errors.New("measure: event log limit exceeded")
	// ErrReplay: replaying a log does not give the expected register
	// values. Returned as a [*ReplayError].
	ErrReplay = errors.New("measure: event log does not reproduce registers")
)

// EventType is the type of an event, with the values of the TCG PC Client
// Platform Firmware Profile (PFP), §10.4.1, "Event Types" (Table 9).
//
// rootline accepts, in [Registers.Measure], [Registers.ExtendDigests] and
// [ParseLog], exactly the types defined below except EVNoAction, which
// appears only in the Spec ID header event and is never extended. Every
// other value, in particular the EV_EFI_* types (0x80000000 and up), whose
// event data UEFI defines and which rootline never writes, is refused with
// [ErrEventType]: it is an error, never skipped.
//
// For EVSeparator and EVSCRTMVersion the PFP defines the digest as that of
// the event data itself; rootline requires it, so that the data of those
// events is verified once the log is replayed.
type EventType uint32

// The event types rootline uses and accepts (PFP §10.4.1, Table 9).
const (
	// EVPostCode: firmware of the platform (PFP: POST code, embedded
	// firmware). The event data describes it.
	EVPostCode EventType = 0x00000001
	// EVNoAction: not extended. Only the Spec ID header event has it.
	EVNoAction EventType = 0x00000003
	// EVSeparator: the end of one boot stage's measurements into a
	// register. Digest = H(event data); the data is normally 00 00 00 00
	// (the PFP also defines an error value).
	EVSeparator EventType = 0x00000004
	// EVAction: an action string, not the measurement of code or data
	// (the PFP fixes the strings firmware uses).
	EVAction EventType = 0x00000005
	// EVEventTag: a tagged event (TCG_PCClientTaggedEvent).
	EVEventTag EventType = 0x00000006
	// EVSCRTMVersion: the version of the static root of trust for
	// measurement (the boot ROM). Digest = H(event data).
	EVSCRTMVersion EventType = 0x00000008
	// EVPlatformConfigFlags: platform configuration (for example lifecycle
	// state, debug enable).
	EVPlatformConfigFlags EventType = 0x0000000A
	// EVCompactHash: a digest whose meaning is known from the register and
	// platform, with short event data.
	EVCompactHash EventType = 0x0000000C
	// EVIPL: code loaded by the initial program loader (the bootloader
	// measuring the OS and application images).
	EVIPL EventType = 0x0000000D
	// EVNonhostCode: code of a non-host processor (for example the security
	// subsystem's own firmware).
	EVNonhostCode EventType = 0x0000000F
	// EVNonhostConfig: configuration of a non-host processor.
	EVNonhostConfig EventType = 0x00000010
	// EVNonhostInfo: information about a non-host processor.
	EVNonhostInfo EventType = 0x00000011
)

var eventTypeNames = map[EventType]string{
	EVPostCode:            "EV_POST_CODE",
	EVNoAction:            "EV_NO_ACTION",
	EVSeparator:           "EV_SEPARATOR",
	EVAction:              "EV_ACTION",
	EVEventTag:            "EV_EVENT_TAG",
	EVSCRTMVersion:        "EV_S_CRTM_VERSION",
	EVPlatformConfigFlags: "EV_PLATFORM_CONFIG_FLAGS",
	EVCompactHash:         "EV_COMPACT_HASH",
	EVIPL:                 "EV_IPL",
	EVNonhostCode:         "EV_NONHOST_CODE",
	EVNonhostConfig:       "EV_NONHOST_CONFIG",
	EVNonhostInfo:         "EV_NONHOST_INFO",
}

// String returns the PFP name ("EV_SEPARATOR"), or EventType(0x…) for a type
// this package does not accept.
func (t EventType) String() string {
	if s, ok := eventTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("EventType(0x%08x)", uint32(t))
}

// checkExtendedType returns nil if an event of type t may be extended.
func checkExtendedType(t EventType) error {
	if t == EVNoAction {
		return ErrNoAction
	}
	if _, ok := eventTypeNames[t]; !ok {
		return fmt.Errorf("%w: 0x%08x", ErrEventType, uint32(t))
	}
	return nil
}

// digestOfData reports whether the PFP defines t's digest as the digest of
// its event data (§10.4.1, Table 9).
func digestOfData(t EventType) bool {
	return t == EVSeparator || t == EVSCRTMVersion
}

// Event is one extend of one register, as logged in a TCG_PCR_EVENT2 record.
// An Event from a parsed log is untrusted until the log is replayed against
// register values from a trusted source (a quote, see [Log.Verify]).
type Event struct {
	// Register is the register extended, 0 to NumRegisters-1 (PCRIndex).
	Register int
	// Type is the event type (EventType).
	Type EventType
	// Digests holds, for each bank, the digest extended into the register
	// (Digests, a TPML_DIGEST_VALUES).
	Digests map[crypto.Hash][]byte
	// Data is the event data (Event), describing what was measured.
	Data []byte
}

func (e *Event) clone() Event {
	c := Event{Register: e.Register, Type: e.Type, Data: bytes.Clone(e.Data)}
	if c.Data == nil {
		c.Data = []byte{}
	}
	c.Digests = make(map[crypto.Hash][]byte, len(e.Digests))
	for h, d := range e.Digests {
		c.Digests[h] = bytes.Clone(d)
	}
	return c
}

// TPM_ALG_ID values of the banks (TPM 2.0 Library Part 2, §6.3, and the TCG
// Algorithm Registry).
const (
	algSHA256 uint16 = 0x000B
	algSHA384 uint16 = 0x000C
)

func algID(h crypto.Hash) (uint16, bool) {
	switch h {
	case crypto.SHA256:
		return algSHA256, true
	case crypto.SHA384:
		return algSHA384, true
	}
	return 0, false
}

func hashOfAlg(id uint16) (crypto.Hash, bool) {
	switch id {
	case algSHA256:
		return crypto.SHA256, true
	case algSHA384:
		return crypto.SHA384, true
	}
	return 0, false
}

func newHash(h crypto.Hash) hash.Hash {
	if h == crypto.SHA384 {
		return sha512.New384()
	}
	return sha256.New()
}

// checkBanks validates a list of banks: SHA-256 and SHA-384 only, each once,
// at least one.
func checkBanks(banks []crypto.Hash) error {
	if len(banks) == 0 {
		return fmt.Errorf("%w: no banks", ErrBank)
	}
	for i, h := range banks {
		if _, ok := algID(h); !ok {
			return fmt.Errorf("%w: %v (only SHA-256 and SHA-384)", ErrBank, h)
		}
		if slices.Contains(banks[:i], h) {
			return fmt.Errorf("%w: %v given twice", ErrBank, h)
		}
	}
	return nil
}

// Registers is a set of measurement registers with PCR semantics, one bank
// per hash algorithm, and the log of every extend. It is safe for concurrent
// use. The registers can only be extended; nothing resets them but a new
// Registers.
//
// Every register starts all-zeros, in every bank (as PCRs 0–16 and 23 of a
// PC Client TPM after TPM2_Startup(CLEAR) at locality 0; rootline does not
// model localities or the all-ones reset value of the dynamic-launch PCRs
// 17–22, and treats all 24 registers the same).
type Registers struct {
	mu    sync.Mutex
	banks []crypto.Hash
	regs  [][NumRegisters][]byte // regs[i] is the bank banks[i]
	log   *Log
	size  int // the size of log.MarshalBinary
}

// New returns registers, all zeros, with one bank per hash algorithm given,
// in that order: crypto.SHA256 and/or crypto.SHA384. With no arguments it
// returns both, SHA-256 first.
func New(banks ...crypto.Hash) (*Registers, error) {
	if len(banks) == 0 {
		banks = []crypto.Hash{crypto.SHA256, crypto.SHA384}
	}
	if err := checkBanks(banks); err != nil {
		return nil, err
	}
	r := &Registers{
		banks: slices.Clone(banks),
		regs:  make([][NumRegisters][]byte, len(banks)),
		log:   &Log{hdr: defaultSpecID(), banks: slices.Clone(banks)},
	}
	for i, h := range r.banks {
		for j := range NumRegisters {
			r.regs[i][j] = make([]byte, h.Size())
		}
	}
	r.size = r.log.headerSize()
	return r, nil
}

// Banks returns the banks' hash algorithms, in the order of the log's
// header.
func (r *Registers) Banks() []crypto.Hash {
	return slices.Clone(r.banks)
}

// Measure extends register with the digest of measured in every bank, and
// logs the event with eventData (which describes what was measured, and is
// not itself measured, except for EVSeparator and EVSCRTMVersion, where
// measured and eventData must be equal, PFP §10.4.1).
//
// On error nothing is extended or logged.
func (r *Registers) Measure(register int, typ EventType, measured, eventData []byte) error {
	if digestOfData(typ) && !bytes.Equal(measured, eventData) {
		return fmt.Errorf("%w: %v measures its event data, which differs from the measured data", ErrDigest, typ)
	}
	digests := make(map[crypto.Hash][]byte, len(r.banks))
	for _, h := range r.banks {
		hh := newHash(h)
		hh.Write(measured)
		digests[h] = hh.Sum(nil)
	}
	return r.extend(register, typ, digests, eventData, false)
}

// ExtendDigests extends register with digests computed elsewhere, one per
// bank (exactly the registers' banks, each of its hash's size), and logs the
// event with eventData.
//
// On error nothing is extended or logged.
func (r *Registers) ExtendDigests(register int, typ EventType, digests map[crypto.Hash][]byte, eventData []byte) error {
	c := make(map[crypto.Hash][]byte, len(digests))
	for h, d := range digests {
		c[h] = bytes.Clone(d)
	}
	return r.extend(register, typ, c, eventData, true)
}

// extend checks an event, extends the registers and logs it. It owns
// digests.
func (r *Registers) extend(register int, typ EventType, digests map[crypto.Hash][]byte, eventData []byte, checkData bool) error {
	e := Event{Register: register, Type: typ, Digests: digests, Data: bytes.Clone(eventData)}
	if e.Data == nil {
		e.Data = []byte{}
	}
	if err := checkEvent(r.banks, &e, checkData); err != nil {
		return err
	}
	rs := recordSize(r.banks, len(e.Data))

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.log.events) >= MaxEvents {
		return fmt.Errorf("%w: the log already holds MaxEvents (%d) events", ErrTooLarge, MaxEvents)
	}
	if r.size+rs > MaxLogSize {
		return fmt.Errorf("%w: the log would exceed MaxLogSize (%d bytes)", ErrTooLarge, MaxLogSize)
	}
	for i, h := range r.banks {
		extendInPlace(h, r.regs[i][register], e.Digests[h])
	}
	r.log.events = append(r.log.events, e)
	r.size += rs
	return nil
}

// checkEvent validates an event against banks: register index, type,
// exactly one digest per bank of the right size, the size of its data, and,
// if checkData, the digest of data for the types whose digest it is.
func checkEvent(banks []crypto.Hash, e *Event, checkData bool) error {
	if e.Register < 0 || e.Register >= NumRegisters {
		return fmt.Errorf("%w: %d", ErrRegister, e.Register)
	}
	if err := checkExtendedType(e.Type); err != nil {
		return err
	}
	if len(e.Data) > MaxEventDataSize {
		return fmt.Errorf("%w: %d bytes of event data (MaxEventDataSize is %d)", ErrTooLarge, len(e.Data), MaxEventDataSize)
	}
	for h := range e.Digests {
		if !slices.Contains(banks, h) {
			return fmt.Errorf("%w: a digest for %v, which is not a bank", ErrBank, h)
		}
	}
	for _, h := range banks {
		d, ok := e.Digests[h]
		if !ok {
			return fmt.Errorf("%w: no %v digest", ErrDigest, h)
		}
		if len(d) != h.Size() {
			return fmt.Errorf("%w: %v digest of %d bytes", ErrDigest, h, len(d))
		}
	}
	if checkData && digestOfData(e.Type) {
		return checkDataDigests(banks, e)
	}
	return nil
}

// checkDataDigests checks that each digest of e is the digest of its data.
func checkDataDigests(banks []crypto.Hash, e *Event) error {
	for _, h := range banks {
		hh := newHash(h)
		hh.Write(e.Data)
		if !bytes.Equal(hh.Sum(nil), e.Digests[h]) {
			return fmt.Errorf("%w: the %v digest of a %v event is not that of its event data", ErrDigest, h, e.Type)
		}
	}
	return nil
}

// extendInPlace sets reg to H(reg || digest): TPM 2.0 Library Part 1,
// clause 17 ("PCR Operations"), "Extend of a PCR":
//
//	PCR_new := H_alg(PCR_old || digest)
func extendInPlace(h crypto.Hash, reg, digest []byte) {
	extendWith(newHash(h), reg, digest)
}

// extendWith is extendInPlace with a hash of the register's bank, reset
// before use.
func extendWith(hh hash.Hash, reg, digest []byte) {
	hh.Reset()
	hh.Write(reg)
	hh.Write(digest)
	hh.Sum(reg[:0])
}

// bankIndex returns the index of bank in r.banks.
func (r *Registers) bankIndex(bank crypto.Hash) (int, error) {
	i := slices.Index(r.banks, bank)
	if i < 0 {
		return 0, fmt.Errorf("%w: %v is not a bank of these registers", ErrBank, bank)
	}
	return i, nil
}

// Value returns the value of one register in one bank.
func (r *Registers) Value(bank crypto.Hash, register int) ([]byte, error) {
	i, err := r.bankIndex(bank)
	if err != nil {
		return nil, err
	}
	if register < 0 || register >= NumRegisters {
		return nil, fmt.Errorf("%w: %d", ErrRegister, register)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.regs[i][register]), nil
}

// Values returns the values of all NumRegisters registers of one bank,
// indexed by register.
func (r *Registers) Values(bank crypto.Hash) ([][]byte, error) {
	i, err := r.bankIndex(bank)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, NumRegisters)
	r.mu.Lock()
	defer r.mu.Unlock()
	for j := range out {
		out[j] = bytes.Clone(r.regs[i][j])
	}
	return out, nil
}

// Log returns a copy of the event log: later extends do not change it.
func (r *Registers) Log() *Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.clone()
}

// Restore rebuilds registers by replaying a log, so that a device keeps its
// measurements across separate runs (it stores the log, not the registers).
// The log must be trusted: the device's own, read back from storage it
// trusts. A log from elsewhere is checked with [Log.Verify] instead.
// Later extends append to a copy of l.
func Restore(l *Log) (*Registers, error) {
	if l == nil {
		return nil, errors.New("measure: Restore: nil log")
	}
	if err := checkBanks(l.banks); err != nil {
		return nil, err
	}
	values, err := l.Replay()
	if err != nil {
		return nil, err
	}
	r := &Registers{
		banks: slices.Clone(l.banks),
		regs:  make([][NumRegisters][]byte, len(l.banks)),
		log:   l.clone(),
	}
	for i, h := range r.banks {
		copy(r.regs[i][:], values[h])
	}
	r.size = r.log.size()
	return r, nil
}
