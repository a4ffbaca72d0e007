package evidence

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/fxamacker/cbor/v2"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/cose"
	"github.com/rootline/rootline/pluton/internal/keys"
	"github.com/rootline/rootline/pluton/measure"
)

// testKey returns a deterministic key of alg.
func testKey(tb testing.TB, alg pluton.Algorithm, seed byte) crypto.Signer {
	tb.Helper()
	_, s, err := keys.Generate(alg, mrand.NewChaCha8([32]byte{seed, byte(alg), 'e', 'v'}))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// The validity of the test certificates: that of DICE certificates
// (pluton/dice).
var (
	testNotBefore = time.Date(2018, time.March, 22, 23, 59, 59, 0, time.UTC)
	testNotAfter  = time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC)
)

// testPKI is a chain made with crypto/x509 directly: a self-signed root
// standing for the DeviceID certificate, an intermediate CA standing for a
// lower layer's Alias certificate, and the leaf: the certificate of the
// Alias key that signs tokens.
type testPKI struct {
	alg                    pluton.Algorithm
	rootKey, interKey, key crypto.Signer
	root, inter, leaf      *x509.Certificate
	chain                  [][]byte // leaf, intermediate, root
	roots                  *x509.CertPool
}

// pkiOptions varies the chain for the tests of bad chains.
type pkiOptions struct {
	interNotCA      bool
	interNoCertSign bool // a CA whose keyUsage lacks keyCertSign
	rootPathLenZero bool
	leafCertSign    bool // leaf keyUsage keyCertSign only
	interExtension  *pkix.Extension
	issuerAlg       pluton.Algorithm // of the root and intermediate keys, if not the default P-384 and P-256
}

func newPKI(tb testing.TB, alg pluton.Algorithm, seed byte) *testPKI {
	return newPKIWith(tb, alg, seed, pkiOptions{})
}

func newPKIWith(tb testing.TB, alg pluton.Algorithm, seed byte, o pkiOptions) *testPKI {
	tb.Helper()
	p := &testPKI{
		alg:      alg,
		rootKey:  testKey(tb, pluton.ECDSAP384, seed|0x40),
		interKey: testKey(tb, pluton.ECDSAP256, seed|0x80),
		key:      testKey(tb, alg, seed),
	}
	if o.issuerAlg != pluton.AlgorithmUnknown {
		p.rootKey = testKey(tb, o.issuerAlg, seed|0x40)
		p.interKey = testKey(tb, o.issuerAlg, seed|0x80)
	}
	rootT := &x509.Certificate{
		SerialNumber:          big.NewInt(int64(seed)<<8 | 1),
		Subject:               pkix.Name{CommonName: "test DeviceID", SerialNumber: string('0' + rune(seed%10))},
		NotBefore:             testNotBefore,
		NotAfter:              testNotAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
	}
	if o.rootPathLenZero {
		rootT.MaxPathLen, rootT.MaxPathLenZero = 0, true
	}
	p.root = createCert(tb, rootT, rootT, p.rootKey.Public(), p.rootKey)
	interT := &x509.Certificate{
		SerialNumber:          big.NewInt(int64(seed)<<8 | 2),
		Subject:               pkix.Name{CommonName: "test Alias bootloader"},
		NotBefore:             testNotBefore,
		NotAfter:              testNotAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  !o.interNotCA,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	if o.interNotCA {
		interT.KeyUsage = x509.KeyUsageDigitalSignature
		interT.MaxPathLenZero = false
	}
	if o.interNoCertSign {
		interT.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if o.interExtension != nil {
		interT.ExtraExtensions = []pkix.Extension{*o.interExtension}
	}
	p.inter = createCert(tb, interT, p.root, p.interKey.Public(), p.rootKey)
	if alg == pluton.MLDSA65 {
		p.leaf = mldsaLeaf(tb, p.inter, p.interKey.(*ecdsa.PrivateKey), p.key.Public().(*mldsa65.PublicKey))
	} else {
		leafT := &x509.Certificate{
			SerialNumber:          big.NewInt(int64(seed)<<8 | 3),
			Subject:               pkix.Name{CommonName: "test Alias app"},
			NotBefore:             testNotBefore,
			NotAfter:              testNotAfter,
			KeyUsage:              x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
		}
		if o.leafCertSign {
			leafT.KeyUsage = x509.KeyUsageCertSign
		}
		p.leaf = createCert(tb, leafT, p.inter, p.key.Public(), p.interKey)
	}
	p.chain = [][]byte{p.leaf.Raw, p.inter.Raw, p.root.Raw}
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.root)
	return p
}

func createCert(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// mldsaLeaf builds, by hand, the certificate of an ML-DSA-65 key (RFC
// 9881 SubjectPublicKeyInfo) signed by an ECDSA P-256 issuer: crypto/x509
// cannot encode an ML-DSA public key.
func mldsaLeaf(tb testing.TB, issuer *x509.Certificate, issuerKey *ecdsa.PrivateKey, pub *mldsa65.PublicKey) *x509.Certificate {
	tb.Helper()
	spki, err := pluton.MarshalPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	subject, err := asn1.Marshal(pkix.Name{CommonName: "test Alias app (ML-DSA-65)"}.ToRDNSequence())
	if err != nil {
		tb.Fatal(err)
	}
	ecdsaWithSHA256 := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}
	basicConstraints, _ := asn1.Marshal(struct{}{}) // cA FALSE: an empty SEQUENCE
	keyUsage, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})
	type validity struct{ NotBefore, NotAfter time.Time }
	tbs, err := asn1.Marshal(struct {
		Version    int `asn1:"optional,explicit,default:0,tag:0"`
		Serial     *big.Int
		SigAlg     pkix.AlgorithmIdentifier
		Issuer     asn1.RawValue
		Validity   validity
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Extensions []pkix.Extension `asn1:"optional,explicit,tag:3"`
	}{
		Version:   2,
		Serial:    big.NewInt(65),
		SigAlg:    ecdsaWithSHA256,
		Issuer:    asn1.RawValue{FullBytes: issuer.RawSubject},
		Validity:  validity{testNotBefore, testNotAfter},
		Subject:   asn1.RawValue{FullBytes: subject},
		PublicKey: asn1.RawValue{FullBytes: spki},
		Extensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: basicConstraints},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: keyUsage},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	digest := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, issuerKey, digest[:])
	if err != nil {
		tb.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		TBS    asn1.RawValue
		SigAlg pkix.AlgorithmIdentifier
		Sig    asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, ecdsaWithSHA256, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// testClaims returns claims with every field set, a measured boot's event
// log and the register values it produces.
func testClaims(tb testing.TB) *Claims {
	tb.Helper()
	r, err := measure.New()
	if err != nil {
		tb.Fatal(err)
	}
	sep := []byte{0, 0, 0, 0}
	for _, step := range []struct {
		reg        int
		typ        measure.EventType
		data, info []byte
	}{
		{0, measure.EVSCRTMVersion, []byte("boot ROM 1.0"), []byte("boot ROM 1.0")},
		{0, measure.EVSeparator, sep, sep},
		{4, measure.EVIPL, []byte("bootloader image"), []byte("bootloader 1.0.0")},
		{4, measure.EVIPL, []byte("os image"), []byte("os 1.2.0-rc.1")},
		{8, measure.EVIPL, []byte("app image"), []byte("app 2.0.0")},
	} {
		if err := r.Measure(step.reg, step.typ, step.data, step.info); err != nil {
			tb.Fatal(err)
		}
	}
	log, err := r.Log().MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	regs := map[crypto.Hash]map[int][]byte{}
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		regs[h] = map[int][]byte{}
		for _, i := range []int{0, 4, 8} {
			v, err := r.Value(h, i)
			if err != nil {
				tb.Fatal(err)
			}
			regs[h][i] = v
		}
	}
	d256 := func(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
	d384 := func(s string) []byte { d := sha512.Sum384([]byte(s)); return d[:] }
	return &Claims{
		Nonce:     bytes.Repeat([]byte{0x5a}, 32),
		UEID:      append([]byte{0x01}, bytes.Repeat([]byte{0xa7}, 16)...),
		Product:   "widget-1",
		Lifecycle: pluton.Locked,
		Counters:  map[string]uint64{"svn/bootloader": 1, "svn/os": 3, "app:thermo/svn": 2},
		Layers: []Measurement{
			{Layer: "bootloader", Version: "1.0.0", SVN: 1, Digest: d256("bootloader image"), DigestAlg: crypto.SHA256, SignerID: d256("root key")},
			{Layer: "os", Version: "1.2.0-rc.1", SVN: 3, Digest: d384("os image"), DigestAlg: crypto.SHA384, SignerID: d384("os key")},
			{Layer: "app", Version: "2.0.0+build.5", SVN: 2, Digest: d256("app image"), DigestAlg: crypto.SHA256, SignerID: d256("app key")},
		},
		Registers: regs,
		EventLog:  log,
	}
}

// minimalClaims returns the smallest valid claims.
func minimalClaims() *Claims {
	return &Claims{Nonce: []byte("12345678"), UEID: []byte{2, 1, 2, 3, 4, 5, 6}, Lifecycle: pluton.Manufacturing}
}

// sign signs c with p's leaf key and chain.
func (p *testPKI) sign(tb testing.TB, c *Claims) []byte {
	tb.Helper()
	tok, err := Sign(rand.Reader, p.key, p.alg, c, p.chain)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// signRaw signs any payload under any headers with p's leaf key: the
// tokens of the tests of malformed claims and headers, whose signatures
// are good. A nil protected header is the profile's.
func (p *testPKI) signRaw(tb testing.TB, protected, unprotected *cose.Header, payload []byte) []byte {
	tb.Helper()
	if protected == nil {
		protected = &cose.Header{ContentType: uint64(ContentFormat), X5Chain: p.chain}
	}
	tok, err := cose.Sign1(rand.Reader, p.key, p.alg, protected, unprotected, payload, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// claimsMap decodes an encoded claims set into its top-level entries.
func claimsMap(tb testing.TB, payload []byte) map[int64]cbor.RawMessage {
	tb.Helper()
	var m map[int64]cbor.RawMessage
	if err := cbor.Unmarshal(payload, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// mustCBOR encodes v in Core Deterministic Encoding.
func mustCBOR(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := claimsEncMode.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// pair is one map entry for rawMap.
type pair struct {
	k any
	v any // cbor.RawMessage is copied as it is
}

// rawMap encodes the pairs as a CBOR map in the order given, duplicates
// included.
func rawMap(tb testing.TB, pairs ...pair) []byte {
	tb.Helper()
	out := []byte{}
	n := len(pairs)
	switch {
	case n < 24:
		out = append(out, 0xa0|byte(n))
	case n < 256:
		out = append(out, 0xb8, byte(n))
	default:
		out = append(out, 0xb9, byte(n>>8), byte(n))
	}
	for _, p := range pairs {
		out = append(out, mustCBOR(tb, p.k)...)
		if raw, ok := p.v.(cbor.RawMessage); ok {
			out = append(out, raw...)
		} else {
			out = append(out, mustCBOR(tb, p.v)...)
		}
	}
	return out
}

// withClaim returns payload with claim key set to the encoding of v (or
// removed if v is nil), in deterministic encoding.
func withClaim(tb testing.TB, payload []byte, key int64, v any) []byte {
	tb.Helper()
	m := claimsMap(tb, payload)
	if v == nil {
		delete(m, key)
	} else if raw, ok := v.(cbor.RawMessage); ok {
		m[key] = raw
	} else {
		m[key] = mustCBOR(tb, v)
	}
	return mustCBOR(tb, m)
}

// rsaCert returns a self-signed RSA certificate: a key of no algorithm of
// pluton.
func rsaCert(tb testing.TB) []byte {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rsa"}, NotBefore: testNotBefore, NotAfter: testNotAfter}
	return createCert(tb, tmpl, tmpl, k.Public(), k).Raw
}

// withRawClaim is withClaim for a raw value the encoder would refuse (not
// well-formed in its eyes, for example of indefinite length): the map is
// written by hand, keys in deterministic order.
func withRawClaim(tb testing.TB, payload []byte, key int64, raw []byte) []byte {
	tb.Helper()
	m := claimsMap(tb, payload)
	m[key] = nil
	type entry struct{ k, v []byte }
	var entries []entry
	for k, v := range m {
		if k == key {
			v = raw
		}
		entries = append(entries, entry{mustCBOR(tb, k), v})
	}
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.k, b.k) })
	out := []byte{0xa0 | byte(len(entries))}
	for _, e := range entries {
		out = append(append(out, e.k...), e.v...)
	}
	return out
}
