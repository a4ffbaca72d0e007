package cose

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/rootline/rootline/pluton"
)

// Keys of the COSE WG examples (github.com/cose-wg/Examples); see
// testdata/SOURCE.md.
func cosewgP256(t *testing.T) *ecdsa.PublicKey {
	return jwkEC(t, elliptic.P256(),
		"usWxHK2PmfnHKwXPS54m0kTcGJ90UiglWiGahtagnv8",
		"IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4")
}

func cosewgP384(t *testing.T) *ecdsa.PublicKey {
	return jwkEC(t, elliptic.P384(),
		"kTJyP2KSsBBhnb4kjWmMF7WHVsY55xUPgb7k64rDcjatChoZ1nvjKmYmPh5STRKc",
		"mM0weMVU2DKsYDxDJkEP9hZiRZtB8fPfXbzINZj_fF7YQRynNWedHEyzAJOX2e8s")
}

// RFC 8032, §7.1, TEST 1, the Ed25519 key of eddsa-sig-01 and eddsa-01.
const (
	rfc8032Test1Secret = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	rfc8032Test1Public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
)

func jwkEC(t *testing.T, c elliptic.Curve, x, y string) *ecdsa.PublicKey {
	t.Helper()
	xb, err1 := base64.RawURLEncoding.DecodeString(x)
	yb, err2 := base64.RawURLEncoding.DecodeString(y)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	k, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, xb...), yb...))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const cosewgContent = "This is the content."

func TestCOSEWGSign1Pass(t *testing.T) {
	ed := ed25519.PublicKey(unhex(t, rfc8032Test1Public))
	for _, tc := range []struct {
		name     string
		pub      crypto.PublicKey
		alg      pluton.Algorithm
		external string
		kid      string
		ct       any
		msg      string
	}{
		{"ecdsa-examples/ecdsa-sig-01", cosewgP256(t), pluton.ECDSAP256, "", "11", uint64(0),
			"D28445A201260300A10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E172727F48461FABBBA2E343492DDECAC3983686250BC68E9F1A7A07D41225B59F"},
		{"ecdsa-examples/ecdsa-sig-02", cosewgP384(t), pluton.ECDSAP384, "", "P384", nil,
			"D28444A1013822A104445033383454546869732069732074686520636F6E74656E742E5860B8F85EFF78C88F5351CED2F1887B79B296490795594B62E41E22529BB90208B7D8CDDD4A46D0E9C986464D83D0A5D1EDF39B3E2C5750364230D0E8D76460D8808E76C83830FBBD1978CC174066EB437F17887979ECF027DCC9D51BAF6C4FD8C0"},
		{"sign1-tests/sign-pass-02", cosewgP256(t), pluton.ECDSAP256, "11aa22bb33cc44dd55006699", "11", nil,
			"D28443A10126A10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E155388B10C4F1B59A6733EAB416870A945111A4B2FBDBEF33A77234B1DEFF2F9B"},
		{"eddsa-examples/eddsa-sig-01", ed, pluton.Ed25519, "", "11", uint64(0),
			"D28445A201270300A10442313154546869732069732074686520636F6E74656E742E58407142FD2FF96D56DB85BEE905A76BA1D0B7321A95C8C4D3607C5781932B7AFB8711497DFA751BF40B58B3BCC32300B1487F3DB34085EEF013BF08F4A44D6FEF0D"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := unhex(t, tc.msg)
			m, err := ParseSign1(b)
			if err != nil {
				t.Fatal(err)
			}
			if alg, err := m.Algorithm(); err != nil || alg != tc.alg {
				t.Fatalf("Algorithm() = %v, %v; want %v", alg, err, tc.alg)
			}
			if string(m.Payload) != cosewgContent || string(m.Unprotected.KID) != tc.kid || m.Protected.ContentType != tc.ct {
				t.Fatalf("parsed %+v", m)
			}
			ext := unhex(t, tc.external)
			if err := m.Verify(tc.pub, ext); err != nil {
				t.Fatal(err)
			}
			// The external data is covered.
			if err := m.Verify(tc.pub, []byte("other")); !errors.Is(err, pluton.ErrInvalidSignature) {
				t.Fatalf("Verify with other external data = %v", err)
			}
			// Parsing is strict enough to give the same bytes back.
			if again, err := m.Marshal(); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("Marshal() = %x, %v", again, err)
			}
		})
	}
}

// Ed25519 is deterministic: Sign1 must reproduce eddsa-sig-01 exactly.
func TestCOSEWGEdDSASign1Reproduced(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(unhex(t, rfc8032Test1Secret))
	got, err := Sign1(nil, priv, pluton.Ed25519,
		&Header{ContentType: uint64(0)}, &Header{KID: []byte("11")}, []byte(cosewgContent), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "D28445A201270300A10442313154546869732069732074686520636F6E74656E742E58407142FD2FF96D56DB85BEE905A76BA1D0B7321A95C8C4D3607C5781932B7AFB8711497DFA751BF40B58B3BCC32300B1487F3DB34085EEF013BF08F4A44D6FEF0D")
	if !bytes.Equal(got, want) {
		t.Fatalf("Sign1 =\n%X\nwant\n%X", got, want)
	}
}

func TestCOSEWGSign(t *testing.T) {
	for _, tc := range []struct {
		name string
		pub  crypto.PublicKey
		alg  pluton.Algorithm
		kid  string
		msg  string
	}{
		// The body's protected header is h'' (RFC 9052, §3).
		{"ecdsa-examples/ecdsa-02", cosewgP384(t), pluton.ECDSAP384, "P384",
			"D8628440A054546869732069732074686520636F6E74656E742E818344A1013822A10444503338345860230DF24B9F31DD2D7D1B9C33CE59073FC21E02BB63DC55847626B5B7F43905D59ACC186890BC1FE8B6D12E61B0373FFBA131ECC6C21958CDFF28AD77E0C32F9A0C6CA247135F538496228B2BE5557E7DBD7280DB24B46B68C0772D1BAEF09DE5"},
		// The body's protected header is {3: 0}.
		{"eddsa-examples/eddsa-01", ed25519.PublicKey(unhex(t, rfc8032Test1Public)), pluton.Ed25519, "11",
			"D8628443A10300A054546869732069732074686520636F6E74656E742E818343A10127A104423131584077F3EACD11852C4BF9CB1D72FABE6B26FBA1D76092B2B5B7EC83B83557652264E69690DBC1172DDC0BF88411C0D25A507FDB247A20C40D5E245FABD3FC9EC106"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseSign(unhex(t, tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Signatures) != 1 || string(m.Payload) != cosewgContent || string(m.Signatures[0].Unprotected.KID) != tc.kid {
				t.Fatalf("parsed %+v", m)
			}
			if alg, err := m.Signatures[0].Algorithm(); err != nil || alg != tc.alg {
				t.Fatalf("Algorithm() = %v, %v", alg, err)
			}
			if err := m.VerifySignature(0, tc.pub, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The ML-DSA-65 COSE_Sign1 example of draft-ietf-cose-dilithium, whose key
// is KeyGen from the all-zero seed.
func TestDilithiumDraftMLDSA65(t *testing.T) {
	raw, err := os.ReadFile("testdata/ML_DSA_65.sign1.hex")
	if err != nil {
		t.Fatal(err)
	}
	b := unhex(t, string(raw))
	m, err := ParseSign1(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Protected.Alg != -49 {
		t.Fatalf("alg = %d, want -49", m.Protected.Alg)
	}
	if alg, err := m.Algorithm(); err != nil || alg != pluton.MLDSA65 {
		t.Fatalf("Algorithm() = %v, %v", alg, err)
	}
	if got := string(m.Payload); got != "It’s a dangerous business, Frodo, going out your door." {
		t.Fatalf("payload %q", got)
	}
	var seed [mldsa65.SeedSize]byte
	pub, _ := mldsa65.NewKeyFromSeed(&seed)
	if err := m.Verify(pub, nil); err != nil {
		t.Fatal(err)
	}
	if again, err := m.Marshal(); err != nil || !bytes.Equal(again, b) {
		t.Fatalf("Marshal() differs: %v", err)
	}
}

// The negative cases of cose-wg/Examples sign1-tests, each with why this
// package refuses it.
func TestCOSEWGSign1Fail(t *testing.T) {
	pub := cosewgP256(t)
	for _, tc := range []struct {
		name string
		msg  string
		want error // what Parse or Verify must return
	}{
		// sign-fail-01: tag 998 instead of 18.
		{"sign-fail-01", "D903E68443A10126A10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E19F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794", ErrMalformed},
		// sign-fail-02: the payload changed.
		{"sign-fail-02", "D28443A10126A10442313154546869732069732074686520636F6E74656E742F5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E19F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794", pluton.ErrInvalidSignature},
		// sign-fail-03: algorithm -999.
		{"sign-fail-03", "D28445A1013903E6A10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E19F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794", pluton.ErrUnsupportedAlgorithm},
		// sign-fail-04: algorithm "unknown" (a text string).
		{"sign-fail-04", "D2844AA10167756E6B6E6F776EA10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E19F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794", ErrMalformed},
		// sign-fail-06: a protected parameter added after signing.
		{"sign-fail-06", "D28445A201260300A10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E19F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794", pluton.ErrInvalidSignature},
		// sign-fail-07: a protected parameter removed after signing.
		{"sign-fail-07", "D28443A10126A10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E172727F48461FABBBA2E343492DDECAC3983686250BC68E9F1A7A07D41225B59F", pluton.ErrInvalidSignature},
		// sign-pass-01 ("Redo protected"): valid per RFC 9052, but its
		// algorithm is in the unprotected header, which this package
		// refuses (see the package documentation).
		{"sign-pass-01", "D28441A0A201260442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E11A02E5F0344BF2D4EE5C7FD75A68A9F5E0B3CC1F1FC1409C189566586FF9D610", ErrMalformed},
		// sign-pass-03 ("Remove CBOR Tag"): valid untagged, but this
		// package requires the tag.
		{"sign-pass-03", "8443A10126A10442313154546869732069732074686520636F6E74656E742E5840EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E19F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseSign1(unhex(t, tc.msg))
			if err == nil {
				err = m.Verify(pub, nil)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
