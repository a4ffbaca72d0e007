package cose

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/rootline/rootline/pluton"
)

func fuzzSeeds(f *testing.F) {
	for _, h := range []string{
		// cose-wg/Examples ecdsa-sig-01, eddsa-sig-01, sign-pass-01, ecdsa-02, eddsa-01.
		"D28445A201260300A10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E172727F48461FABBBA2E343492DDECAC3983686250BC68E9F1A7A07D41225B59F",
		"D28445A201270300A10442313154546869732069732074686520636F6E74656E742E58407142FD2FF96D56DB85BEE905A76BA1D0B7321A95C8C4D3607C5781932B7AFB8711497DFA751BF40B58B3BCC32300B1487F3DB34085EEF013BF08F4A44D6FEF0D",
		"D28441A0A201260442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E11A02E5F0344BF2D4EE5C7FD75A68A9F5E0B3CC1F1FC1409C189566586FF9D610",
		"D8628440A054546869732069732074686520636F6E74656E742E818344A1013822A10444503338345860230DF24B9F31DD2D7D1B9C33CE59073FC21E02BB63DC55847626B5B7F43905D59ACC186890BC1FE8B6D12E61B0373FFBA131ECC6C21958CDFF28AD77E0C32F9A0C6CA247135F538496228B2BE5557E7DBD7280DB24B46B68C0772D1BAEF09DE5",
		"D8628443A10300A054546869732069732074686520636F6E74656E742E818343A10127A104423131584077F3EACD11852C4BF9CB1D72FABE6B26FBA1D76092B2B5B7EC83B83557652264E69690DBC1172DDC0BF88411C0D25A507FDB247A20C40D5E245FABD3FC9EC106",
	} {
		f.Add(unhex(f, h))
	}
	if raw, err := os.ReadFile("testdata/ML_DSA_65.sign1.hex"); err == nil {
		f.Add(unhex(f, strings.TrimSpace(string(raw))))
	}
	s := testSigner(f, pluton.ECDSAP256, 1)
	one, err := Sign1(nil, s, pluton.ECDSAP256, &Header{ContentType: "a/b", X5Chain: [][]byte{{1}, {2}},
		Extra: map[int64][]byte{-65537: {0x82, 0x01, 0x02}}}, &Header{KID: []byte("k")}, []byte("payload"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(one)
	many, err := Sign(nil, []Signer{{Signer: s, Alg: pluton.ECDSAP256, KID: []byte{1}}}, &Header{ContentType: uint64(60)}, []byte("payload"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(many)
}

// FuzzParseSign1: ParseSign1 never panics; what it accepts, Marshal encodes
// to bytes it accepts again with the same meaning, and Verify never panics.
func FuzzParseSign1(f *testing.F) {
	fuzzSeeds(f)
	pub := testSigner(f, pluton.ECDSAP256, 1).Public()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, rest, err := ParseSign1Prefix(b)
		if err != nil {
			return
		}
		if len(rest) > len(b) || !bytes.HasSuffix(b, rest) {
			t.Fatal("rest is not a suffix of the input")
		}
		_ = m.Verify(pub, nil)
		enc, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed message: %v", err)
		}
		again, err := ParseSign1(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("re-parse differs:\n%+v\n%+v", again, m)
		}
	})
}

// FuzzParseSign: ParseSign never panics, and neither does VerifySignature
// on what it accepts.
func FuzzParseSign(f *testing.F) {
	fuzzSeeds(f)
	pub := testSigner(f, pluton.ECDSAP256, 1).Public()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, rest, err := ParseSignPrefix(b)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(b, rest) {
			t.Fatal("rest is not a suffix of the input")
		}
		if len(m.Signatures) == 0 || len(m.Signatures) > MaxSignatures {
			t.Fatalf("%d signatures accepted", len(m.Signatures))
		}
		for i := range m.Signatures {
			_ = m.VerifySignature(i, pub, nil)
		}
	})
}
