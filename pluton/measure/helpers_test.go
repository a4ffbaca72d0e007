package measure

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"testing"
)

// sampleRegisters returns registers with a boot sequence of events in
// several registers, as rootline's device would log them.
func sampleRegisters(t testing.TB, banks ...crypto.Hash) *Registers {
	t.Helper()
	r, err := New(banks...)
	if err != nil {
		t.Fatal(err)
	}
	sep := []byte{0, 0, 0, 0}
	steps := []struct {
		reg            int
		typ            EventType
		measured, data []byte
	}{
		{0, EVSCRTMVersion, []byte("rootline boot ROM 1.0"), []byte("rootline boot ROM 1.0")},
		{0, EVPostCode, []byte("boot ROM code"), []byte("boot ROM")},
		{1, EVPlatformConfigFlags, []byte{0x01}, []byte("lifecycle=production")},
		{0, EVSeparator, sep, sep},
		{1, EVSeparator, sep, sep},
		{2, EVNonhostCode, []byte("security monitor image"), []byte("security monitor 3.1")},
		{3, EVNonhostConfig, []byte("security monitor config"), nil},
		{4, EVIPL, []byte("os image"), []byte("os 1.2.0")},
		{5, EVEventTag, []byte("tag"), []byte{1, 0, 0, 0, 2, 0, 0, 0, 'h', 'i'}},
		{6, EVAction, []byte("Exit Boot Services Invocation"), []byte("Exit Boot Services Invocation")},
		{7, EVCompactHash, []byte("compact"), []byte{0xc0}},
		{8, EVNonhostInfo, []byte("info"), []byte("nonhost info")},
		{23, EVIPL, []byte("application image"), []byte("app 0.9.1")},
		{4, EVSeparator, sep, sep},
	}
	for _, s := range steps {
		if err := r.Measure(s.reg, s.typ, s.measured, s.data); err != nil {
			t.Fatalf("Measure(%d, %v): %v", s.reg, s.typ, err)
		}
	}
	return r
}

func marshal(t testing.TB, l *Log) []byte {
	t.Helper()
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logBuilder writes logs field by field, so that tests can make them wrong
// in every way.
type logBuilder struct{ bytes.Buffer }

func (w *logBuilder) u8(v uint8)   { w.WriteByte(v) }
func (w *logBuilder) u16(v uint16) { w.Write(binary.LittleEndian.AppendUint16(nil, v)) }
func (w *logBuilder) u32(v uint32) { w.Write(binary.LittleEndian.AppendUint32(nil, v)) }

// header is a Spec ID event, with every field settable.
type header struct {
	pcr, typ      uint32
	digest        [20]byte
	eventSize     int // -1: the right size
	signature     string
	platformClass uint32
	minor, major  uint8
	errata, uintn uint8
	algs          [][2]uint16 // algorithmId, digestSize
	vendorInfo    []byte
}

func goodHeader() header {
	return header{
		typ:       uint32(EVNoAction),
		eventSize: -1,
		signature: "Spec ID Event03\x00",
		major:     2,
		errata:    2,
		uintn:     2,
		algs:      [][2]uint16{{0x000B, 32}, {0x000C, 48}},
	}
}

func (w *logBuilder) header(h header) {
	size := 16 + 4 + 4 + 4 + 4*len(h.algs) + 1 + len(h.vendorInfo)
	if h.eventSize >= 0 {
		size = h.eventSize
	}
	w.u32(h.pcr)
	w.u32(h.typ)
	w.Write(h.digest[:])
	w.u32(uint32(size))
	sig := make([]byte, 16)
	copy(sig, h.signature)
	w.Write(sig)
	w.u32(h.platformClass)
	w.u8(h.minor)
	w.u8(h.major)
	w.u8(h.errata)
	w.u8(h.uintn)
	w.u32(uint32(len(h.algs)))
	for _, a := range h.algs {
		w.u16(a[0])
		w.u16(a[1])
	}
	w.u8(uint8(len(h.vendorInfo)))
	w.Write(h.vendorInfo)
}

// digest is one TPMT_HA as a record carries it.
type digest struct {
	alg uint16
	d   []byte
}

func (w *logBuilder) record(pcr, typ uint32, digests []digest, data []byte) {
	w.u32(pcr)
	w.u32(typ)
	w.u32(uint32(len(digests)))
	for _, d := range digests {
		w.u16(d.alg)
		w.Write(d.d)
	}
	w.u32(uint32(len(data)))
	w.Write(data)
}

// both returns SHA-256 and SHA-384 digests of data, in that order.
func both(data []byte) []digest {
	a := newHash(crypto.SHA256)
	a.Write(data)
	b := newHash(crypto.SHA384)
	b.Write(data)
	return []digest{{0x000B, a.Sum(nil)}, {0x000C, b.Sum(nil)}}
}
