package dice

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/rootline/rootline/pluton"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The FWID digests of Project Cerberus' tests (X509_RIOT_SHA*_FWID), as
// they appear in its DER below.
const (
	cerberusSHA1   = "fc3d91e6c113d6821833f65b12c7e76e7f389c4f"
	cerberusSHA256 = "8869de579dd0e905e0a71124575594f50a03d3d9cdf16e9a3f9d6c60c0324b54"
	cerberusSHA384 = "d331f153077efbad738eea4f3e0c5d3f6b604d7b32b6a2e8b0eb4e4e7fc9527b" +
		"c60444f2047eacc1ec880bffd0b1c1f2"
	cerberusSHA512 = "39b8299b4330cb1e8b51facb7679af47ea35bfeab91b34d09e0aacc9de648060" +
		"298d86d5479d4eb568dfe0eab62c0e4a47907e2809b84b21dd6bc741ca09003a"
)

// tcbInfoVector is a published DiceTcbInfo encoding and the TcbInfo it
// holds (see testdata/SOURCE.md).
type tcbInfoVector struct {
	name string
	der  string
	want func(t testing.TB) *TcbInfo
}

func tcbInfoVectors() []tcbInfoVector {
	fwid := func(h crypto.Hash, d string) FWID {
		b, _ := hex.DecodeString(d)
		return FWID{Hash: h, Digest: b}
	}
	cerberus := func(svn uint64, fwids ...FWID) func(testing.TB) *TcbInfo {
		return func(testing.TB) *TcbInfo {
			return &TcbInfo{Version: "1.2.3.4", SVN: svn, HasSVN: true, FWIDs: fwids}
		}
	}
	return []tcbInfoVector{
		// Azure/Project-Cerberus, core/testing/asn1/dice/
		// x509_extension_builder_dice_tcbinfo_test.c at commit
		// e40432d08b4e39911d0b363d635f6772864a42ce (MIT):
		// X509_EXTENSION_BUILDER_DICE_TCBINFO_TESTING_DATA_*, built from
		// X509_RIOT_VERSION "1.2.3.4", X509_RIOT_SVN 12 34 56 78 and one FWID.
		{"Cerberus/SHA1", `30308207312e322e332e34830412345678a61f301d06052b0e03021a0414` + cerberusSHA1,
			cerberus(0x12345678, fwid(crypto.SHA1, cerberusSHA1))},
		{"Cerberus/SHA256", `30408207312e322e332e34830412345678a62f302d0609608648016503040201 0420` + cerberusSHA256,
			cerberus(0x12345678, fwid(crypto.SHA256, cerberusSHA256))},
		{"Cerberus/SHA384", `30508207312e322e332e34830412345678a63f303d0609608648016503040202 0430` + cerberusSHA384,
			cerberus(0x12345678, fwid(crypto.SHA384, cerberusSHA384))},
		{"Cerberus/SHA512", `30608207312e322e332e34830412345678a64f304d0609608648016503040203 0440` + cerberusSHA512,
			cerberus(0x12345678, fwid(crypto.SHA512, cerberusSHA512))},
		{"Cerberus/SVN_ZERO", `303d8207312e322e332e34830100a62f302d0609608648016503040201 0420` + cerberusSHA256,
			cerberus(0, fwid(crypto.SHA256, cerberusSHA256))},
		// The same file, later version (with the layer field):
		// ..._TESTING_DATA_LAYER_1000 and ..._TESTING_DATA_FULL.
		{"Cerberus/LAYER_1000", `30448207312e322e332e34830412345678840203e8a62f302d0609608648016503040201 0420` + cerberusSHA256,
			func(t testing.TB) *TcbInfo {
				v := cerberus(0x12345678, fwid(crypto.SHA256, cerberusSHA256))(t)
				v.Layer, v.HasLayer = 1000, true
				return v
			}},
		{"Cerberus/FULL", `30820100 800656656e646f72 81054d6f64656c 8207312e322e332e34 830412345678 840103
			a681dc
			302d0609608648016503040201 0420` + cerberusSHA256 + `
			301d06052b0e03021a 0414` + cerberusSHA1 + `
			304d0609608648016503040203 0440` + cerberusSHA512 + `
			303d0609608648016503040202 0430` + cerberusSHA384,
			func(testing.TB) *TcbInfo {
				return &TcbInfo{
					Vendor: "Vendor", Model: "Model", Version: "1.2.3.4",
					SVN: 0x12345678, HasSVN: true, Layer: 3, HasLayer: true,
					FWIDs: []FWID{
						fwid(crypto.SHA256, cerberusSHA256),
						fwid(crypto.SHA1, cerberusSHA1),
						fwid(crypto.SHA512, cerberusSHA512),
						fwid(crypto.SHA384, cerberusSHA384),
					},
				}
			}},
		// NVIDIA/attestation-sdk, nv-attestation-sdk-cpp/unit-tests/
		// dice_tcb_info_test.cpp at commit
		// 443b9e3ae6cd1dedc7d504ab6b54b1478819f4e9 (Apache-2.0),
		// ParseFromDerBlackwell: "a real Blackwell DiceTcbInfo extension"
		// with every field but flagsMask, and flags = notConfigured |
		// fixedWidth (87 05 00 80 00 00 01).
		{"NVIDIA/Blackwell", `3081b1 80064e5649444941 810d47423130302041303120475350 82023031
			830101 840100 850100
			a67e
			303d06096086480165030402020430
			d090cab1b6e6ffddca83d1781e25b3f040fa1f3c7608230cb5f41b1c1b99f5f748349e59d0ef8eb830c9bc79ccf77502
			303d06096086480165030402020430
			000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
			870500800000 01 8801c0 890100`,
			func(testing.TB) *TcbInfo {
				return &TcbInfo{
					Vendor: "NVIDIA", Model: "GB100 A01 GSP", Version: "01",
					SVN: 1, HasSVN: true, Layer: 0, HasLayer: true, Index: 0, HasIndex: true,
					FWIDs: []FWID{
						fwid(crypto.SHA384, "d090cab1b6e6ffddca83d1781e25b3f040fa1f3c7608230cb5f41b1c1b99f5f748349e59d0ef8eb830c9bc79ccf77502"),
						fwid(crypto.SHA384, strings.Repeat("00", 48)),
					},
					Flags: FlagNotConfigured | FlagFixedWidth, HasFlags: true,
					VendorInfo: []byte{0xc0},
					Type:       []byte{0x00},
				}
			}},
	}
}

// TestTcbInfoKnownAnswers parses published DiceTcbInfo encodings and checks
// the fields, and marshals the fields back to the same bytes.
func TestTcbInfoKnownAnswers(t *testing.T) {
	for _, v := range tcbInfoVectors() {
		t.Run(v.name, func(t *testing.T) {
			der := mustHex(t, v.der)
			want := v.want(t)
			got, err := ParseTcbInfo(der)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parsed\n%+v\nwant\n%+v", got, want)
			}
			enc, err := want.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, der) {
				t.Errorf("Marshal:\n%x\nwant\n%x", enc, der)
			}
		})
	}
}

// TestOperationalFlagsDER checks the named-bit BIT STRING encoding of the
// flags, hand-derived from X.690: §8.6.2.1 (named bit n is bit 8-(n mod 8)
// of octet n/8, counting bits from 8, the most significant, down),
// §8.6.2.2 (the initial octet counts the unused bits of the last one),
// §8.6.2.3 (an empty bit string is the single octet 00), §11.2.1 (unused
// bits are zero), §11.2.2 (trailing zero bits removed). Each case is the
// whole DiceTcbInfo SEQUENCE holding only flags: 30 len 87 len contents.
func TestOperationalFlagsDER(t *testing.T) {
	for _, c := range []struct {
		name  string
		flags OperationalFlags
		der   string
	}{
		// No bit: the empty bit string, initial octet 00 and nothing else.
		{"none", 0, "3003 8701 00"},
		// notConfigured (0): one bit, "1"; seven unused: 07, 1000 0000.
		{"notConfigured", FlagNotConfigured, "3004 8702 07 80"},
		// debug (3) alone: bits 0-3 are "0001", trailing zeros none (bit 3
		// is the last), four unused bits: 04, 0001 0000 = 10.
		{"debug", FlagDebug, "3004 8702 04 10"},
		// notConfigured|debug: "1001", four unused: 04, 1001 0000 = 90.
		{"notConfigured|debug", FlagNotConfigured | FlagDebug, "3004 8702 04 90"},
		// recovery (2): "001", five unused: 05, 0010 0000 = 20.
		{"recovery", FlagRecovery, "3004 8702 05 20"},
		// notImmutable (7): eight bits "0000 0001", none unused: 00, 01.
		{"notImmutable", FlagNotImmutable, "3004 8702 00 01"},
		// notTcb (8): nine bits, two octets, seven unused: 07, 00, 1000 0000.
		{"notTcb", FlagNotTcb, "3005 8703 07 00 80"},
		// bits 0-8, all nine of v1.1 below 31: 07, ff, 80.
		{"all below 31", 0x1ff, "3005 8703 07 ff 80"},
		// bit 9, unnamed: ten bits, six unused: 06, 00, 0100 0000 = 40.
		{"bit 9", 1 << 9, "3005 8703 06 00 40"},
		// fixedWidth (31): 32 bits, none unused, the last bit of 4 octets.
		{"fixedWidth", FlagFixedWidth, "3007 8705 00 00 00 00 01"},
		// notConfigured|fixedWidth, as in NVIDIA's Blackwell certificate.
		{"notConfigured|fixedWidth", FlagNotConfigured | FlagFixedWidth, "3007 8705 00 80 00 00 01"},
		// debug|notSecure|fixedWidth: 0101 0000 ... 0000 0001.
		{"notSecure|debug|fixedWidth", FlagNotSecure | FlagDebug | FlagFixedWidth, "3007 8705 00 50 00 00 01"},
	} {
		t.Run(c.name, func(t *testing.T) {
			der := mustHex(t, c.der)
			enc, err := (&TcbInfo{Flags: c.flags, HasFlags: true}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, der) {
				t.Errorf("Marshal: %x, want %x", enc, der)
			}
			got, err := ParseTcbInfo(der)
			if err != nil {
				t.Fatal(err)
			}
			if !got.HasFlags || got.Flags != c.flags {
				t.Errorf("parsed flags %v (present %v), want %v", got.Flags, got.HasFlags, c.flags)
			}
			// An independent decoder: encoding/asn1 reads the same contents
			// as a universal BIT STRING, numbering bits as §8.6.2.1 does.
			var bs asn1.BitString
			if rest, err := asn1.Unmarshal(append([]byte{tagBitString}, der[3:]...), &bs); err != nil || len(rest) != 0 {
				t.Fatalf("encoding/asn1: %v", err)
			}
			for n := range 32 {
				if want := int(c.flags>>n) & 1; bs.At(n) != want {
					t.Errorf("encoding/asn1 reads bit %d as %d, want %d", n, bs.At(n), want)
				}
			}
			// flagsMask [10] is the same type: the same contents under 8a.
			mask := bytes.Clone(der)
			mask[2] = 0x8a
			got, err = ParseTcbInfo(mask)
			if err != nil || !got.HasFlagsMask || got.FlagsMask != c.flags || got.HasFlags {
				t.Errorf("as flagsMask: %+v, %v", got, err)
			}
		})
	}
}

func TestOperationalFlagsString(t *testing.T) {
	for f, want := range map[OperationalFlags]string{
		0:                                  "none",
		FlagDebug:                          "debug",
		FlagNotConfigured | FlagFixedWidth: "notConfigured|fixedWidth",
		FlagNotTcb | 1<<12:                 "notTcb|bit(12)",
	} {
		if got := f.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint32(f), got, want)
		}
	}
}

// TestParseTcbInfoRejects checks that non-DER encodings, and values TcbInfo
// cannot hold, are refused with a *TcbInfoError naming the field.
func TestParseTcbInfoRejects(t *testing.T) {
	sha256FWID := "302d0609608648016503040201 0420" + cerberusSHA256
	manyFWIDs := strings.Repeat(sha256FWID, MaxFWIDs+1)
	for _, c := range []struct {
		name, der, field string
	}{
		{"empty input", "", ""},
		{"not a SEQUENCE", "3100", ""},
		{"trailing data", "3000 00", ""},
		{"truncated", "3005 8003 4142", ""},
		{"indefinite length", "3080 800141 0000", ""},
		{"non-minimal length 81", "308103 800141", ""},
		{"non-minimal length 82", "30820003 800141", ""},
		{"length of 3 octets", "3083000003 800141", ""},
		{"multi-octet tag", "3003 9f1f00", ""},
		{"universal tag in SEQUENCE", "3003 020100", ""},
		{"application tag", "3003 400100", ""},
		{"unknown field [11]", "3003 8b0100", ""},
		{"unknown field [12]", "3003 8c0100", ""},
		{"constructed vendor", "3004 a0020400", "vendor"},
		{"primitive fwids", "3002 8600", "fwids"},
		{"out of order", "3006 810141 800141", "vendor"},
		{"repeated", "3006 800141 800142", "vendor"},
		{"empty vendor", "3002 8000", "vendor"},
		{"empty version", "3002 8200", "version"},
		{"vendor not UTF-8", "3003 8001ff", "vendor"},
		{"model not UTF-8", "3004 8102c328", "model"},
		{"empty svn", "3002 8300", "svn"},
		{"negative svn", "3003 8301ff", "svn"},
		{"non-minimal svn", "3004 83020001", "svn"},
		{"non-minimal negative layer", "3004 8402ff80", "layer"},
		{"svn over 64 bits", "300b 8309 010000000000000000", "svn"},
		{"index over 64 bits", "300c 850a 00 800000000000000000", "index"},
		{"empty fwids", "3002 a600", "fwids"},
		{"fwid not a SEQUENCE", "3004 a602 0400", "fwids[0]"},
		{"fwid without digest", "300f a60d 300b 0609608648016503040201", "fwids[0]"},
		{"fwid SHA-224", "3031 a62f 302d 0609608648016503040204 0420" + cerberusSHA256, "fwids[0]"},
		{"fwid MD5", "3020 a61e 301c 06082a864886f70d0205 0410" + strings.Repeat("00", 16), "fwids[0]"},
		{"fwid short digest", "3030 a62e 302c 0609608648016503040201 041f" + cerberusSHA256[:62], "fwids[0]"},
		{"fwid long digest", "3032 a630 302e 0609608648016503040201 0421" + cerberusSHA256 + "00", "fwids[0]"},
		{"fwid digest not OCTET STRING", "3031 a62f 302d 0609608648016503040201 0320" + cerberusSHA256, "fwids[0]"},
		{"fwid trailing data", "3033 a631 302f 0609608648016503040201 0420" + cerberusSHA256 + "0500", "fwids[0]"},
		{"second fwid bad", "3033 a631" + sha256FWID + "3000", "fwids[1]"},
		{"too many fwids", "30820bf3 a6820bef" + manyFWIDs, "fwids"},
		// BIT STRING rules (X.690, §8.6.2, §11.2).
		{"flags without initial octet", "3002 8700", "flags"},
		{"flags: more than 7 unused bits", "3004 8702 0800", "flags"},
		{"flags: empty with unused bits", "3003 8701 01", "flags"},
		// OpenTitan's ot_certs writes a fixed 4-bit string: with no flag
		// set that is 04 00, whose trailing zeros DER removes.
		{"flags: trailing zero bits (4 bits, none set)", "3004 8702 0400", "flags"},
		{"flags: trailing zero bit (5 bits, debug)", "3004 8702 0310", "flags"},
		{"flags: trailing zero octet", "3005 8703 00 1000", "flags"},
		{"flags: unused bit set", "3004 8702 0418", "flags"},
		{"flags: bit 39", "3008 8706 00 0000000001", "flags"},
		{"flagsMask: trailing zero bits", "3004 8a02 0400", "flagsMask"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTcbInfo(mustHex(t, c.der))
			var te *TcbInfoError
			if !errors.As(err, &te) || !errors.Is(err, ErrInvalidTcbInfo) {
				t.Fatalf("got %+v, %v; want a *TcbInfoError", got, err)
			}
			if got != nil {
				t.Errorf("result %+v with error", got)
			}
			if te.Field != c.field {
				t.Errorf("field %q, want %q (%v)", te.Field, c.field, err)
			}
		})
	}

	t.Run("too large", func(t *testing.T) {
		big := appendTLV(nil, tagSequence, appendTLV(nil, tagVendorInfo, make([]byte, MaxTcbInfoSize)))
		if _, err := ParseTcbInfo(big); !errors.Is(err, ErrInvalidTcbInfo) {
			t.Fatal(err)
		}
	})
}

// TestParseTcbInfoEdges checks values at the edges that must be accepted.
func TestParseTcbInfoEdges(t *testing.T) {
	for _, c := range []struct {
		name string
		der  string
		want *TcbInfo
	}{
		{"empty SEQUENCE", "3000", &TcbInfo{}},
		{"svn 2^64-1", "300b 8309 00ffffffffffffffff", &TcbInfo{SVN: 1<<64 - 1, HasSVN: true}},
		{"layer 128 needs a sign octet", "3004 84020080", &TcbInfo{Layer: 128, HasLayer: true}},
		{"index 127", "3003 85017f", &TcbInfo{Index: 127, HasIndex: true}},
		{"empty vendorInfo and type", "3004 8800 8900", &TcbInfo{VendorInfo: []byte{}, Type: []byte{}}},
		{"UTF-8 model", "3004 8102c3a9", &TcbInfo{Model: "é"}},
		{"long-form length", "30 81 83 88 81 80" + strings.Repeat("ab", 128), &TcbInfo{VendorInfo: bytes.Repeat([]byte{0xab}, 128)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			der := mustHex(t, c.der)
			got, err := ParseTcbInfo(der)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
			enc, err := got.Marshal()
			if err != nil || !bytes.Equal(enc, der) {
				t.Errorf("Marshal: %x, %v; want %x", enc, err, der)
			}
		})
	}
}

func TestTcbInfoMarshalErrors(t *testing.T) {
	digest := make([]byte, 32)
	for _, c := range []struct {
		name string
		t    *TcbInfo
		want error
	}{
		{"nil", nil, pluton.ErrInvalidArgument},
		{"SVN without HasSVN", &TcbInfo{SVN: 1}, pluton.ErrInvalidArgument},
		{"Layer without HasLayer", &TcbInfo{Layer: 2}, pluton.ErrInvalidArgument},
		{"Index without HasIndex", &TcbInfo{Index: 3}, pluton.ErrInvalidArgument},
		{"Flags without HasFlags", &TcbInfo{Flags: FlagDebug}, pluton.ErrInvalidArgument},
		{"FlagsMask without HasFlagsMask", &TcbInfo{FlagsMask: FlagDebug}, pluton.ErrInvalidArgument},
		{"vendor not UTF-8", &TcbInfo{Vendor: "\xff"}, pluton.ErrInvalidArgument},
		{"version not UTF-8", &TcbInfo{Version: "a\xc3"}, pluton.ErrInvalidArgument},
		{"unknown hash", &TcbInfo{FWIDs: []FWID{{Hash: crypto.MD5, Digest: make([]byte, 16)}}}, pluton.ErrUnsupportedAlgorithm},
		{"zero hash", &TcbInfo{FWIDs: []FWID{{Digest: digest}}}, pluton.ErrUnsupportedAlgorithm},
		{"short digest", &TcbInfo{FWIDs: []FWID{{Hash: crypto.SHA384, Digest: digest}}}, pluton.ErrInvalidArgument},
		{"too many FWIDs", &TcbInfo{FWIDs: make([]FWID, MaxFWIDs+1)}, pluton.ErrInvalidArgument},
		{"too large", &TcbInfo{VendorInfo: make([]byte, MaxTcbInfoSize)}, pluton.ErrInvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			der, err := c.t.Marshal()
			if !errors.Is(err, c.want) || der != nil {
				t.Fatalf("got %x, %v; want %v", der, err, c.want)
			}
		})
	}
}

// TestTcbInfoRoundTrip marshals random TcbInfo values and parses them back.
func TestTcbInfoRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hashes := []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA3_256, crypto.SHA3_384, crypto.SHA3_512, crypto.SHA1}
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	randString := func() string {
		const alphabet = "abcXYZ019 .-_é€"
		r := []rune(alphabet)
		var sb strings.Builder
		for range rng.IntN(20) {
			sb.WriteRune(r[rng.IntN(len(r))])
		}
		return sb.String()
	}
	randUint := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return uint64(rng.IntN(300))
		case 2:
			return 1<<64 - 1
		}
		return rng.Uint64() >> rng.IntN(64)
	}
	for i := range 2000 {
		in := &TcbInfo{Vendor: randString(), Model: randString(), Version: randString()}
		if rng.IntN(2) == 0 {
			in.SVN, in.HasSVN = randUint(), true
		}
		if rng.IntN(2) == 0 {
			in.Layer, in.HasLayer = randUint(), true
		}
		if rng.IntN(2) == 0 {
			in.Index, in.HasIndex = randUint(), true
		}
		for range rng.IntN(4) {
			h := hashes[rng.IntN(len(hashes))]
			in.FWIDs = append(in.FWIDs, FWID{Hash: h, Digest: randBytes(h.Size())})
		}
		if rng.IntN(2) == 0 {
			in.Flags, in.HasFlags = OperationalFlags(rng.Uint32()>>rng.IntN(32)), true
		}
		if rng.IntN(2) == 0 {
			in.FlagsMask, in.HasFlagsMask = OperationalFlags(rng.Uint32()>>rng.IntN(32)), true
		}
		if rng.IntN(2) == 0 {
			in.VendorInfo = randBytes(rng.IntN(200))
		}
		if rng.IntN(2) == 0 {
			in.Type = randBytes(rng.IntN(5))
		}
		der, err := in.Marshal()
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		out, err := ParseTcbInfo(der)
		if err != nil {
			t.Fatalf("%d: %x: %v", i, der, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("%d: round trip\n%+v\n%+v", i, in, out)
		}
	}
}

// FuzzParseTcbInfo checks that ParseTcbInfo never panics, fails only with a
// *TcbInfoError, and that whatever it accepts marshals back to the same
// bytes and parses again to the same value.
func FuzzParseTcbInfo(f *testing.F) {
	for _, v := range tcbInfoVectors() {
		f.Add(mustHex(f, v.der))
	}
	f.Add([]byte{0x30, 0x00})
	f.Add(mustHex(f, "3007 8705 00 80 00 00 01"))
	f.Add(mustHex(f, "3004 8a02 04 10"))
	f.Add(mustHex(f, "300b 8309 00ffffffffffffffff"))
	f.Fuzz(func(t *testing.T, der []byte) {
		in := bytes.Clone(der)
		ti, err := ParseTcbInfo(der)
		if !bytes.Equal(in, der) {
			t.Fatal("ParseTcbInfo modified its input")
		}
		if err != nil {
			var te *TcbInfoError
			if !errors.As(err, &te) || !errors.Is(err, ErrInvalidTcbInfo) || ti != nil {
				t.Fatalf("%v, %v", ti, err)
			}
			return
		}
		enc, err := ti.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed value: %v", err)
		}
		if !bytes.Equal(enc, der) {
			t.Fatalf("round trip:\n%x\n%x", der, enc)
		}
		again, err := ParseTcbInfo(enc)
		if err != nil || !reflect.DeepEqual(again, ti) {
			t.Fatalf("re-parse: %+v, %v", again, err)
		}
	})
}
