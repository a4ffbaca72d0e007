package measure

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// Log is an event log: the banks it records, declared in its Spec ID header
// event, and its events in the order they were extended. A Log is not
// modified once made; it comes from [Registers.Log] or [ParseLog]. A parsed
// Log is untrusted until [Log.Verify] has replayed it against trusted
// register values.
type Log struct {
	hdr    specID
	banks  []crypto.Hash
	events []Event
	// raw, for a Log from ParseLog, is a copy of the bytes it was parsed
	// from; the events' digests and data are slices of it. Nil for a Log
	// made otherwise, which Registers may still extend: only a parsed Log
	// is known never to change.
	raw []byte
	// replayed, for a parsed Log, is what Replay computes, once: a
	// parsed Log is never modified, so neither is its replay. Shared, never
	// modified.
	replayed atomic.Pointer[map[crypto.Hash][][]byte]
}

// specID holds the fields of the TCG_EfiSpecIDEvent (PFP §10.4.5.1) other
// than the signature and the algorithm list, so that a parsed log marshals
// back to the same bytes.
type specID struct {
	platformClass uint32
	versionMinor  uint8
	versionMajor  uint8
	errata        uint8
	uintnSize     uint8
	vendorInfo    []byte
}

// The values rootline writes (PFP §10.4.5.1).
const (
	// platformClassClient: TPM_PLATFORM_CLIENT (0); 1 is server.
	platformClassClient = 0
	// specVersionMinor and specVersionMajor: 2.0, the crypto-agile log.
	specVersionMinor = 0
	specVersionMajor = 2
	// specErrata: 2, as Trusted Firmware-A writes (TCG_SPEC_ERRATA_TPM2);
	// edk2 and SeaBIOS write 0. The byte is informative: ParseLog accepts
	// any value and keeps it.
	specErrata = 2
	// uintnSizeUINT64: 2, UINTN fields are 64 bits (1 would be 32 bits).
	// rootline's events have none.
	uintnSizeUINT64 = 2
)

// specIDSignature is TCG_EfiSpecIDEvent.signature, NUL-terminated
// (PFP §10.4.5.1).
var specIDSignature = [16]byte{'S', 'p', 'e', 'c', ' ', 'I', 'D', ' ', 'E', 'v', 'e', 'n', 't', '0', '3', 0}

func defaultSpecID() specID {
	return specID{
		platformClass: platformClassClient,
		versionMinor:  specVersionMinor,
		versionMajor:  specVersionMajor,
		errata:        specErrata,
		uintnSize:     uintnSizeUINT64,
	}
}

// Sizes of the fixed parts of the structures.
const (
	// TCG_PCR_EVENT: PCRIndex (4), EventType (4), Digest (20, SHA-1
	// sized), EventSize (4).
	pcrEventSize = 4 + 4 + 20 + 4
	// TCG_EfiSpecIDEvent up to digestSizes: signature (16), platformClass
	// (4), specVersionMinor, specVersionMajor, specErrata, uintnSize (1
	// each), numberOfAlgorithms (4).
	specIDFixedSize = 16 + 4 + 4 + 4
	// TCG_EfiSpecIdEventAlgorithmSize: algorithmId (2), digestSize (2).
	algSizeSize = 4
	// maxAlgorithms: rootline accepts two banks, each once.
	maxAlgorithms = 2
)

// Banks returns the hash algorithms of the log's banks, in the order of the
// Spec ID header event (and of each record's digests).
func (l *Log) Banks() []crypto.Hash {
	return slices.Clone(l.banks)
}

// Events returns a copy of the log's events, in order. The Spec ID header
// event is not among them.
func (l *Log) Events() []Event {
	if len(l.events) == 0 {
		return nil
	}
	out := make([]Event, len(l.events))
	for i := range l.events {
		out[i] = l.events[i].clone()
	}
	return out
}

// ParsedFrom reports whether l was made by [ParseLog] from exactly the
// bytes b: a caller that kept the Log of an earlier parse can use it in
// place of parsing b again, which would give the same Log.
func (l *Log) ParsedFrom(b []byte) bool {
	return l != nil && l.raw != nil && bytes.Equal(l.raw, b)
}

// clone returns a deep copy of l, which is not a parsed Log (no raw): the
// copy in Registers is extended.
func (l *Log) clone() *Log {
	c := &Log{hdr: l.hdr, banks: slices.Clone(l.banks)}
	c.hdr.vendorInfo = bytes.Clone(l.hdr.vendorInfo)
	c.events = make([]Event, len(l.events), len(l.events)+1)
	for i := range l.events {
		c.events[i] = l.events[i].clone()
	}
	return c
}

func (l *Log) headerSize() int {
	return pcrEventSize + specIDFixedSize + algSizeSize*len(l.banks) + 1 + len(l.hdr.vendorInfo)
}

func recordSize(banks []crypto.Hash, dataLen int) int {
	n := 4 + 4 + 4 + 4 + dataLen
	for _, h := range banks {
		n += 2 + h.Size()
	}
	return n
}

func (l *Log) size() int {
	n := l.headerSize()
	for i := range l.events {
		n += recordSize(l.banks, len(l.events[i].Data))
	}
	return n
}

// MarshalBinary encodes the log in the crypto-agile format of the TCG PC
// Client Platform Firmware Profile, which tpm2_eventlog and other TCG tools
// read: the Spec ID header event as a TCG_PCR_EVENT (SHA-1 format), then one
// TCG_PCR_EVENT2 per event. All integers are little-endian.
func (l *Log) MarshalBinary() ([]byte, error) {
	if err := checkBanks(l.banks); err != nil {
		return nil, fmt.Errorf("measure: marshalling a log without valid banks: %w", err)
	}
	b := make([]byte, 0, l.size())

	// TCG_PCR_EVENT (PFP §10.4.5.1, "the first event in the log"):
	// PCRIndex 0, EventType EV_NO_ACTION, a 20-byte zero Digest, EventSize,
	// then the TCG_EfiSpecIDEvent as Event.
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(EVNoAction))
	b = append(b, make([]byte, 20)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(specIDFixedSize+algSizeSize*len(l.banks)+1+len(l.hdr.vendorInfo)))

	// TCG_EfiSpecIDEvent: signature, platformClass, specVersionMinor,
	// specVersionMajor, specErrata, uintnSize, numberOfAlgorithms,
	// digestSizes[numberOfAlgorithms] (algorithmId, digestSize),
	// vendorInfoSize, vendorInfo.
	b = append(b, specIDSignature[:]...)
	b = binary.LittleEndian.AppendUint32(b, l.hdr.platformClass)
	b = append(b, l.hdr.versionMinor, l.hdr.versionMajor, l.hdr.errata, l.hdr.uintnSize)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l.banks)))
	for _, h := range l.banks {
		id, _ := algID(h)
		b = binary.LittleEndian.AppendUint16(b, id)
		b = binary.LittleEndian.AppendUint16(b, uint16(h.Size()))
	}
	b = append(b, byte(len(l.hdr.vendorInfo)))
	b = append(b, l.hdr.vendorInfo...)

	// TCG_PCR_EVENT2: PCRIndex, EventType, Digests (a TPML_DIGEST_VALUES:
	// count, then count TPMT_HA, each hashAlg and digest, in the order of
	// the header), EventSize, Event.
	for i := range l.events {
		e := &l.events[i]
		b = binary.LittleEndian.AppendUint32(b, uint32(e.Register))
		b = binary.LittleEndian.AppendUint32(b, uint32(e.Type))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(l.banks)))
		for _, h := range l.banks {
			id, _ := algID(h)
			b = binary.LittleEndian.AppendUint16(b, id)
			b = append(b, e.Digests[h]...)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b, nil
}

// ParseError says where and why [ParseLog] refused a log. It wraps
// [ErrMalformed] and Reason, so errors.Is(err, ErrMalformed) and, for
// example, errors.Is(err, ErrEventType) both hold.
type ParseError struct {
	// Record is the index of the record: 0 for the Spec ID header event,
	// 1, 2, … for the TCG_PCR_EVENT2 records that follow; -1 for the log
	// as a whole.
	Record int
	// Offset is the byte offset of the field where parsing stopped.
	Offset int
	// Reason is one of ErrHeader, ErrTruncated, ErrRegister, ErrBank,
	// ErrDigest, ErrEventType, ErrNoAction, ErrTooLarge.
	Reason error
	// Detail says what exactly was wrong.
	Detail string
}

func (e *ParseError) Error() string {
	what := e.Detail
	if what == "" {
		what = strings.TrimPrefix(e.Reason.Error(), "measure: ")
	}
	switch {
	case e.Record < 0:
		return fmt.Sprintf("measure: event log: %s", what)
	case e.Record == 0:
		return fmt.Sprintf("measure: event log header at offset %d: %s", e.Offset, what)
	}
	return fmt.Sprintf("measure: event log record %d at offset %d: %s", e.Record, e.Offset, what)
}

// Unwrap returns ErrMalformed and Reason.
func (e *ParseError) Unwrap() []error { return []error{ErrMalformed, e.Reason} }

// reader reads little-endian fields from an untrusted log, recording where
// it failed.
type reader struct {
	b      []byte
	off    int
	record int
	err    *ParseError
}

func (r *reader) fail(reason error, format string, args ...any) {
	if r.err == nil {
		r.err = &ParseError{Record: r.record, Offset: r.off, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
}

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.fail(ErrTruncated, "log ends inside %s (%d bytes needed, %d left)", what, n, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s
}

func (r *reader) u8(what string) uint8 {
	if s := r.bytes(1, what); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if s := r.bytes(2, what); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if s := r.bytes(4, what); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

// ParseLog parses an untrusted event log in the crypto-agile format of the
// TCG PC Client Platform Firmware Profile (see [Log.MarshalBinary]). It is
// strict: what it accepts, MarshalBinary gives back byte for byte. It
// refuses, with a [*ParseError]:
//
//   - a log larger than MaxLogSize, with more than MaxEvents records, or a
//     record with more than MaxEventDataSize bytes of event data
//     ([ErrTooLarge]);
//   - a missing or malformed Spec ID header event ([ErrHeader]): not a
//     TCG_PCR_EVENT with PCRIndex 0, EV_NO_ACTION and a zero digest, a
//     signature other than "Spec ID Event03", a version other than 2.0, a
//     platform class other than client (0) or server (1), a uintnSize
//     other than 1 or 2, an EventSize that is not the size of the
//     TCG_EfiSpecIDEvent;
//   - an algorithm in the header other than SHA-256 and SHA-384, or given
//     twice, or a record digest of an algorithm the header does not declare
//     ([ErrBank]);
//   - a header digest size that is not the algorithm's, a record with more
//     or fewer digests than the header declares, or in another order, or
//     an EV_SEPARATOR or EV_S_CRTM_VERSION record whose digests are not
//     those of its event data ([ErrDigest]);
//   - an event type other than those of [EventType] ([ErrEventType]), an
//     EV_NO_ACTION record after the header ([ErrNoAction]: EV_NO_ACTION
//     events are never extended, and rootline never writes others, such
//     as the StartupLocality event that changes how PCR 0 is replayed);
//   - a register index not below NumRegisters ([ErrRegister]);
//   - a log that ends inside a record, and bytes after the last record
//     that do not make a valid record ([ErrTruncated], or whichever check
//     they fail).
func ParseLog(b []byte) (*Log, error) {
	if len(b) > MaxLogSize {
		return nil, &ParseError{Record: -1, Reason: ErrTooLarge,
			Detail: fmt.Sprintf("%d bytes (MaxLogSize is %d)", len(b), MaxLogSize)}
	}
	// The events' digests and data are slices of one copy of b, kept as
	// l.raw: one allocation rather than two per record.
	raw := bytes.Clone(b)
	if raw == nil {
		raw = []byte{}
	}
	r := &reader{b: raw}
	l := &Log{raw: raw}
	if !parseHeader(r, l) {
		return nil, r.err
	}
	for r.off < len(b) {
		if len(l.events) == MaxEvents {
			r.record = len(l.events) + 1
			r.fail(ErrTooLarge, "more than MaxEvents (%d) records", MaxEvents)
			return nil, r.err
		}
		r.record = len(l.events) + 1
		e, ok := parseRecord(r, l.banks)
		if !ok {
			return nil, r.err
		}
		l.events = append(l.events, e)
	}
	return l, nil
}

// parseHeader parses the Spec ID header event into l.
func parseHeader(r *reader, l *Log) bool {
	if len(r.b) < pcrEventSize {
		r.fail(ErrHeader, "%d bytes, too short for the Spec ID event", len(r.b))
		return false
	}
	// TCG_PCR_EVENT: PCRIndex 0, EV_NO_ACTION, 20 zero bytes of digest.
	if pcr := r.u32("PCRIndex"); pcr != 0 {
		r.off -= 4
		r.fail(ErrHeader, "Spec ID event on PCR %d, not 0", pcr)
		return false
	}
	if t := EventType(r.u32("EventType")); t != EVNoAction {
		r.off -= 4
		r.fail(ErrHeader, "first event of type %v, not EV_NO_ACTION", t)
		return false
	}
	if d := r.bytes(20, "Digest"); !allZero(d) {
		r.off -= 20
		r.fail(ErrHeader, "Spec ID event with a non-zero digest")
		return false
	}
	eventSize := r.u32("EventSize")
	start := r.off
	if eventSize < specIDFixedSize+1 || eventSize > specIDFixedSize+algSizeSize*maxAlgorithms+1+255 {
		r.off -= 4
		r.fail(ErrHeader, "Spec ID event of %d bytes", eventSize)
		return false
	}
	if len(r.b)-r.off < int(eventSize) {
		r.fail(ErrTruncated, "log ends inside the Spec ID event (%d bytes needed, %d left)", eventSize, len(r.b)-r.off)
		return false
	}

	// TCG_EfiSpecIDEvent (PFP §10.4.5.1).
	if sig := r.bytes(16, "signature"); !bytes.Equal(sig, specIDSignature[:]) {
		r.off -= 16
		r.fail(ErrHeader, "signature %q, not \"Spec ID Event03\"", sig)
		return false
	}
	l.hdr.platformClass = r.u32("platformClass")
	if l.hdr.platformClass > 1 {
		r.off -= 4
		r.fail(ErrHeader, "platform class %d (0 client, 1 server)", l.hdr.platformClass)
		return false
	}
	l.hdr.versionMinor = r.u8("specVersionMinor")
	l.hdr.versionMajor = r.u8("specVersionMajor")
	if l.hdr.versionMajor != specVersionMajor || l.hdr.versionMinor != specVersionMinor {
		r.off -= 2
		r.fail(ErrHeader, "spec version %d.%d, not 2.0 (crypto-agile)", l.hdr.versionMajor, l.hdr.versionMinor)
		return false
	}
	l.hdr.errata = r.u8("specErrata")
	l.hdr.uintnSize = r.u8("uintnSize")
	if l.hdr.uintnSize != 1 && l.hdr.uintnSize != 2 {
		r.off--
		r.fail(ErrHeader, "uintnSize %d (1 or 2)", l.hdr.uintnSize)
		return false
	}
	n := r.u32("numberOfAlgorithms")
	if n == 0 || n > maxAlgorithms {
		r.off -= 4
		r.fail(ErrHeader, "%d algorithms (1 or 2: SHA-256, SHA-384)", n)
		return false
	}
	if want := specIDFixedSize + algSizeSize*int(n) + 1; int(eventSize) < want {
		r.off -= 4
		r.fail(ErrHeader, "Spec ID event of %d bytes, too short for %d algorithms", eventSize, n)
		return false
	}
	for range n {
		id := r.u16("algorithmId")
		size := r.u16("digestSize")
		h, ok := hashOfAlg(id)
		if !ok {
			r.off -= 4
			r.fail(ErrBank, "header declares algorithm 0x%04x (only SHA-256 0x000b and SHA-384 0x000c)", id)
			return false
		}
		if slices.Contains(l.banks, h) {
			r.off -= 4
			r.fail(ErrBank, "header declares %v twice", h)
			return false
		}
		if int(size) != h.Size() {
			r.off -= 2
			r.fail(ErrDigest, "header declares %v digests of %d bytes, not %d", h, size, h.Size())
			return false
		}
		l.banks = append(l.banks, h)
	}
	vendorInfoSize := int(r.u8("vendorInfoSize"))
	if r.off+vendorInfoSize != start+int(eventSize) {
		r.off--
		r.fail(ErrHeader, "Spec ID event of %d bytes, but its fields take %d", eventSize, r.off+1+vendorInfoSize-start)
		return false
	}
	if vendorInfoSize > 0 {
		l.hdr.vendorInfo = clip(r.bytes(vendorInfoSize, "vendorInfo"))
	}
	return r.err == nil
}

// parseRecord parses one TCG_PCR_EVENT2.
func parseRecord(r *reader, banks []crypto.Hash) (Event, bool) {
	var e Event
	pcr := r.u32("PCRIndex")
	typ := EventType(r.u32("EventType"))
	count := r.u32("digest count")
	if r.err != nil {
		return e, false
	}
	if pcr >= NumRegisters {
		r.off -= 12
		r.fail(ErrRegister, "register %d (NumRegisters is %d)", pcr, NumRegisters)
		return e, false
	}
	if typ == EVNoAction {
		r.off -= 8
		r.fail(ErrNoAction, "EV_NO_ACTION record: only the Spec ID header may be one")
		return e, false
	}
	if err := checkExtendedType(typ); err != nil {
		r.off -= 8
		r.fail(ErrEventType, "event type %v", typ)
		return e, false
	}
	if int(count) != len(banks) {
		r.off -= 4
		r.fail(ErrDigest, "%d digests, the header declares %d banks", count, len(banks))
		return e, false
	}
	e.Register = int(pcr)
	e.Type = typ
	e.Digests = make(map[crypto.Hash][]byte, len(banks))
	for _, want := range banks {
		id := r.u16("hashAlg")
		if r.err != nil {
			return e, false
		}
		h, ok := hashOfAlg(id)
		if !ok || !slices.Contains(banks, h) {
			r.off -= 2
			r.fail(ErrBank, "digest of algorithm 0x%04x, which the header does not declare", id)
			return e, false
		}
		if h != want {
			r.off -= 2
			r.fail(ErrDigest, "%v digest where the header's order puts %v", h, want)
			return e, false
		}
		d := r.bytes(h.Size(), "digest")
		if r.err != nil {
			return e, false
		}
		e.Digests[h] = clip(d)
	}
	size := r.u32("EventSize")
	if r.err != nil {
		return e, false
	}
	if size > MaxEventDataSize {
		r.off -= 4
		r.fail(ErrTooLarge, "%d bytes of event data (MaxEventDataSize is %d)", size, MaxEventDataSize)
		return e, false
	}
	data := r.bytes(int(size), "event data")
	if r.err != nil {
		return e, false
	}
	e.Data = clip(data)
	if digestOfData(typ) {
		if err := checkDataDigests(banks, &e); err != nil {
			r.fail(ErrDigest, "%s", strings.TrimPrefix(err.Error(), "measure: bad event digests: "))
			return e, false
		}
	}
	return e, true
}

// clip returns b with its capacity cut to its length: a slice of a parsed
// Log's raw bytes that an append could not write past.
func clip(b []byte) []byte { return b[:len(b):len(b)] }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Replay computes the register values the log produces: for each bank, all
// NumRegisters registers, starting all-zeros, each event extended into its
// register (TPM 2.0 Part 1, "Extend of a PCR"). The values of an untrusted
// log mean nothing until compared with trusted ones ([Log.Verify]).
func (l *Log) Replay() (map[crypto.Hash][][]byte, error) {
	return l.replay()
}

// values returns what Replay does, without copying it for a parsed Log,
// whose replay is computed once and kept: the result must not be modified.
func (l *Log) values() (map[crypto.Hash][][]byte, error) {
	if l.raw == nil {
		return l.replay()
	}
	if v := l.replayed.Load(); v != nil {
		return *v, nil
	}
	v, err := l.replay()
	if err != nil {
		return nil, err
	}
	l.replayed.Store(&v)
	return v, nil
}

// replay computes Replay's result.
func (l *Log) replay() (map[crypto.Hash][][]byte, error) {
	if err := checkBanks(l.banks); err != nil {
		return nil, fmt.Errorf("measure: replaying a log without valid banks: %w", err)
	}
	out := make(map[crypto.Hash][][]byte, len(l.banks))
	for _, h := range l.banks {
		regs := make([][]byte, NumRegisters)
		for j := range regs {
			regs[j] = make([]byte, h.Size())
		}
		hh := newHash(h)
		for i := range l.events {
			e := &l.events[i]
			extendWith(hh, regs[e.Register], e.Digests[h])
		}
		out[h] = regs
	}
	return out, nil
}

// ReplayError says which registers of one bank a log does not reproduce.
// errors.Is(err, ErrReplay) holds for it.
type ReplayError struct {
	// Bank is the bank whose registers differ.
	Bank crypto.Hash
	// Mismatched lists the registers whose replayed value differs from the
	// expected one, in increasing order.
	Mismatched []int
}

func (e *ReplayError) Error() string {
	s := make([]string, len(e.Mismatched))
	for i, m := range e.Mismatched {
		s[i] = fmt.Sprint(m)
	}
	word := "registers"
	if len(s) == 1 {
		word = "register"
	}
	return fmt.Sprintf("measure: event log does not reproduce %v %s %s", e.Bank, word, strings.Join(s, ", "))
}

// Is reports whether target is ErrReplay.
func (e *ReplayError) Is(target error) bool { return target == ErrReplay }

// Verify replays the log and compares the result with want, the values of
// some registers of some banks from a trusted source (for example a quote
// whose signature was checked). Only the registers given are compared; at
// least one must be. If a register does not reproduce, Verify returns a
// [*ReplayError] for the first bank, in the log's bank order, that has a
// mismatch, naming all its mismatched registers. A bank the log does not
// record is an error wrapping [ErrBank], a register index out of range one
// wrapping [ErrRegister].
//
// Once Verify returns nil, the events logged into the registers given, and
// into no others, are as trustworthy as want.
func (l *Log) Verify(want map[crypto.Hash]map[int][]byte) error {
	n := 0
	for h, regs := range want {
		if !slices.Contains(l.banks, h) {
			return fmt.Errorf("%w: the log does not record %v", ErrBank, h)
		}
		for i := range regs {
			if i < 0 || i >= NumRegisters {
				return fmt.Errorf("%w: %d", ErrRegister, i)
			}
		}
		n += len(regs)
	}
	if n == 0 {
		return errors.New("measure: Verify: no register values to compare")
	}
	got, err := l.values()
	if err != nil {
		return err
	}
	for _, h := range l.banks {
		var bad []int
		for i, v := range want[h] {
			if !bytes.Equal(got[h][i], v) {
				bad = append(bad, i)
			}
		}
		if len(bad) > 0 {
			slices.Sort(bad)
			return &ReplayError{Bank: h, Mismatched: bad}
		}
	}
	return nil
}
