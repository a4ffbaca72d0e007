package dice

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"maps"
	"math/big"
	"os"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/rootline/rootline/pluton"
)

// hexBytes is a byte string written in hex in the vectors file.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// vectorCase is one case of testdata/known_test_values.json (see
// testdata/SOURCE.md).
type vectorCase struct {
	Name                string              `json:"name"`
	CDIAttestIn         hexBytes            `json:"cdi_attest_in"`
	CDISealIn           hexBytes            `json:"cdi_seal_in"`
	CodeHash            hexBytes            `json:"code_hash"`
	CodeDescriptor      hexBytes            `json:"code_descriptor"`
	ConfigType          string              `json:"config_type"`
	ConfigValue         hexBytes            `json:"config_value"`
	ConfigDescriptor    hexBytes            `json:"config_descriptor"`
	AuthorityHash       hexBytes            `json:"authority_hash"`
	AuthorityDescriptor hexBytes            `json:"authority_descriptor"`
	Mode                uint8               `json:"mode"`
	Hidden              hexBytes            `json:"hidden"`
	ExpectedCDIAttest   hexBytes            `json:"expected_cdi_attest"`
	ExpectedCDISeal     hexBytes            `json:"expected_cdi_seal"`
	X509                map[string]hexBytes `json:"expected_x509_certs_der"`
	CBOR                map[string]hexBytes `json:"expected_cbor_certs"`
}

func loadVectors(t testing.TB) []vectorCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/known_test_values.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []vectorCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) != 3 {
		t.Fatalf("vectors: %d cases, want 3", len(f.Cases))
	}
	return f.Cases
}

// inputs builds the InputValues of a case.
func (c *vectorCase) inputs(t testing.TB) *InputValues {
	t.Helper()
	in := &InputValues{
		CodeDescriptor:      c.CodeDescriptor,
		ConfigDescriptor:    c.ConfigDescriptor,
		AuthorityDescriptor: c.AuthorityDescriptor,
		Mode:                Mode(c.Mode),
	}
	for _, f := range []struct {
		dst []byte
		src hexBytes
	}{
		{in.CodeHash[:], c.CodeHash},
		{in.ConfigValue[:], c.ConfigValue},
		{in.AuthorityHash[:], c.AuthorityHash},
		{in.Hidden[:], c.Hidden},
	} {
		if len(f.src) != HashSize {
			t.Fatalf("%s: input value of %d bytes", c.Name, len(f.src))
		}
		copy(f.dst, f.src)
	}
	switch c.ConfigType {
	case "inline":
		in.ConfigType = ConfigInline
	case "descriptor":
		in.ConfigType = ConfigDescriptor
	default:
		t.Fatalf("%s: config type %q", c.Name, c.ConfigType)
	}
	return in
}

func vectorAlgorithm(t *testing.T, name string) pluton.Algorithm {
	t.Helper()
	switch name {
	case "Ed25519":
		return pluton.Ed25519
	case "P256":
		return pluton.ECDSAP256
	case "P384":
		return pluton.ECDSAP384
	}
	t.Fatalf("unknown algorithm %q in vectors", name)
	return pluton.AlgorithmUnknown
}

// TestKnownAnswers checks Derive, KeyPair and DeriveID against open-dice's
// known answers: the next CDIs, and the subject (KeyPair of the expected
// CDI_Attest) and issuer (KeyPair of the current CDI_Attest, the UDS in
// ZeroInput) of every certificate, with their IDs and signatures.
func TestKnownAnswers(t *testing.T) {
	// The certificates each case must have. The vectors hold no X.509 P-384
	// certificate (open-dice makes none), and DescriptorInput has no CBOR
	// Ed25519 one: those are the only gaps, and the test checks every
	// certificate present, not only these.
	requiredX509 := []string{"Ed25519", "P256"}
	requiredCBOR := map[string][]string{
		"ZeroInput":       {"Ed25519", "P256", "P384"},
		"HashOnlyInput":   {"Ed25519", "P256", "P384"},
		"DescriptorInput": {"P256", "P384"},
	}
	for _, c := range loadVectors(t) {
		t.Run(c.Name, func(t *testing.T) {
			attest, seal, err := Derive(c.CDIAttestIn, c.CDISealIn, c.inputs(t))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(attest, c.ExpectedCDIAttest) {
				t.Errorf("CDI_Attest = %x, want %x", attest, c.ExpectedCDIAttest)
			}
			if !bytes.Equal(seal, c.ExpectedCDISeal) {
				t.Errorf("CDI_Seal = %x, want %x", seal, c.ExpectedCDISeal)
			}

			for _, alg := range requiredX509 {
				if _, ok := c.X509[alg]; !ok {
					t.Errorf("vectors lack the X.509 %s certificate", alg)
				}
			}
			for _, alg := range requiredCBOR[c.Name] {
				if _, ok := c.CBOR[alg]; !ok {
					t.Errorf("vectors lack the CBOR %s certificate", alg)
				}
			}
			for _, alg := range slices.Sorted(maps.Keys(c.X509)) {
				t.Run("x509/"+alg, func(t *testing.T) {
					checkX509(t, &c, vectorAlgorithm(t, alg), c.X509[alg])
				})
			}
			for _, alg := range slices.Sorted(maps.Keys(c.CBOR)) {
				t.Run("cbor/"+alg, func(t *testing.T) {
					checkCBOR(t, &c, vectorAlgorithm(t, alg), c.CBOR[alg])
				})
			}
		})
	}
}

// subjectAndIssuer derives the two keys of a certificate of case c.
func subjectAndIssuer(t *testing.T, c *vectorCase, alg pluton.Algorithm) (subject, issuer crypto.PublicKey, subjectID, issuerID [IDSize]byte) {
	t.Helper()
	s, err := KeyPair(c.ExpectedCDIAttest, alg)
	if err != nil {
		t.Fatal(err)
	}
	i, err := KeyPair(c.CDIAttestIn, alg)
	if err != nil {
		t.Fatal(err)
	}
	subjectID, err = PublicKeyID(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	issuerID, err = PublicKeyID(i.Public())
	if err != nil {
		t.Fatal(err)
	}
	return s.Public(), i.Public(), subjectID, issuerID
}

func checkX509(t *testing.T, c *vectorCase, alg pluton.Algorithm, der []byte) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	subject, issuer, subjectID, issuerID := subjectAndIssuer(t, c, alg)

	if !subject.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
		t.Errorf("certificate key %v, KeyPair(expected CDI_Attest) gives %v", cert.PublicKey, subject)
	}
	// open-dice: serial number = subject key identifier = ID;
	// subject = SERIALNUMBER=hex(ID), issuer = SERIALNUMBER=hex(issuer ID);
	// authority key identifier = issuer ID.
	if want := new(big.Int).SetBytes(subjectID[:]); cert.SerialNumber.Cmp(want) != 0 {
		t.Errorf("serial number %x, DeriveID gives %x", cert.SerialNumber, subjectID)
	}
	if got, want := cert.Subject.SerialNumber, hex.EncodeToString(subjectID[:]); got != want {
		t.Errorf("subject %q, want SERIALNUMBER=%s", cert.Subject, want)
	}
	if got, want := cert.Issuer.SerialNumber, hex.EncodeToString(issuerID[:]); got != want {
		t.Errorf("issuer %q, want SERIALNUMBER=%s", cert.Issuer, want)
	}
	if !bytes.Equal(cert.SubjectKeyId, subjectID[:]) {
		t.Errorf("subject key id %x, want %x", cert.SubjectKeyId, subjectID)
	}
	if !bytes.Equal(cert.AuthorityKeyId, issuerID[:]) {
		t.Errorf("authority key id %x, want %x", cert.AuthorityKeyId, issuerID)
	}

	// The issuer key of KeyPair(current CDI_Attest) signed it.
	switch alg {
	case pluton.Ed25519:
		if !ed25519.Verify(issuer.(ed25519.PublicKey), cert.RawTBSCertificate, cert.Signature) {
			t.Error("signature does not verify with the issuer's derived key")
		}
	case pluton.ECDSAP256:
		if cert.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Fatalf("signature algorithm %v", cert.SignatureAlgorithm)
		}
		h := sha256.Sum256(cert.RawTBSCertificate)
		if !ecdsa.VerifyASN1(issuer.(*ecdsa.PublicKey), h[:], cert.Signature) {
			t.Error("signature does not verify with the issuer's derived key")
		}
	}
}

// COSE and CWT labels (RFC 9052, RFC 9053, RFC 8392) and the Open Profile
// for DICE CWT claims ("CBOR CDI Certificates").
const (
	cwtIssuer        = 1
	cwtSubject       = 2
	diceCodeHash     = -4670545
	diceAuthHash     = -4670549
	diceMode         = -4670551
	diceSubjectKey   = -4670552
	coseKeyKty       = 1
	coseKeyCrv       = -1
	coseKeyX         = -2
	coseKeyY         = -3
	coseKtyOKP       = 1
	coseKtyEC2       = 2
	coseCrvP256      = 1
	coseCrvP384      = 2
	coseCrvEd25519   = 6
	coseHeaderAlg    = 1
	coseAlgEdDSA     = -8
	coseAlgES256     = -7
	coseAlgES384     = -35
	coseSign1Entries = 4
)

// checkCBOR parses an open-dice CBOR certificate, a COSE_Sign1 (RFC 9052,
// 4.2) over a CWT, just enough to check its keys, IDs and signature.
func checkCBOR(t *testing.T, c *vectorCase, alg pluton.Algorithm, cert []byte) {
	var sign1 []cbor.RawMessage
	if err := cbor.Unmarshal(cert, &sign1); err != nil || len(sign1) != coseSign1Entries {
		t.Fatalf("not a COSE_Sign1 array: %v (%d entries)", err, len(sign1))
	}
	var protected, payload, signature []byte
	for i, dst := range map[int]*[]byte{0: &protected, 2: &payload, 3: &signature} {
		if err := cbor.Unmarshal(sign1[i], dst); err != nil {
			t.Fatalf("COSE_Sign1 entry %d: %v", i, err)
		}
	}
	var headers map[int64]int64
	if err := cbor.Unmarshal(protected, &headers); err != nil {
		t.Fatalf("protected headers: %v", err)
	}
	var cwt map[int64]cbor.RawMessage
	if err := cbor.Unmarshal(payload, &cwt); err != nil {
		t.Fatalf("CWT: %v", err)
	}
	var iss, sub string
	var codeHash, authHash, mode, keyBytes []byte
	for label, dst := range map[int64]any{
		cwtIssuer: &iss, cwtSubject: &sub,
		diceCodeHash: &codeHash, diceAuthHash: &authHash, diceMode: &mode,
		diceSubjectKey: &keyBytes,
	} {
		if err := cbor.Unmarshal(cwt[label], dst); err != nil {
			t.Fatalf("CWT claim %d: %v", label, err)
		}
	}
	var coseKey map[int64]cbor.RawMessage
	if err := cbor.Unmarshal(keyBytes, &coseKey); err != nil {
		t.Fatalf("COSE_Key: %v", err)
	}
	var kty, crv int64
	var x, y []byte
	for label, dst := range map[int64]any{coseKeyKty: &kty, coseKeyCrv: &crv, coseKeyX: &x} {
		if err := cbor.Unmarshal(coseKey[label], dst); err != nil {
			t.Fatalf("COSE_Key label %d: %v", label, err)
		}
	}

	// The claims carry the case's inputs.
	if !bytes.Equal(codeHash, c.CodeHash) || !bytes.Equal(authHash, c.AuthorityHash) || !bytes.Equal(mode, []byte{c.Mode}) {
		t.Errorf("certificate inputs differ from the case's")
	}

	subject, issuer, subjectID, issuerID := subjectAndIssuer(t, c, alg)
	if want := hex.EncodeToString(subjectID[:]); sub != want {
		t.Errorf("sub %q, DeriveID gives %q", sub, want)
	}
	if want := hex.EncodeToString(issuerID[:]); iss != want {
		t.Errorf("iss %q, DeriveID gives %q", iss, want)
	}

	// Sig_structure = ["Signature1", protected, external_aad, payload]
	// (RFC 9052, 4.4), with an empty external_aad as open-dice signs it.
	tbs, err := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	if err != nil {
		t.Fatal(err)
	}

	switch alg {
	case pluton.Ed25519:
		if kty != coseKtyOKP || crv != coseCrvEd25519 || headers[coseHeaderAlg] != coseAlgEdDSA {
			t.Fatalf("kty %d crv %d alg %d, want Ed25519", kty, crv, headers[coseHeaderAlg])
		}
		if !bytes.Equal(x, subject.(ed25519.PublicKey)) {
			t.Errorf("COSE_Key x = %x, KeyPair(expected CDI_Attest) gives %x", x, subject)
		}
		if !ed25519.Verify(issuer.(ed25519.PublicKey), tbs, signature) {
			t.Error("signature does not verify with the issuer's derived key")
		}
	case pluton.ECDSAP256, pluton.ECDSAP384:
		wantCrv, wantAlg, curve := int64(coseCrvP256), int64(coseAlgES256), elliptic.P256()
		if alg == pluton.ECDSAP384 {
			wantCrv, wantAlg, curve = coseCrvP384, coseAlgES384, elliptic.P384()
		}
		if kty != coseKtyEC2 || crv != wantCrv || headers[coseHeaderAlg] != wantAlg {
			t.Fatalf("kty %d crv %d alg %d, want %v", kty, crv, headers[coseHeaderAlg], alg)
		}
		if err := cbor.Unmarshal(coseKey[coseKeyY], &y); err != nil {
			t.Fatalf("COSE_Key y: %v", err)
		}
		// The uncompressed point is 04 || x || y, each coordinate
		// big-endian on size bytes (SEC 1, 2.3.3), as in COSE_Key (RFC
		// 9053, 7.1.1).
		point, err := subject.(*ecdsa.PublicKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(point) != 1+2*size {
			t.Fatalf("uncompressed point of %d bytes, want %d", len(point), 1+2*size)
		}
		wantX, wantY := point[1:1+size], point[1+size:]
		if !bytes.Equal(x, wantX) || !bytes.Equal(y, wantY) {
			t.Errorf("COSE_Key (x, y) = (%x, %x), KeyPair(expected CDI_Attest) gives (%x, %x)", x, y, wantX, wantY)
		}
		// COSE ECDSA signatures are r || s (RFC 9053, 2.1), over the
		// SHA-256 or SHA-384 hash of the Sig_structure.
		if len(signature) != 2*size {
			t.Fatalf("signature of %d bytes", len(signature))
		}
		r := new(big.Int).SetBytes(signature[:size])
		s := new(big.Int).SetBytes(signature[size:])
		if !ecdsa.Verify(issuer.(*ecdsa.PublicKey), alg.Digest(tbs), r, s) {
			t.Error("signature does not verify with the issuer's derived key")
		}
	}
}

// TestConfigDescriptorIsHashed checks that a config descriptor enters the
// CDIs as its SHA-512 hash, in place of an inline value.
func TestConfigDescriptorIsHashed(t *testing.T) {
	c := loadVectors(t)[2] // DescriptorInput
	in := c.inputs(t)
	if in.ConfigType != ConfigDescriptor {
		t.Fatal("DescriptorInput is not a descriptor case")
	}
	inline := *in
	inline.ConfigType = ConfigInline
	inline.ConfigValue = sha512.Sum512(in.ConfigDescriptor)
	inline.ConfigDescriptor = nil
	attest, seal, err := Derive(c.CDIAttestIn, c.CDISealIn, &inline)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(attest, c.ExpectedCDIAttest) || !bytes.Equal(seal, c.ExpectedCDISeal) {
		t.Errorf("inline SHA-512(descriptor) gives other CDIs than the descriptor")
	}
}

// TestCompressedPointID checks the ID encoding of an older open-dice back
// end, whose numbers are not in the vectors file: the mbedtls X.509 P-256
// certificate of the ZeroInput case in google/open-dice
// include/dice/known_test_values.h at commit
// 00eb2175b1e469f7836e426373fec7b7da461772 (profile
// "openssl.example.p256_compressed"). Its subject key is the same KeyPair
// key (mbedtls's HMAC_DRBG draws the same scalar), but its serial number
// and names are DeriveID of the 33-byte SEC 1 compressed point, not of
// PublicKeyBytes: DeriveID's input encoding is the certificate code's
// choice.
func TestCompressedPointID(t *testing.T) {
	const (
		subjectPoint = "044f3b4e82c45ada084589c2197baf1f376eac40e1fd49b0240602aec269541c6b" +
			"e7eb4019ab55c66bc88bb8b469ad7ee8589e07d2f8bc888eb311c2df973b1b4a"
		subjectID = "7c7dc0a3c1e78d4e68bcc1a2329ef91ca8124491"
		issuerID  = "4c514d88db0f81d57beb96177e3d7ea4aa581e66"
	)
	zero := loadVectors(t)[0]
	if zero.Name != "ZeroInput" {
		t.Fatalf("first case is %s", zero.Name)
	}
	for _, k := range []struct {
		name, id string
		cdi      []byte
	}{
		{"subject", subjectID, zero.ExpectedCDIAttest},
		{"issuer", issuerID, zero.CDIAttestIn},
	} {
		s, err := KeyPair(k.cdi, pluton.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		point, err := s.Public().(*ecdsa.PublicKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if k.name == "subject" && hex.EncodeToString(point) != subjectPoint {
			t.Errorf("subject key %x, want %s", point, subjectPoint)
		}
		id, err := DeriveID(compressPoint(t, point))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(id[:]) != k.id {
			t.Errorf("%s: ID of the compressed point %x, want %s", k.name, id, k.id)
		}
	}
}

// compressPoint turns the uncompressed point 04 || x || y into the
// compressed one, 02 || x for an even y and 03 || x for an odd one (SEC 1,
// 2.3.3), as elliptic.MarshalCompressed does.
func compressPoint(t *testing.T, point []byte) []byte {
	t.Helper()
	if len(point) < 3 || len(point)%2 != 1 || point[0] != 4 {
		t.Fatalf("not an uncompressed point: %x", point)
	}
	size := (len(point) - 1) / 2
	return append([]byte{2 | point[len(point)-1]&1}, point[1:1+size]...)
}
