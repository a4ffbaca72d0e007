package measure

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
	"testing"
)

// Every refusal of ParseLog, each on a log made wrong in one way.
func TestParseLogRefusals(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	valid := func() *logBuilder {
		w := &logBuilder{}
		w.header(goodHeader())
		w.record(0, uint32(EVSeparator), both(sep), sep)
		return w
	}
	headerWith := func(f func(h *header)) []byte {
		h := goodHeader()
		f(&h)
		w := &logBuilder{}
		w.header(h)
		w.record(0, uint32(EVIPL), both(nil), nil)
		return w.Bytes()
	}
	withRecord := func(pcr, typ uint32, digests []digest, data []byte) []byte {
		w := valid()
		w.record(pcr, typ, digests, data)
		return w.Bytes()
	}
	good := valid().Bytes()
	if _, err := ParseLog(good); err != nil {
		t.Fatalf("the valid log: %v", err)
	}
	d := both([]byte("image"))
	zero := []digest{{0x000B, make([]byte, 32)}, {0x000C, make([]byte, 48)}}

	manyRecords := func(n int) []byte {
		w := &logBuilder{}
		h := goodHeader()
		h.algs = h.algs[:1]
		w.header(h)
		for range n {
			w.record(1, uint32(EVCompactHash), d[:1], nil)
		}
		return w.Bytes()
	}
	if _, err := ParseLog(manyRecords(MaxEvents)); err != nil {
		t.Fatalf("MaxEvents records: %v", err)
	}

	tests := []struct {
		name string
		log  []byte
		want error
	}{
		// The header.
		{"empty", nil, ErrHeader},
		{"31 bytes", good[:31], ErrHeader},
		{"header event on PCR 1", headerWith(func(h *header) { h.pcr = 1 }), ErrHeader},
		{"header event of type EV_POST_CODE", headerWith(func(h *header) { h.typ = uint32(EVPostCode) }), ErrHeader},
		{"header event with a digest", headerWith(func(h *header) { h.digest[19] = 1 }), ErrHeader},
		{"SHA-1 log (no Spec ID event)", func() []byte {
			w := &logBuilder{}
			w.u32(0)
			w.u32(uint32(EVSeparator))
			w.Write(make([]byte, 20))
			w.u32(4)
			w.Write(sep)
			return w.Bytes()
		}(), ErrHeader},
		{"signature Spec ID Event02", headerWith(func(h *header) { h.signature = "Spec ID Event02\x00" }), ErrHeader},
		{"signature without NUL", headerWith(func(h *header) { h.signature = "Spec ID Event03!" }), ErrHeader},
		{"spec version 1.2", headerWith(func(h *header) { h.major, h.minor = 1, 2 }), ErrHeader},
		{"spec version 2.1", headerWith(func(h *header) { h.minor = 1 }), ErrHeader},
		{"platform class 2", headerWith(func(h *header) { h.platformClass = 2 }), ErrHeader},
		{"uintnSize 0", headerWith(func(h *header) { h.uintn = 0 }), ErrHeader},
		{"uintnSize 4", headerWith(func(h *header) { h.uintn = 4 }), ErrHeader},
		{"no algorithms", headerWith(func(h *header) { h.algs = nil }), ErrHeader},
		{"three algorithms", headerWith(func(h *header) { h.algs = append(h.algs, [2]uint16{0x000D, 64}) }), ErrHeader},
		{"SHA-1 in the header", headerWith(func(h *header) { h.algs[0] = [2]uint16{0x0004, 20} }), ErrBank},
		{"SHA-512 in the header", headerWith(func(h *header) { h.algs[1] = [2]uint16{0x000D, 64} }), ErrBank},
		{"SHA-256 twice", headerWith(func(h *header) { h.algs[1] = h.algs[0] }), ErrBank},
		{"SHA-256 of 20 bytes", headerWith(func(h *header) { h.algs[0][1] = 20 }), ErrDigest},
		{"SHA-384 of 32 bytes", headerWith(func(h *header) { h.algs[1][1] = 32 }), ErrDigest},
		{"EventSize one more than the fields", headerWith(func(h *header) { h.eventSize = 38 }), ErrHeader},
		{"EventSize one less than the fields", headerWith(func(h *header) { h.eventSize = 36 }), ErrHeader},
		{"EventSize too short for the algorithms", headerWith(func(h *header) { h.eventSize = 30 }), ErrHeader},
		{"EventSize huge", headerWith(func(h *header) { h.eventSize = 1 << 30 }), ErrHeader},
		{"vendorInfoSize beyond EventSize", func() []byte {
			h := goodHeader()
			h.vendorInfo = []byte("vendor")
			h.eventSize = 37
			w := &logBuilder{}
			w.header(h)
			return w.Bytes()
		}(), ErrHeader},
		{"header truncated in the Spec ID event", good[:50], ErrTruncated},
		{"header truncated in vendorInfo", func() []byte {
			h := goodHeader()
			h.vendorInfo = []byte("vendor")
			w := &logBuilder{}
			w.header(h)
			return w.Bytes()[:w.Len()-1]
		}(), ErrTruncated},

		// Records.
		{"register 24", withRecord(NumRegisters, uint32(EVIPL), d, nil), ErrRegister},
		{"register 0xffffffff", withRecord(0xffffffff, uint32(EVIPL), d, nil), ErrRegister},
		{"EV_PREBOOT_CERT", withRecord(0, 0, d, nil), ErrEventType},
		{"EV_UNUSED", withRecord(0, 2, d, nil), ErrEventType},
		{"EV_S_CRTM_CONTENTS", withRecord(0, 7, d, nil), ErrEventType},
		{"EV_EFI_VARIABLE_DRIVER_CONFIG", withRecord(0, 0x80000001, d, nil), ErrEventType},
		{"EV_EFI_HCRTM_EVENT", withRecord(0, 0x80000010, d, []byte("HCRTM")), ErrEventType},
		{"type 0xffffffff", withRecord(0, 0xffffffff, d, nil), ErrEventType},
		{"EV_NO_ACTION with zero digests", withRecord(0, uint32(EVNoAction), zero, nil), ErrNoAction},
		{"EV_NO_ACTION with digests", withRecord(3, uint32(EVNoAction), d, nil), ErrNoAction},
		{"StartupLocality event", withRecord(0, uint32(EVNoAction), zero, append([]byte("StartupLocality\x00"), 3)), ErrNoAction},
		{"second Spec ID event", append(bytes.Clone(good), good[:69]...), ErrNoAction},
		{"one digest of two", withRecord(0, uint32(EVIPL), d[:1], nil), ErrDigest},
		{"three digests", withRecord(0, uint32(EVIPL), append(d, d[0]), nil), ErrDigest},
		{"no digests", withRecord(0, uint32(EVIPL), nil, nil), ErrDigest},
		{"digests out of order", withRecord(0, uint32(EVIPL), []digest{d[1], d[0]}, nil), ErrDigest},
		{"SHA-256 twice", withRecord(0, uint32(EVIPL), []digest{d[0], d[0]}, nil), ErrDigest},
		{"undeclared SHA-1 digest", withRecord(0, uint32(EVIPL), []digest{{0x0004, make([]byte, 20)}, d[1]}, nil), ErrBank},
		{"undeclared SHA-512 digest", withRecord(0, uint32(EVIPL), []digest{d[0], {0x000D, make([]byte, 64)}}, nil), ErrBank},
		{"SHA-384 digest in a SHA-256 log", func() []byte {
			h := goodHeader()
			h.algs = h.algs[:1]
			w := &logBuilder{}
			w.header(h)
			w.record(0, uint32(EVIPL), d[1:], nil)
			return w.Bytes()
		}(), ErrBank},
		{"separator of other data", withRecord(0, uint32(EVSeparator), both([]byte{1, 0, 0, 0}), sep), ErrDigest},
		{"S-CRTM version of other data", withRecord(0, uint32(EVSCRTMVersion), d, []byte("v1")), ErrDigest},
		{"event data of MaxEventDataSize+1 bytes", withRecord(0, uint32(EVIPL), d, make([]byte, MaxEventDataSize+1)), ErrTooLarge},
		{"EventSize 0xffffffff", func() []byte {
			b := withRecord(0, uint32(EVIPL), d, nil)
			copy(b[len(b)-4:], []byte{0xff, 0xff, 0xff, 0xff})
			return b
		}(), ErrTooLarge},
		{"MaxEvents+1 records", manyRecords(MaxEvents + 1), ErrTooLarge},
		{"more than MaxLogSize", append(bytes.Clone(good), make([]byte, MaxLogSize)...), ErrTooLarge},

		// Truncation and trailing bytes.
		{"truncated in the event data", good[:len(good)-1], ErrTruncated},
		{"truncated in EventSize", good[:len(good)-6], ErrTruncated},
		{"truncated in a digest", good[:69+12+2+10], ErrTruncated},
		{"truncated in the hash algorithm", good[:69+12+1], ErrTruncated},
		{"truncated in the digest count", good[:69+10], ErrTruncated},
		{"truncated in PCRIndex", good[:69+2], ErrTruncated},
		{"one trailing zero byte", append(bytes.Clone(good), 0), ErrTruncated},
		{"eight trailing zero bytes", append(bytes.Clone(good), make([]byte, 8)...), ErrTruncated},
		{"trailing zero padding", append(bytes.Clone(good), make([]byte, 200)...), ErrEventType},
		{"trailing 0xff padding", append(bytes.Clone(good), bytes.Repeat([]byte{0xff}, 200)...), ErrRegister},
		{"trailing text", append(bytes.Clone(good), "garbage after the log"...), ErrRegister},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseLog(tt.log)
			if err == nil {
				t.Fatal("accepted")
			}
			if l != nil {
				t.Error("a Log along with the error")
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("%T, not a *ParseError", err)
			}
			if pe.Offset < 0 || pe.Offset > len(tt.log) {
				t.Errorf("offset %d of %d bytes", pe.Offset, len(tt.log))
			}
			if !strings.HasPrefix(err.Error(), "measure: event log") {
				t.Errorf("message %q", err)
			}
		})
	}
}

// The error says which record, where, and why.
func TestParseErrorMessage(t *testing.T) {
	w := &logBuilder{}
	w.header(goodHeader())
	w.record(2, uint32(EVIPL), both(nil), nil)
	w.record(1, 0x80000001, both(nil), nil)
	_, err := ParseLog(w.Bytes())
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	// Header 69 bytes, record 1 100 bytes, then record 2's EventType.
	want := "measure: event log record 2 at offset 173: event type EventType(0x80000001)"
	if pe.Record != 2 || pe.Offset != 69+100+4 || err.Error() != want {
		t.Errorf("got record %d offset %d %q, want %q", pe.Record, pe.Offset, err, want)
	}
}

// Logs with vendor info, a server platform class, another errata and a
// 32-bit UINTN are accepted, and marshal back as they were.
func TestParseLogHeaderVariants(t *testing.T) {
	for _, f := range []func(h *header){
		func(h *header) { h.vendorInfo = []byte("rootline") },
		func(h *header) { h.vendorInfo = bytes.Repeat([]byte{7}, 255) },
		func(h *header) { h.platformClass = 1 },
		func(h *header) { h.errata = 0 },
		func(h *header) { h.uintn = 1 },
		func(h *header) { h.algs = h.algs[1:] },
		func(h *header) { h.algs[0], h.algs[1] = h.algs[1], h.algs[0] },
	} {
		h := goodHeader()
		f(&h)
		w := &logBuilder{}
		w.header(h)
		l, err := ParseLog(w.Bytes())
		if err != nil {
			t.Errorf("%+v: %v", h, err)
			continue
		}
		if b := marshal(t, l); !bytes.Equal(b, w.Bytes()) {
			t.Errorf("%+v: marshals to other bytes", h)
		}
		if len(l.Events()) != 0 {
			t.Errorf("events in a header-only log")
		}
		if len(l.Banks()) != len(h.algs) {
			t.Errorf("banks %v", l.Banks())
		}
	}
	// A restored SHA-384-first log keeps its order.
	h := goodHeader()
	h.algs[0], h.algs[1] = h.algs[1], h.algs[0]
	w := &logBuilder{}
	w.header(h)
	d := both(nil)
	w.record(0, uint32(EVIPL), []digest{d[1], d[0]}, nil)
	l, err := ParseLog(w.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(l)
	if err != nil {
		t.Fatal(err)
	}
	if b := r.Banks(); b[0] != crypto.SHA384 || b[1] != crypto.SHA256 {
		t.Errorf("banks %v", b)
	}
	if !bytes.Equal(marshal(t, r.Log()), w.Bytes()) {
		t.Error("restored log differs")
	}
}
