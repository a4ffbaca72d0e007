package evidence

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/cose"
	"github.com/rootline/rootline/pluton/measure"
)

var classicAlgs = []pluton.Algorithm{pluton.ECDSAP256, pluton.ECDSAP384, pluton.Ed25519}

func TestRoundTrip(t *testing.T) {
	for _, alg := range pluton.Algorithms() {
		t.Run(alg.String(), func(t *testing.T) {
			p := newPKI(t, alg, 1)
			c := testClaims(t)
			tok := p.sign(t, c)
			if len(tok) > MaxTokenSize {
				t.Fatalf("token of %d bytes", len(tok))
			}
			got, err := Verify(tok, &VerifyOptions{Nonce: c.Nonce, Roots: p.roots})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Claims, c) {
				t.Fatalf("claims differ:\n got %+v\nwant %+v", got.Claims, c)
			}
			if got.Algorithm != alg || len(got.Chain) != 3 || !bytes.Equal(got.Chain[0].Raw, p.leaf.Raw) || !bytes.Equal(got.Raw, tok) {
				t.Fatalf("token %+v", got)
			}
			if eq, ok := got.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(p.key.Public()) {
				t.Fatal("PublicKey is not the leaf key")
			}
			if got.Log == nil || len(got.Log.Events()) != 5 {
				t.Fatal("event log not parsed")
			}
			// Parse gives the same, without checking anything.
			parsed, err := Parse(tok)
			if err != nil || !reflect.DeepEqual(parsed.Claims, c) {
				t.Fatalf("Parse: %v", err)
			}
			// Also with every check at a time within the chain's validity.
			if _, err := Verify(tok, &VerifyOptions{Nonce: c.Nonce, Roots: p.roots, CurrentTime: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
				t.Fatal(err)
			}
			// And with no options: signature and chain structure only.
			if _, err := Verify(tok, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRoundTripMinimal(t *testing.T) {
	p := newPKI(t, pluton.Ed25519, 2)
	for _, l := range []pluton.Lifecycle{pluton.Blank, pluton.Manufacturing, pluton.Provisioned, pluton.Locked, pluton.RMA, pluton.Decommissioned} {
		c := minimalClaims()
		c.Lifecycle = l
		got, err := Verify(p.sign(t, c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Claims, c) {
			t.Fatalf("%v: got %+v", l, got.Claims)
		}
		if got.Log != nil || got.Claims.Counters != nil || got.Claims.Layers != nil || got.Claims.Registers != nil {
			t.Fatalf("absent claims are not nil: %+v", got.Claims)
		}
	}
	// A single-certificate chain (a self-signed leaf): x5chain is then a
	// byte string (RFC 9360, §2).
	key := testKey(t, pluton.ECDSAP256, 3)
	tmpl := &x509.Certificate{SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "lone"}, NotBefore: testNotBefore, NotAfter: testNotAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	lone := createCert(t, tmpl, tmpl, key.Public(), key)
	tok, err := Sign(rand.Reader, key, pluton.ECDSAP256, minimalClaims(), [][]byte{lone.Raw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(tok, nil); err != nil {
		t.Fatal(err)
	}
}

// TestEncoding pins the wire form of the profile: claim keys and types.
func TestEncoding(t *testing.T) {
	p := newPKI(t, pluton.Ed25519, 1)
	c := testClaims(t)
	m, err := cose.ParseSign1(p.sign(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if m.Protected.Alg != -8 || m.Protected.ContentType != uint64(263) || len(m.Protected.X5Chain) != 3 || m.Protected.KID != nil {
		t.Fatalf("protected header %+v", m.Protected)
	}
	var claims map[int64]any
	if err := cbor.Unmarshal(m.Payload, &claims); err != nil {
		t.Fatal(err)
	}
	keys := []int64{10, 256, 263, 265, 266, -65537, -65538, -65539, -65540, -65541}
	if len(claims) != len(keys) {
		t.Fatalf("%d claims: %v", len(claims), claims)
	}
	for _, k := range keys {
		if _, ok := claims[k]; !ok {
			t.Fatalf("claim %d missing", k)
		}
	}
	if claims[265] != Profile || claims[-65537] != "locked" || claims[263] != uint64(2) || claims[-65538] != "widget-1" {
		t.Fatalf("claims %v", claims)
	}
	var sub struct {
		Submods map[string]map[int64]any `cbor:"266,keyasint"`
	}
	if err := cbor.Unmarshal(m.Payload, &sub); err != nil {
		t.Fatal(err)
	}
	os := sub.Submods["os"]
	if os[270] != "os" || !reflect.DeepEqual(os[271], []any{"1.2.0-rc.1", uint64(16384)}) || os[-65542] != uint64(3) || os[-65543] != uint64(1) {
		t.Fatalf("submodule os %v", os)
	}
	comp := os[2399].([]any)[0].(map[any]any)
	if comp[uint64(6)] != "sha-384" || len(comp[uint64(2)].([]byte)) != 48 || len(comp) != 3 {
		t.Fatalf("software component %v", comp)
	}
}

func TestDebugStatus(t *testing.T) {
	want := map[pluton.Lifecycle]uint64{pluton.Blank: 0, pluton.Manufacturing: 0, pluton.Provisioned: 0, pluton.Locked: 2, pluton.RMA: 0, pluton.Decommissioned: 4}
	for l, d := range want {
		if got := debugStatus(l); got != d {
			t.Errorf("debugStatus(%v) = %d, want %d", l, got, d)
		}
	}
}

// isRefusal checks that err is a *VerifyError wrapping want.
func isRefusal(t *testing.T, err, want error) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, want) {
		t.Fatalf("got %v, want a *VerifyError wrapping %v", err, want)
	}
	if !strings.HasPrefix(err.Error(), "evidence: ") {
		t.Fatalf("error %q lacks the package prefix", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	p := newPKI(t, pluton.ECDSAP256, 1)
	c := testClaims(t)
	tok := p.sign(t, c)
	opts := &VerifyOptions{Nonce: c.Nonce, Roots: p.roots}

	t.Run("wrong nonce", func(t *testing.T) {
		_, err := Verify(tok, &VerifyOptions{Nonce: bytes.Repeat([]byte{0x5b}, 32)})
		isRefusal(t, err, ErrNonce)
		_, err = Verify(tok, &VerifyOptions{Nonce: c.Nonce[:31]})
		isRefusal(t, err, ErrNonce)
		_, err = Verify(tok, &VerifyOptions{Nonce: []byte{}})
		isRefusal(t, err, ErrNonce)
	})
	t.Run("bad signature", func(t *testing.T) {
		bad := bytes.Clone(tok)
		bad[len(bad)-1] ^= 1
		_, err := Verify(bad, opts)
		isRefusal(t, err, ErrSignature)
		if !errors.Is(err, pluton.ErrInvalidSignature) {
			t.Fatalf("cause not kept: %v", err)
		}
	})
	t.Run("signed by another key", func(t *testing.T) {
		if _, err := Sign(rand.Reader, testKey(t, pluton.ECDSAP256, 9), pluton.ECDSAP256, c, p.chain); err == nil {
			t.Fatal("Sign accepts a signer the leaf does not certify")
		}
		q := newPKI(t, pluton.ECDSAP256, 9)
		other := q.signRaw(t, &cose.Header{ContentType: uint64(ContentFormat), X5Chain: p.chain}, nil, mustPayload(t, c))
		_, err := Verify(other, opts)
		isRefusal(t, err, ErrSignature)
	})
	t.Run("leaf key of another algorithm", func(t *testing.T) {
		q := newPKI(t, pluton.Ed25519, 1)
		bad := q.signRaw(t, &cose.Header{ContentType: uint64(ContentFormat), X5Chain: p.chain}, nil, mustPayload(t, c))
		_, err := Verify(bad, opts)
		isRefusal(t, err, ErrSignature)
	})
	t.Run("missing link", func(t *testing.T) {
		bad, err := Sign(rand.Reader, p.key, p.alg, c, [][]byte{p.leaf.Raw, p.root.Raw})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Verify(bad, nil)
		isRefusal(t, err, ErrChain)
	})
	t.Run("reversed chain", func(t *testing.T) {
		_, err := Sign(rand.Reader, p.key, p.alg, c, [][]byte{p.root.Raw, p.inter.Raw, p.leaf.Raw})
		if err == nil {
			t.Fatal("Sign accepts a chain whose first certificate is not the signer's")
		}
		bad := p.signRaw(t, &cose.Header{ContentType: uint64(ContentFormat), X5Chain: [][]byte{p.leaf.Raw, p.root.Raw, p.inter.Raw}}, nil, mustPayload(t, c))
		_, err = Verify(bad, nil)
		isRefusal(t, err, ErrChain)
	})
	t.Run("intermediate signed by another root", func(t *testing.T) {
		// A root of the same name and another key: the names chain, the
		// signatures do not.
		otherKey := testKey(t, pluton.ECDSAP384, 11)
		tmpl := &x509.Certificate{SerialNumber: bigOne(), Subject: p.root.Subject, NotBefore: testNotBefore, NotAfter: testNotAfter,
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
		impostor := createCert(t, tmpl, tmpl, otherKey.Public(), otherKey)
		if !bytes.Equal(impostor.RawSubject, p.root.RawSubject) {
			t.Fatal("the impostor's name differs")
		}
		bad, err := Sign(rand.Reader, p.key, p.alg, c, [][]byte{p.leaf.Raw, p.inter.Raw, impostor.Raw})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Verify(bad, nil)
		isRefusal(t, err, ErrChain)
	})
	t.Run("intermediate not a CA", func(t *testing.T) {
		q := newPKIWith(t, pluton.ECDSAP256, 4, pkiOptions{interNotCA: true})
		_, err := Verify(q.sign(t, c), nil)
		isRefusal(t, err, ErrChain)
	})
	t.Run("intermediate may not sign certificates", func(t *testing.T) {
		q := newPKIWith(t, pluton.ECDSAP256, 4, pkiOptions{interNoCertSign: true})
		_, err := Verify(q.sign(t, c), nil)
		isRefusal(t, err, ErrChain)
	})
	t.Run("self-issued root not self-signed", func(t *testing.T) {
		// The root's key and name, certified by another key under the
		// same name: the intermediate verifies, the root does not.
		otherKey := testKey(t, pluton.ECDSAP384, 13)
		tmpl := &x509.Certificate{SerialNumber: bigOne(), Subject: p.root.Subject, NotBefore: testNotBefore, NotAfter: testNotAfter,
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
		odd := createCert(t, tmpl, tmpl, p.rootKey.Public(), otherKey)
		bad, err := Sign(rand.Reader, p.key, p.alg, c, [][]byte{p.leaf.Raw, p.inter.Raw, odd.Raw})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Verify(bad, nil)
		isRefusal(t, err, ErrChain)
	})
	t.Run("unknown algorithm", func(t *testing.T) {
		// The protected header starts {1: -7, ...}: make it -1, which is
		// no signature algorithm.
		i := bytes.Index(tok, []byte{0xa3, 0x01, 0x26})
		if i < 0 {
			t.Fatal("protected header not found")
		}
		bad := bytes.Clone(tok)
		bad[i+2] = 0x20
		_, err := Verify(bad, nil)
		isRefusal(t, err, ErrMalformed)
		if !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
			t.Fatalf("cause not kept: %v", err)
		}
		// ES384 with a P-256 leaf: the key is not of the algorithm.
		bad[i+2] = 0x38
		bad = append(bad[:i+3:i+3], append([]byte{0x22}, tok[i+3:]...)...)
		bad = fixProtectedLength(t, bad, +1)
		_, err = Verify(bad, nil)
		isRefusal(t, err, ErrSignature)
	})
	t.Run("path length", func(t *testing.T) {
		q := newPKIWith(t, pluton.ECDSAP256, 5, pkiOptions{rootPathLenZero: true})
		_, err := Verify(q.sign(t, c), nil)
		isRefusal(t, err, ErrChain)
	})
	t.Run("leaf may not sign", func(t *testing.T) {
		q := newPKIWith(t, pluton.ECDSAP256, 6, pkiOptions{leafCertSign: true})
		_, err := Verify(q.sign(t, c), nil)
		isRefusal(t, err, ErrChain)
	})
	t.Run("unknown critical extension", func(t *testing.T) {
		q := newPKIWith(t, pluton.ECDSAP256, 7, pkiOptions{interExtension: &pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}}})
		_, err := Verify(q.sign(t, c), nil)
		isRefusal(t, err, ErrChain)
		// A critical DICE TcbInfo is fine.
		tcb, _ := asn1.Marshal(struct{}{})
		q = newPKIWith(t, pluton.ECDSAP256, 7, pkiOptions{interExtension: &pkix.Extension{Id: asn1.ObjectIdentifier{2, 23, 133, 5, 4, 1}, Critical: true, Value: tcb}})
		if _, err := Verify(q.sign(t, c), &VerifyOptions{Roots: q.roots}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong root", func(t *testing.T) {
		q := newPKI(t, pluton.ECDSAP256, 8)
		_, err := Verify(tok, &VerifyOptions{Roots: q.roots})
		isRefusal(t, err, ErrChain)
	})
	t.Run("root by intermediate", func(t *testing.T) {
		// A chain that stops below the root reaches it through Roots.
		short, err := Sign(rand.Reader, p.key, p.alg, c, [][]byte{p.leaf.Raw, p.inter.Raw})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(short, &VerifyOptions{Roots: p.roots}); err != nil {
			t.Fatal(err)
		}
		q := newPKI(t, pluton.ECDSAP256, 8)
		_, err = Verify(short, &VerifyOptions{Roots: q.roots})
		isRefusal(t, err, ErrChain)
		// A pool holding the intermediate anchors a chain that ends with
		// it, not one that goes on past it: the last certificate must be
		// a root or signed by one.
		pool := x509.NewCertPool()
		pool.AddCert(p.inter)
		if _, err := Verify(short, &VerifyOptions{Roots: pool}); err != nil {
			t.Fatal(err)
		}
		_, err = Verify(tok, &VerifyOptions{Roots: pool})
		isRefusal(t, err, ErrChain)
	})
	t.Run("expired at CurrentTime", func(t *testing.T) {
		_, err := Verify(tok, &VerifyOptions{CurrentTime: time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)})
		isRefusal(t, err, ErrChain)
	})
	t.Run("event log does not replay", func(t *testing.T) {
		d := testClaims(t)
		d.Registers[crypto.SHA256][4] = make([]byte, 32)
		_, err := Verify(p.sign(t, d), nil)
		isRefusal(t, err, ErrEventLog)
		if !errors.Is(err, measure.ErrReplay) {
			t.Fatalf("cause not kept: %v", err)
		}
	})
	t.Run("untagged", func(t *testing.T) {
		_, err := Verify(tok[1:], nil)
		isRefusal(t, err, ErrMalformed)
	})
	t.Run("CWT tag", func(t *testing.T) {
		_, err := Verify(append([]byte{0xd8, 61}, tok...), nil)
		isRefusal(t, err, ErrMalformed)
	})
	t.Run("trailing data", func(t *testing.T) {
		_, err := Verify(append(bytes.Clone(tok), 0), nil)
		isRefusal(t, err, ErrMalformed)
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{0, 1, 2, 10, len(tok) / 2, len(tok) - 1} {
			_, err := Verify(tok[:n], nil)
			isRefusal(t, err, ErrMalformed)
		}
	})
	t.Run("too large", func(t *testing.T) {
		big := append(bytes.Clone(tok), make([]byte, MaxTokenSize)...)
		_, err := Parse(big)
		isRefusal(t, err, ErrTooLarge)
	})
}

func mustPayload(t testing.TB, c *Claims) []byte {
	t.Helper()
	b, err := encodeClaims(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bigOne() *big.Int { return big.NewInt(1) }

// TestBitFlips: no single flipped bit anywhere yields a token that
// verifies, and every refusal is typed.
func TestBitFlips(t *testing.T) {
	p := newPKI(t, pluton.Ed25519, 1)
	c := minimalClaims()
	c.Layers = testClaims(t).Layers[:1]
	tok := p.sign(t, c)
	for i := range tok {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(tok)
			bad[i] ^= bit
			_, err := Verify(bad, &VerifyOptions{Nonce: c.Nonce, Roots: p.roots})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("byte %d bit %#x: %v", i, bit, err)
			}
		}
	}
}

func TestMalformedHeaders(t *testing.T) {
	p := newPKI(t, pluton.ECDSAP256, 1)
	payload := mustPayload(t, testClaims(t))
	for _, tc := range []struct {
		name        string
		protected   *cose.Header
		unprotected *cose.Header
		want        error
	}{
		{"no content type", &cose.Header{X5Chain: p.chain}, nil, ErrMalformed},
		{"media type string", &cose.Header{ContentType: "application/eat+cwt", X5Chain: p.chain}, nil, ErrMalformed},
		{"other content format", &cose.Header{ContentType: uint64(61), X5Chain: p.chain}, nil, ErrMalformed},
		{"no x5chain", &cose.Header{ContentType: uint64(ContentFormat)}, nil, ErrMalformed},
		{"x5chain unprotected", &cose.Header{ContentType: uint64(ContentFormat)}, &cose.Header{X5Chain: p.chain}, ErrMalformed},
		{"kid", &cose.Header{ContentType: uint64(ContentFormat), X5Chain: p.chain, KID: []byte("k")}, nil, ErrMalformed},
		{"unprotected kid", nil, &cose.Header{KID: []byte("k")}, ErrMalformed},
		{"extra protected parameter", &cose.Header{ContentType: uint64(ContentFormat), X5Chain: p.chain, Extra: map[int64][]byte{-65537: {0}}}, nil, ErrMalformed},
		{"extra unprotected parameter", nil, &cose.Header{Extra: map[int64][]byte{-65537: {0}}}, ErrMalformed},
		{"not a certificate", &cose.Header{ContentType: uint64(ContentFormat), X5Chain: [][]byte{p.leaf.Raw, []byte("not DER")}}, nil, ErrMalformed},
		{"certificate too large", &cose.Header{ContentType: uint64(ContentFormat), X5Chain: [][]byte{p.leaf.Raw, make([]byte, MaxCertificateSize+1)}}, nil, ErrTooLarge},
		{"too many certificates", &cose.Header{ContentType: uint64(ContentFormat), X5Chain: slicesRepeat(p.chain[:1], MaxCertificates+1)}, nil, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(p.signRaw(t, tc.protected, tc.unprotected, payload), nil)
			isRefusal(t, err, tc.want)
		})
	}
	t.Run("leaf key not of pluton", func(t *testing.T) {
		// An RSA leaf: crypto/x509 reads it, pluton has no such algorithm.
		bad := p.signRaw(t, &cose.Header{ContentType: uint64(ContentFormat), X5Chain: [][]byte{rsaCert(t)}}, nil, payload)
		_, err := Parse(bad)
		isRefusal(t, err, ErrMalformed)
	})
}

func slicesRepeat(s [][]byte, n int) [][]byte {
	var out [][]byte
	for range n {
		out = append(out, s...)
	}
	return out
}

func TestMalformedClaims(t *testing.T) {
	p := newPKI(t, pluton.Ed25519, 1)
	c := testClaims(t)
	good := mustPayload(t, c)
	m := claimsMap(t, good)
	raw := func(v any) cbor.RawMessage { return mustCBOR(t, v) }
	submods := func(f func(map[string]map[int64]cbor.RawMessage)) cbor.RawMessage {
		var s map[string]map[int64]cbor.RawMessage
		if err := cbor.Unmarshal(m[266], &s); err != nil {
			t.Fatal(err)
		}
		f(s)
		return raw(s)
	}
	counters := map[string]uint64{}
	for i := range MaxCounters + 1 {
		counters[strings.Repeat("c", 1+i)] = 1
	}
	manyLayers := map[string]any{}
	for i := range MaxLayers + 1 {
		manyLayers[strings.Repeat("l", 1+i)] = map[int64]any{}
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"not a map", raw([]int{1}), ErrMalformed},
		{"empty", raw(map[int]int{}), ErrMalformed},
		{"unknown claim", withClaim(t, good, 6, 1700000000), ErrMalformed},
		{"unknown private claim", withClaim(t, good, -70000, 1), ErrMalformed},
		{"text claim key", rawMap(t, pair{"10", c.Nonce}), ErrMalformed},
		{"duplicate claim", rawMap(t, pair{10, c.Nonce}, pair{10, c.Nonce}, pair{256, c.UEID}), ErrMalformed},
		{"duplicate counter", withClaim(t, good, -65539, cbor.RawMessage(rawMap(t, pair{"a", 1}, pair{"a", 2}))), ErrMalformed},
		{"unsorted map", rawMap(t, pair{256, c.UEID}, pair{10, c.Nonce}, pair{263, 2}, pair{265, Profile}, pair{-65537, "locked"}), ErrMalformed},
		{"non-preferred integer", withClaim(t, good, 263, cbor.RawMessage{0x18, 0x02}), ErrMalformed},
		{"indefinite length", withRawClaim(t, good, 10, append(append([]byte{0x5f, 0x48}, c.Nonce[:8]...), 0xff)), ErrMalformed},
		{"tag inside", withClaim(t, good, 265, cbor.RawMessage(append([]byte{0xd8, 32}, raw(Profile)...))), ErrMalformed},
		{"no nonce", withClaim(t, good, 10, nil), ErrMalformed},
		{"null nonce", withClaim(t, good, 10, cbor.RawMessage{0xf6}), ErrMalformed},
		{"text nonce", withClaim(t, good, 10, string(c.Nonce)), ErrMalformed},
		{"nonce as array of integers", withClaim(t, good, 10, []int{1, 2, 3, 4, 5, 6, 7, 8}), ErrMalformed},
		{"array of nonces", withClaim(t, good, 10, [][]byte{c.Nonce, c.Nonce}), ErrMalformed},
		{"short nonce", withClaim(t, good, 10, c.Nonce[:7]), ErrMalformed},
		{"long nonce", withClaim(t, good, 10, make([]byte, 65)), ErrMalformed},
		{"no ueid", withClaim(t, good, 256, nil), ErrMalformed},
		{"short ueid", withClaim(t, good, 256, []byte{1, 2, 3, 4, 5, 6}), ErrMalformed},
		{"long ueid", withClaim(t, good, 256, make([]byte, 34)), ErrMalformed},
		{"no dbgstat", withClaim(t, good, 263, nil), ErrMalformed},
		{"dbgstat not of the lifecycle", withClaim(t, good, 263, 3), ErrMalformed},
		{"negative dbgstat", withClaim(t, good, 263, -1), ErrMalformed},
		{"no profile", withClaim(t, good, 265, nil), ErrMalformed},
		{"other profile", withClaim(t, good, 265, "http://arm.com/psa/2.0.0"), ErrMalformed},
		{"OID profile", withClaim(t, good, 265, []byte{0x2b, 6, 1}), ErrMalformed},
		{"no lifecycle", withClaim(t, good, -65537, nil), ErrMalformed},
		{"lifecycle as integer", withClaim(t, good, -65537, 3), ErrMalformed},
		{"lifecycle in capitals", withClaim(t, good, -65537, "Locked"), ErrMalformed},
		{"unknown lifecycle", withClaim(t, good, -65537, "unlocked"), ErrMalformed},
		{"bad product", withClaim(t, good, -65538, "widget 1"), ErrMalformed},
		{"empty product", withClaim(t, good, -65538, ""), ErrMalformed},
		{"long product", withClaim(t, good, -65538, strings.Repeat("w", MaxProductLen+1)), ErrTooLarge},
		{"counter not uint", withClaim(t, good, -65539, map[string]any{"a": "1"}), ErrMalformed},
		{"negative counter", withClaim(t, good, -65539, map[string]any{"a": -1}), ErrMalformed},
		{"counter name", withClaim(t, good, -65539, map[string]any{"a b": 1}), ErrMalformed},
		{"empty counters", withClaim(t, good, -65539, map[string]any{}), ErrMalformed},
		{"too many counters", withClaim(t, good, -65539, counters), ErrTooLarge},
		{"bank by name", withClaim(t, good, -65540, map[string]any{"sha-256": map[int][]byte{0: make([]byte, 32)}}), ErrMalformed},
		{"unknown bank", withClaim(t, good, -65540, map[int]any{-44: map[int][]byte{0: make([]byte, 64)}}), ErrMalformed},
		{"register out of range", withClaim(t, good, -65540, map[int]any{-16: map[int][]byte{24: make([]byte, 32)}}), ErrMalformed},
		{"negative register", withClaim(t, good, -65540, map[int]any{-16: map[int][]byte{-1: make([]byte, 32)}}), ErrMalformed},
		{"register of the wrong size", withClaim(t, good, -65540, map[int]any{-16: map[int][]byte{0: make([]byte, 48)}}), ErrMalformed},
		{"empty bank", withClaim(t, good, -65540, map[int]any{-16: map[int][]byte{}}), ErrMalformed},
		{"event log without registers", withClaim(t, good, -65540, nil), ErrMalformed},
		{"event log not a log", withClaim(t, good, -65541, []byte("not a TCG log")), ErrMalformed},
		{"event log too large", withClaim(t, good, -65541, make([]byte, MaxEventLogSize+1)), ErrTooLarge},
		{"empty submods", withClaim(t, good, 266, map[string]any{}), ErrMalformed},
		{"too many layers", withClaim(t, good, 266, manyLayers), ErrTooLarge},
		{"submodule not a map", withClaim(t, good, 266, map[string]any{"os": []any{-16, make([]byte, 32)}}), ErrMalformed},
		{"submodule nested token", withClaim(t, good, 266, map[string]any{"os": []byte{0xd2}}), ErrMalformed},
		{"swname not the layer", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { s["os"][270] = raw("OS") })), ErrMalformed},
		{"no swversion", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { delete(s["os"], 271) })), ErrMalformed},
		{"swversion without scheme", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { s["os"][271] = raw([]any{"1.2.0"}) })), ErrMalformed},
		{"multipartnumeric scheme", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { s["os"][271] = raw([]any{"1.2.0", 1}) })), ErrMalformed},
		{"version not semver", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { s["os"][271] = raw([]any{"1.2", 16384}) })), ErrMalformed},
		{"svn as text", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { s["os"][-65542] = raw("3") })), ErrMalformed},
		{"no svn", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { delete(s["os"], -65542) })), ErrMalformed},
		{"same boot index", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { s["os"][-65543] = raw(0) })), ErrMalformed},
		{"boot index out of range", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { s["os"][-65543] = raw(3) })), ErrMalformed},
		{"no boot index", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { delete(s["os"], -65543) })), ErrMalformed},
		{"two components", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) {
			var comps []cbor.RawMessage
			_ = cbor.Unmarshal(s["os"][2399], &comps)
			s["os"][2399] = raw(append(comps, comps[0]))
		})), ErrMalformed},
		{"component without signer", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) {
			s["os"][2399] = raw([]any{map[int]any{2: make([]byte, 48), 6: "sha-384"}})
		})), ErrMalformed},
		{"component with a type", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) {
			s["os"][2399] = raw([]any{map[int]any{1: "OS", 2: make([]byte, 48), 5: make([]byte, 32), 6: "sha-384"}})
		})), ErrMalformed},
		{"unknown hash name", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) {
			s["os"][2399] = raw([]any{map[int]any{2: make([]byte, 48), 5: make([]byte, 32), 6: "SHA384"}})
		})), ErrMalformed},
		{"digest of the wrong size", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) {
			s["os"][2399] = raw([]any{map[int]any{2: make([]byte, 32), 5: make([]byte, 32), 6: "sha-384"}})
		})), ErrMalformed},
		{"signer id of the wrong size", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) {
			s["os"][2399] = raw([]any{map[int]any{2: make([]byte, 48), 5: make([]byte, 20), 6: "sha-384"}})
		})), ErrMalformed},
		{"unknown submodule claim", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) { s["os"][256] = raw(c.UEID) })), ErrMalformed},
		{"bad layer name", withClaim(t, good, 266, submods(func(s map[string]map[int64]cbor.RawMessage) {
			s["OS"] = s["os"]
			s["OS"][270] = raw("OS")
			delete(s, "os")
		})), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(p.signRaw(t, nil, nil, tc.payload), nil)
			isRefusal(t, err, tc.want)
			t.Log(err)
		})
	}
	// The unmodified payload passes, so the failures above are the
	// modifications'.
	if _, err := Verify(p.signRaw(t, nil, nil, mustCBOR(t, m)), nil); err != nil {
		t.Fatal(err)
	}
}

func TestSignRefuses(t *testing.T) {
	p := newPKI(t, pluton.ECDSAP256, 1)
	for _, tc := range []struct {
		name   string
		modify func(c *Claims)
		want   error
	}{
		{"short nonce", func(c *Claims) { c.Nonce = c.Nonce[:7] }, ErrMalformed},
		{"no nonce", func(c *Claims) { c.Nonce = nil }, ErrMalformed},
		{"long nonce", func(c *Claims) { c.Nonce = make([]byte, 65) }, ErrMalformed},
		{"short ueid", func(c *Claims) { c.UEID = c.UEID[:6] }, ErrMalformed},
		{"unknown lifecycle", func(c *Claims) { c.Lifecycle = 9 }, ErrMalformed},
		{"bad product", func(c *Claims) { c.Product = "-widget" }, ErrMalformed},
		{"long product", func(c *Claims) { c.Product = strings.Repeat("p", 65) }, ErrTooLarge},
		{"too many counters", func(c *Claims) {
			for i := range MaxCounters {
				c.Counters[strings.Repeat("x", i+1)] = 0
			}
		}, ErrTooLarge},
		{"counter name", func(c *Claims) { c.Counters["svn os"] = 1 }, ErrMalformed},
		{"long counter name", func(c *Claims) { c.Counters[strings.Repeat("x", MaxCounterNameLen+1)] = 1 }, ErrTooLarge},
		{"too many layers", func(c *Claims) {
			for i := range MaxLayers {
				m := c.Layers[0]
				m.Layer = strings.Repeat("l", i+1)
				c.Layers = append(c.Layers, m)
			}
		}, ErrTooLarge},
		{"layer twice", func(c *Claims) { c.Layers[1].Layer = "bootloader" }, ErrMalformed},
		{"layer name", func(c *Claims) { c.Layers[1].Layer = "OS" }, ErrMalformed},
		{"empty layer name", func(c *Claims) { c.Layers[1].Layer = "" }, ErrMalformed},
		{"long layer name", func(c *Claims) { c.Layers[1].Layer = strings.Repeat("l", MaxNameLen+1) }, ErrTooLarge},
		{"version", func(c *Claims) { c.Layers[1].Version = "v1.2.0" }, ErrMalformed},
		{"long version", func(c *Claims) { c.Layers[1].Version = "1.2.0-" + strings.Repeat("a", MaxVersionLen) }, ErrTooLarge},
		{"digest algorithm", func(c *Claims) { c.Layers[1].DigestAlg = crypto.SHA1 }, ErrMalformed},
		{"digest size", func(c *Claims) { c.Layers[1].Digest = c.Layers[1].Digest[:32] }, ErrMalformed},
		{"signer id size", func(c *Claims) { c.Layers[1].SignerID = make([]byte, 20) }, ErrMalformed},
		{"bank", func(c *Claims) { c.Registers[crypto.SHA512] = map[int][]byte{0: make([]byte, 64)} }, ErrMalformed},
		{"register index", func(c *Claims) { c.Registers[crypto.SHA256][24] = make([]byte, 32) }, ErrMalformed},
		{"register size", func(c *Claims) { c.Registers[crypto.SHA256][1] = make([]byte, 31) }, ErrMalformed},
		{"empty bank", func(c *Claims) { c.Registers[crypto.SHA384] = map[int][]byte{} }, ErrMalformed},
		{"event log without registers", func(c *Claims) { c.Registers = nil }, ErrMalformed},
		{"event log", func(c *Claims) { c.EventLog = c.EventLog[:len(c.EventLog)-1] }, ErrMalformed},
		{"event log too large", func(c *Claims) { c.EventLog = make([]byte, MaxEventLogSize+1) }, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testClaims(t)
			tc.modify(c)
			_, err := Sign(rand.Reader, p.key, p.alg, c, p.chain)
			isRefusal(t, err, tc.want)
			if !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("%v does not wrap ErrInvalidArgument", err)
			}
		})
	}
	c := testClaims(t)
	for _, tc := range []struct {
		name  string
		chain [][]byte
		want  error
	}{
		{"no chain", nil, ErrMalformed},
		{"not a certificate", [][]byte{[]byte("x")}, ErrMalformed},
		{"too many certificates", slicesRepeat(p.chain[:1], MaxCertificates+1), ErrTooLarge},
		{"certificate too large", [][]byte{p.leaf.Raw, make([]byte, MaxCertificateSize+1)}, ErrTooLarge},
		{"leaf of another key", [][]byte{p.inter.Raw, p.root.Raw}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Sign(rand.Reader, p.key, p.alg, c, tc.chain)
			isRefusal(t, err, tc.want)
		})
	}
	if _, err := Sign(rand.Reader, nil, p.alg, c, p.chain); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("nil signer: %v", err)
	}
	if _, err := Sign(rand.Reader, p.key, pluton.Ed25519, c, p.chain); err == nil {
		t.Fatal("Sign accepts an algorithm that is not the key's")
	}
	if _, err := Sign(rand.Reader, p.key, p.alg, nil, p.chain); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil claims: %v", err)
	}
	// Within every other limit, a token too large without its event log:
	// seven certificates of almost MaxCertificateSize and 64 long
	// counter names.
	key := testKey(t, pluton.ECDSAP256, 12)
	tmpl := &x509.Certificate{SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "fat"}, NotBefore: testNotBefore, NotAfter: testNotAfter,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2}, Value: make([]byte, MaxCertificateSize-300)}}}
	fat := createCert(t, tmpl, tmpl, key.Public(), key)
	if len(fat.Raw) > MaxCertificateSize || len(fat.Raw) < MaxCertificateSize-200 {
		t.Fatalf("fat certificate of %d bytes", len(fat.Raw))
	}
	chain := append([][]byte{p.leaf.Raw}, slicesRepeat([][]byte{fat.Raw}, MaxCertificates-1)...)
	fatClaims := minimalClaims()
	fatClaims.Counters = map[string]uint64{}
	for i := range MaxCounters {
		fatClaims.Counters[fmt.Sprintf("%0*d", MaxCounterNameLen, i)] = 1 << 60
	}
	_, err := Sign(rand.Reader, p.key, p.alg, fatClaims, chain)
	isRefusal(t, err, ErrTooLarge)
	_, err = Parse(p.signRaw(t, &cose.Header{ContentType: uint64(ContentFormat), X5Chain: chain}, nil, mustPayload(t, fatClaims)))
	isRefusal(t, err, ErrTooLarge)
}

// TestMLDSA: crypto/x509 cannot make an ML-DSA-65 certificate. A signer
// without a certificate of its key is refused; with one (here made by
// hand, signed by an ECDSA issuer), tokens work as for the other keys.
func TestMLDSA(t *testing.T) {
	c := testClaims(t)
	ml := testKey(t, pluton.MLDSA65, 1)
	p := newPKI(t, pluton.ECDSAP256, 1)
	if _, err := Sign(rand.Reader, ml, pluton.MLDSA65, c, p.chain); !errors.Is(err, ErrMalformed) || !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("ML-DSA signer with an ECDSA leaf: %v", err)
	}
	if _, err := Sign(rand.Reader, ml, pluton.MLDSA65, c, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ML-DSA signer without a chain: %v", err)
	}
	q := newPKI(t, pluton.MLDSA65, 1)
	if q.leaf.PublicKey != nil || q.leaf.PublicKeyAlgorithm != x509.UnknownPublicKeyAlgorithm {
		t.Fatalf("crypto/x509 now reads ML-DSA keys (%v): revisit leafPublicKey", q.leaf.PublicKeyAlgorithm)
	}
	tok := q.sign(t, c)
	got, err := Verify(tok, &VerifyOptions{Nonce: c.Nonce, Roots: q.roots})
	if err != nil {
		t.Fatal(err)
	}
	if got.Algorithm != pluton.MLDSA65 || !reflect.DeepEqual(got.Claims, c) {
		t.Fatalf("token %+v", got)
	}
	bad := bytes.Clone(tok)
	bad[len(bad)-10] ^= 1
	_, err = Verify(bad, nil)
	isRefusal(t, err, ErrSignature)
}

// fixProtectedLength adjusts the length of the protected header's byte
// string (a two-byte length, 0x59) after it grew by delta bytes.
func fixProtectedLength(t *testing.T, tok []byte, delta int) []byte {
	t.Helper()
	if tok[2] != 0x59 {
		t.Fatalf("protected header head %#x", tok[2])
	}
	n := int(tok[3])<<8 | int(tok[4]) + delta
	tok[3], tok[4] = byte(n>>8), byte(n)
	return tok
}

// TestErrorsStayShort: untrusted strings are cut when quoted in errors.
func TestErrorsStayShort(t *testing.T) {
	p := newPKI(t, pluton.Ed25519, 1)
	good := mustPayload(t, minimalClaims())
	long := strings.Repeat("é", 5000)
	for _, payload := range [][]byte{
		withClaim(t, good, -65537, long),
		withClaim(t, good, 265, long),
		withClaim(t, good, 266, map[string]any{long: map[int64]any{270: "x"}}),
	} {
		_, err := Verify(p.signRaw(t, nil, nil, payload), nil)
		isRefusal(t, err, ErrMalformed)
		if len(err.Error()) > 300 || !utf8.ValidString(err.Error()) {
			t.Fatalf("error of %d bytes: %.100s…", len(err.Error()), err)
		}
	}
}
