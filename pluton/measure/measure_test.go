package measure

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, banks := range [][]crypto.Hash{nil, {crypto.SHA256}, {crypto.SHA384}, {crypto.SHA384, crypto.SHA256}} {
		t.Run(fmt.Sprint(banks), func(t *testing.T) {
			r := sampleRegisters(t, banks...)
			b := marshal(t, r.Log())
			l, err := ParseLog(b)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l.Banks(), r.Banks()) {
				t.Errorf("banks %v, want %v", l.Banks(), r.Banks())
			}
			if !reflect.DeepEqual(l.Events(), r.Log().Events()) {
				t.Errorf("events differ after the round trip")
			}
			if again := marshal(t, l); !bytes.Equal(again, b) {
				t.Errorf("re-marshalled log differs")
			}
			got, err := l.Replay()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(r.Banks()) {
				t.Errorf("Replay gave %d banks, want %d", len(got), len(r.Banks()))
			}
			for _, h := range r.Banks() {
				want, err := r.Values(h)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got[h], want) {
					t.Errorf("%v: Replay differs from Values", h)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Banks(); !slices.Equal(got, []crypto.Hash{crypto.SHA256, crypto.SHA384}) {
		t.Errorf("default banks %v", got)
	}
	for _, h := range r.Banks() {
		v, err := r.Values(h)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != NumRegisters {
			t.Fatalf("%d registers", len(v))
		}
		for i, x := range v {
			if !bytes.Equal(x, make([]byte, h.Size())) {
				t.Errorf("%v register %d starts at %x", h, i, x)
			}
		}
	}
	if l := r.Log(); len(l.Events()) != 0 {
		t.Errorf("a new log has %d events", len(l.Events()))
	}
	for _, bad := range [][]crypto.Hash{{crypto.SHA1}, {crypto.SHA512}, {crypto.SHA256, crypto.SHA256}, {crypto.SHA256, crypto.SHA3_256}, {0}} {
		if _, err := New(bad...); !errors.Is(err, ErrBank) {
			t.Errorf("New(%v): %v, want ErrBank", bad, err)
		}
	}
}

// The extend operation against an independent computation: TPM 2.0 Library
// Part 1, clause 17, "Extend of a PCR": PCR_new := H(PCR_old || digest),
// the PCR starting all-zeros. The separator digests are those every TPM 2.0
// event log carries for EV_SEPARATOR with data 00000000; the extended values
// were computed with coreutils:
//
//	(head -c 32 /dev/zero; printf '\0\0\0\0' | sha256sum | cut -d' ' -f1 | xxd -r -p) | sha256sum
//	(head -c 48 /dev/zero; printf '\0\0\0\0' | sha384sum | cut -d' ' -f1 | xxd -r -p) | sha384sum
func TestExtendKnownAnswer(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	const (
		sepSHA256 = "df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119"
		sepSHA384 = "394341b7182cd227c5c6b07ef8000cdfd86136c4292b8e576573ad7ed9ae41019f5818b4b971c9effc60e1ad9f1289f0"
		pcrSHA256 = "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969"
		pcrSHA384 = "518923b0f955d08da077c96aaba522b9decede61c599cea6c41889cfbea4ae4d50529d96fe4d1afdafb65e7f95bf23c4"
	)

	// The same by crypto/sha256 and crypto/sha512, literally.
	d256 := sha256.Sum256(sep)
	p256 := sha256.Sum256(append(make([]byte, 32), d256[:]...))
	d384 := sha512.Sum384(sep)
	p384 := sha512.Sum384(append(make([]byte, 48), d384[:]...))
	if hex.EncodeToString(d256[:]) != sepSHA256 || hex.EncodeToString(p256[:]) != pcrSHA256 ||
		hex.EncodeToString(d384[:]) != sepSHA384 || hex.EncodeToString(p384[:]) != pcrSHA384 {
		t.Fatal("the independent computation disagrees with the constants")
	}

	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Measure(7, EVSeparator, sep, sep); err != nil {
		t.Fatal(err)
	}
	for h, want := range map[crypto.Hash]string{crypto.SHA256: pcrSHA256, crypto.SHA384: pcrSHA384} {
		v, err := r.Value(h, 7)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(v) != want {
			t.Errorf("%v register 7 = %x, want %s", h, v, want)
		}
	}
	e := r.Log().Events()[0]
	if hex.EncodeToString(e.Digests[crypto.SHA256]) != sepSHA256 || hex.EncodeToString(e.Digests[crypto.SHA384]) != sepSHA384 {
		t.Errorf("logged digests %x", e.Digests)
	}

	// A second extend chains on the first.
	if err := r.ExtendDigests(7, EVSeparator, map[crypto.Hash][]byte{crypto.SHA256: d256[:], crypto.SHA384: d384[:]}, sep); err != nil {
		t.Fatal(err)
	}
	p256b := sha256.Sum256(append(p256[:], d256[:]...))
	if v, _ := r.Value(crypto.SHA256, 7); !bytes.Equal(v, p256b[:]) {
		t.Errorf("second extend: %x, want %x", v, p256b)
	}
}

// The byte layout, written out by hand from PFP §10.4.5.1 (TCG_PCR_EVENT
// and TCG_EfiSpecIDEvent) and the TCG_PCR_EVENT2 structure, little-endian.
func TestMarshalLayout(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	sep := []byte{0, 0, 0, 0}
	if err := r.Measure(7, EVSeparator, sep, sep); err != nil {
		t.Fatal(err)
	}
	want := mustHex("" +
		// TCG_PCR_EVENT: PCRIndex 0, EventType EV_NO_ACTION (3), 20 zero
		// bytes of SHA-1 digest, EventSize 37.
		"00000000 03000000 0000000000000000000000000000000000000000 25000000" +
		// TCG_EfiSpecIDEvent: "Spec ID Event03\0", platformClass 0,
		// specVersionMinor 0, specVersionMajor 2, specErrata 2, uintnSize 2,
		// numberOfAlgorithms 2, {0x000B, 32}, {0x000C, 48}, vendorInfoSize 0.
		"53706563204944204576656e74303300 00000000 00 02 02 02 02000000 0b00 2000 0c00 3000 00" +
		// TCG_PCR_EVENT2: PCRIndex 7, EventType EV_SEPARATOR (4),
		// TPML_DIGEST_VALUES count 2, TPM_ALG_SHA256 digest,
		// TPM_ALG_SHA384 digest, EventSize 4, event 00000000.
		"07000000 04000000 02000000" +
		"0b00 df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119" +
		"0c00 394341b7182cd227c5c6b07ef8000cdfd86136c4292b8e576573ad7ed9ae41019f5818b4b971c9effc60e1ad9f1289f0" +
		"04000000 00000000")
	got := marshal(t, r.Log())
	if !bytes.Equal(got, want) {
		t.Errorf("MarshalBinary:\n got %x\nwant %x", got, want)
	}
	if len(got) != r.size {
		t.Errorf("tracked size %d, marshalled %d", r.size, len(got))
	}
}

func TestMeasureRefusals(t *testing.T) {
	sep := []byte{0, 0, 0, 0}
	good256 := make([]byte, 32)
	good384 := make([]byte, 48)
	tests := []struct {
		name string
		do   func(r *Registers) error
		want error
	}{
		{"register -1", func(r *Registers) error { return r.Measure(-1, EVIPL, nil, nil) }, ErrRegister},
		{"register 24", func(r *Registers) error { return r.Measure(NumRegisters, EVIPL, nil, nil) }, ErrRegister},
		{"EV_NO_ACTION", func(r *Registers) error { return r.Measure(0, EVNoAction, nil, nil) }, ErrNoAction},
		{"EV_PREBOOT_CERT", func(r *Registers) error { return r.Measure(0, 0, nil, nil) }, ErrEventType},
		{"EV_UNUSED", func(r *Registers) error { return r.Measure(0, 2, nil, nil) }, ErrEventType},
		{"EV_EFI_ACTION", func(r *Registers) error { return r.Measure(0, 0x80000007, nil, nil) }, ErrEventType},
		{"oversized data", func(r *Registers) error {
			return r.Measure(0, EVIPL, nil, make([]byte, MaxEventDataSize+1))
		}, ErrTooLarge},
		{"separator of other data", func(r *Registers) error { return r.Measure(0, EVSeparator, sep, []byte{1, 0, 0, 0}) }, ErrDigest},
		{"S-CRTM version of other data", func(r *Registers) error { return r.Measure(0, EVSCRTMVersion, []byte("a"), []byte("b")) }, ErrDigest},
		{"missing bank", func(r *Registers) error {
			return r.ExtendDigests(0, EVIPL, map[crypto.Hash][]byte{crypto.SHA256: good256}, nil)
		}, ErrDigest},
		{"extra bank", func(r *Registers) error {
			return r.ExtendDigests(0, EVIPL, map[crypto.Hash][]byte{crypto.SHA256: good256, crypto.SHA384: good384, crypto.SHA512: make([]byte, 64)}, nil)
		}, ErrBank},
		{"short digest", func(r *Registers) error {
			return r.ExtendDigests(0, EVIPL, map[crypto.Hash][]byte{crypto.SHA256: good256[:31], crypto.SHA384: good384}, nil)
		}, ErrDigest},
		{"long digest", func(r *Registers) error {
			return r.ExtendDigests(0, EVIPL, map[crypto.Hash][]byte{crypto.SHA256: good256, crypto.SHA384: append(good384, 0)}, nil)
		}, ErrDigest},
		{"separator digests not of its data", func(r *Registers) error {
			return r.ExtendDigests(0, EVSeparator, map[crypto.Hash][]byte{crypto.SHA256: good256, crypto.SHA384: good384}, sep)
		}, ErrDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleRegisters(t)
			before := marshal(t, r.Log())
			err := tt.do(r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "measure: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if after := marshal(t, r.Log()); !bytes.Equal(after, before) {
				t.Error("a refused measurement changed the log")
			}
			l, _ := ParseLog(before)
			want, _ := l.Replay()
			for _, h := range r.Banks() {
				if v, _ := r.Values(h); !reflect.DeepEqual(v, want[h]) {
					t.Errorf("a refused measurement changed the %v registers", h)
				}
			}
		})
	}

	// ExtendDigests with the right digests of the separator works.
	r := sampleRegisters(t)
	d256, d384 := sha256.Sum256(sep), sha512.Sum384(sep)
	if err := r.ExtendDigests(9, EVSeparator, map[crypto.Hash][]byte{crypto.SHA256: d256[:], crypto.SHA384: d384[:]}, sep); err != nil {
		t.Error(err)
	}
}

func TestLimits(t *testing.T) {
	t.Run("MaxEvents", func(t *testing.T) {
		r, err := New(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		for i := range MaxEvents {
			if err := r.Measure(i%NumRegisters, EVCompactHash, []byte{byte(i)}, nil); err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
		}
		if err := r.Measure(0, EVCompactHash, nil, nil); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("event MaxEvents+1: %v", err)
		}
		b := marshal(t, r.Log())
		l, err := ParseLog(b)
		if err != nil {
			t.Fatalf("a log of MaxEvents events: %v", err)
		}
		if len(l.Events()) != MaxEvents {
			t.Errorf("%d events", len(l.Events()))
		}
	})
	t.Run("MaxLogSize", func(t *testing.T) {
		r, err := New()
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, MaxEventDataSize)
		n := 0
		for ; ; n++ {
			if err := r.Measure(0, EVIPL, nil, data); err != nil {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatal(err)
				}
				break
			}
		}
		b := marshal(t, r.Log())
		if len(b) > MaxLogSize || len(b)+recordSize(r.Banks(), len(data)) <= MaxLogSize {
			t.Errorf("stopped at %d bytes after %d events", len(b), n)
		}
		if _, err := ParseLog(b); err != nil {
			t.Errorf("the largest log: %v", err)
		}
	})
}

func TestValueErrors(t *testing.T) {
	r, err := New(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Value(crypto.SHA384, 0); !errors.Is(err, ErrBank) {
		t.Errorf("Value of a missing bank: %v", err)
	}
	if _, err := r.Values(crypto.SHA384); !errors.Is(err, ErrBank) {
		t.Errorf("Values of a missing bank: %v", err)
	}
	for _, i := range []int{-1, NumRegisters} {
		if _, err := r.Value(crypto.SHA256, i); !errors.Is(err, ErrRegister) {
			t.Errorf("Value(%d): %v", i, err)
		}
	}
}

// What Log, Events, Values and Value return is a copy.
func TestCopies(t *testing.T) {
	r := sampleRegisters(t)
	before := marshal(t, r.Log())
	l := r.Log()
	ev := l.Events()
	ev[0].Data[0] ^= 1
	ev[0].Digests[crypto.SHA256][0] ^= 1
	l.Banks()[0] = crypto.SHA1
	r.Banks()[0] = crypto.SHA1
	v, _ := r.Values(crypto.SHA256)
	v[0][0] ^= 1
	x, _ := r.Value(crypto.SHA256, 0)
	x[0] ^= 1
	if !bytes.Equal(marshal(t, l), before) || !bytes.Equal(marshal(t, r.Log()), before) {
		t.Error("changing a copy changed the log")
	}
	if err := l.Verify(map[crypto.Hash]map[int][]byte{crypto.SHA256: {0: mustValue(t, r, crypto.SHA256, 0)}}); err != nil {
		t.Errorf("changing a copy changed the registers: %v", err)
	}
	// A log taken earlier does not see later extends.
	if err := r.Measure(1, EVIPL, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(marshal(t, l), before) {
		t.Error("a later extend changed an earlier Log")
	}
}

func mustValue(t testing.TB, r *Registers, h crypto.Hash, i int) []byte {
	t.Helper()
	v, err := r.Value(h, i)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	r := sampleRegisters(t)
	l, err := ParseLog(marshal(t, r.Log()))
	if err != nil {
		t.Fatal(err)
	}
	quote := func() map[crypto.Hash]map[int][]byte {
		q := map[crypto.Hash]map[int][]byte{}
		for _, h := range r.Banks() {
			q[h] = map[int][]byte{}
			for i := range NumRegisters {
				q[h][i] = mustValue(t, r, h, i)
			}
		}
		return q
	}
	if err := l.Verify(quote()); err != nil {
		t.Fatalf("untampered: %v", err)
	}
	if err := l.Verify(map[crypto.Hash]map[int][]byte{crypto.SHA384: {4: mustValue(t, r, crypto.SHA384, 4)}}); err != nil {
		t.Fatalf("one register of one bank: %v", err)
	}

	tests := []struct {
		name   string
		tamper func(q map[crypto.Hash]map[int][]byte)
		bank   crypto.Hash
		bad    []int
	}{
		{"SHA-256 registers 3 and 7", func(q map[crypto.Hash]map[int][]byte) {
			q[crypto.SHA256][7][0] ^= 1
			q[crypto.SHA256][3][31] ^= 0x80
		}, crypto.SHA256, []int{3, 7}},
		{"SHA-384 register 23", func(q map[crypto.Hash]map[int][]byte) {
			q[crypto.SHA384][23][5] ^= 1
		}, crypto.SHA384, []int{23}},
		{"unused register 20 claimed non-zero", func(q map[crypto.Hash]map[int][]byte) {
			q[crypto.SHA256][20][0] = 1
		}, crypto.SHA256, []int{20}},
		{"short value", func(q map[crypto.Hash]map[int][]byte) {
			q[crypto.SHA256][0] = q[crypto.SHA256][0][:31]
		}, crypto.SHA256, []int{0}},
		{"both banks: the first in the log's order is named", func(q map[crypto.Hash]map[int][]byte) {
			q[crypto.SHA384][1][0] ^= 1
			q[crypto.SHA256][2][0] ^= 1
			q[crypto.SHA256][0][0] ^= 1
		}, crypto.SHA256, []int{0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := quote()
			tt.tamper(q)
			err := l.Verify(q)
			var re *ReplayError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *ReplayError", err)
			}
			if !errors.Is(err, ErrReplay) || errors.Is(err, ErrMalformed) {
				t.Errorf("errors.Is: %v", err)
			}
			if re.Bank != tt.bank || !slices.Equal(re.Mismatched, tt.bad) {
				t.Errorf("got %v %v, want %v %v", re.Bank, re.Mismatched, tt.bank, tt.bad)
			}
			for _, i := range tt.bad {
				if !strings.Contains(err.Error(), strconv.Itoa(i)) {
					t.Errorf("%q does not name register %d", err, i)
				}
			}
		})
	}

	re := &ReplayError{Bank: crypto.SHA256, Mismatched: []int{3, 7}}
	if got, want := re.Error(), "measure: event log does not reproduce SHA-256 registers 3, 7"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	if err := l.Verify(nil); err == nil {
		t.Error("Verify(nil) succeeded")
	}
	if err := l.Verify(map[crypto.Hash]map[int][]byte{crypto.SHA256: {}}); err == nil {
		t.Error("Verify of no registers succeeded")
	}
	l256, _ := ParseLog(marshal(t, sampleRegisters(t, crypto.SHA256).Log()))
	if err := l256.Verify(map[crypto.Hash]map[int][]byte{crypto.SHA384: {0: make([]byte, 48)}}); !errors.Is(err, ErrBank) {
		t.Errorf("a bank the log lacks: %v", err)
	}
	for _, i := range []int{-1, NumRegisters} {
		if err := l.Verify(map[crypto.Hash]map[int][]byte{crypto.SHA256: {i: make([]byte, 32)}}); !errors.Is(err, ErrRegister) {
			t.Errorf("register %d: %v", i, err)
		}
	}
}

// Flipping any bit of a log is caught by ParseLog or by Verify against the
// true register values, except in the places no digest covers (as in every
// TCG log): the event type (when it becomes another accepted type), the
// event data of events whose digest is not that of their data (which is why
// a verifier appraises digests, not event types or data), and the header's
// specErrata and platformClass (0 ↔ 1), which do not change what the log
// means.
func TestTamperedLogBytes(t *testing.T) {
	r := sampleRegisters(t)
	b := marshal(t, r.Log())
	truth := map[crypto.Hash]map[int][]byte{}
	for _, h := range r.Banks() {
		truth[h] = map[int][]byte{}
		for i := range NumRegisters {
			truth[h][i] = mustValue(t, r, h, i)
		}
	}

	// The byte ranges no check covers.
	type span struct{ from, to int }
	var free []span
	const errataOff, classOff = 32 + 16 + 4 + 2, 32 + 16
	free = append(free, span{errataOff, errataOff + 1}, span{classOff, classOff + 1})
	off := r.Log().headerSize()
	for _, e := range r.Log().Events() {
		rs := recordSize(r.Banks(), len(e.Data))
		free = append(free, span{off + 4, off + 8}) // EventType
		if !digestOfData(e.Type) {
			free = append(free, span{off + rs - len(e.Data), off + rs})
		}
		off += rs
	}
	if off != len(b) {
		t.Fatalf("sizes: %d, %d", off, len(b))
	}
	isFree := func(i int) bool {
		for _, s := range free {
			if s.from <= i && i < s.to {
				return true
			}
		}
		return false
	}

	for i := range b {
		for bit := range 8 {
			c := bytes.Clone(b)
			c[i] ^= 1 << bit
			l, err := ParseLog(c)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("byte %d bit %d: %v does not wrap ErrMalformed", i, bit, err)
				}
				continue
			}
			err = l.Verify(truth)
			if err != nil {
				if !errors.Is(err, ErrReplay) {
					t.Fatalf("byte %d bit %d: %v", i, bit, err)
				}
				continue
			}
			if !isFree(i) {
				t.Errorf("byte %d bit %d: tampering not detected", i, bit)
			}
		}
	}
}

func TestRestore(t *testing.T) {
	r := sampleRegisters(t)
	b := marshal(t, r.Log())
	l, err := ParseLog(b)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Restore(l)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r2.Banks(), r.Banks()) {
		t.Errorf("banks %v", r2.Banks())
	}
	for _, reg := range []*Registers{r, r2} {
		if err := reg.Measure(11, EVIPL, []byte("next"), []byte("next layer")); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range r.Banks() {
		v1, _ := r.Values(h)
		v2, _ := r2.Values(h)
		if !reflect.DeepEqual(v1, v2) {
			t.Errorf("%v: restored registers differ", h)
		}
	}
	if !bytes.Equal(marshal(t, r.Log()), marshal(t, r2.Log())) {
		t.Error("restored log differs")
	}
	if r2.size != len(marshal(t, r2.Log())) {
		t.Errorf("tracked size %d", r2.size)
	}
	if !bytes.Equal(marshal(t, l), b) {
		t.Error("extending the restored registers changed the log they were restored from")
	}

	if _, err := Restore(nil); err == nil {
		t.Error("Restore(nil) succeeded")
	}
	if _, err := Restore(&Log{}); !errors.Is(err, ErrBank) {
		t.Errorf("Restore(&Log{}): %v", err)
	}
	if _, err := (&Log{}).MarshalBinary(); !errors.Is(err, ErrBank) {
		t.Errorf("MarshalBinary of a zero Log: %v", err)
	}
	if _, err := (&Log{}).Replay(); !errors.Is(err, ErrBank) {
		t.Errorf("Replay of a zero Log: %v", err)
	}
	if ev := (&Log{}).Events(); ev != nil {
		t.Errorf("Events of a zero Log: %v", ev)
	}
}

func TestConcurrent(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := r.Measure(w, EVIPL, []byte{byte(w), byte(i)}, nil); err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Values(crypto.SHA384); err != nil {
					t.Error(err)
					return
				}
				_ = r.Log()
			}
		})
	}
	wg.Wait()
	l := r.Log()
	if n := len(l.Events()); n != workers*each {
		t.Fatalf("%d events", n)
	}
	q := map[crypto.Hash]map[int][]byte{crypto.SHA256: {}, crypto.SHA384: {}}
	for h := range q {
		for i := range NumRegisters {
			q[h][i] = mustValue(t, r, h, i)
		}
	}
	if err := l.Verify(q); err != nil {
		t.Error(err)
	}
}

func TestEventTypeString(t *testing.T) {
	for typ, want := range map[EventType]string{
		EVSeparator:    "EV_SEPARATOR",
		EVNoAction:     "EV_NO_ACTION",
		EVSCRTMVersion: "EV_S_CRTM_VERSION",
		0x80000001:     "EventType(0x80000001)",
		2:              "EventType(0x00000002)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint32(typ), got, want)
		}
	}
}
