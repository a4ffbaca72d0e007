package evidence

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/rootline/rootline/internal/benchratio"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/measure"
)

// chainCache is a test ParseOptions.Certificates: the chains of earlier
// parses, by the SHA-256 of their DER.
type chainCache struct {
	mu    sync.Mutex
	m     map[[32]byte][]*x509.Certificate
	asked int
}

func chainDigest(ders [][]byte) [32]byte {
	h := sha256.New()
	for _, d := range ders {
		h.Write([]byte{byte(len(d) >> 24), byte(len(d) >> 16), byte(len(d) >> 8), byte(len(d))})
		h.Write(d)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *chainCache) options() *ParseOptions {
	return &ParseOptions{Certificates: func(ders [][]byte) []*x509.Certificate {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.asked++
		return c.m[chainDigest(ders)]
	}}
}

func (c *chainCache) put(tok *Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[32]byte][]*x509.Certificate{}
	}
	ders := make([][]byte, len(tok.Chain))
	for i, cert := range tok.Chain {
		ders[i] = cert.Raw
	}
	c.m[chainDigest(ders)] = tok.Chain
}

// sameToken says whether a and b are the same parse: claims, chain bytes,
// key, algorithm and raw token.
func sameToken(a, b *Token) bool {
	if len(a.Chain) != len(b.Chain) {
		return false
	}
	for i := range a.Chain {
		if !bytes.Equal(a.Chain[i].Raw, b.Chain[i].Raw) {
			return false
		}
	}
	ka, _ := pluton.MarshalPublicKey(a.PublicKey)
	kb, _ := pluton.MarshalPublicKey(b.PublicKey)
	return reflect.DeepEqual(a.Claims, b.Claims) && bytes.Equal(ka, kb) && a.Algorithm == b.Algorithm &&
		bytes.Equal(a.Raw, b.Raw) && (a.Log == nil) == (b.Log == nil)
}

func TestParseWithOptions(t *testing.T) {
	p := newPKI(t, pluton.ECDSAP256, 21)
	other := newPKI(t, pluton.ECDSAP256, 22)
	tok := p.sign(t, testClaims(t))
	want, err := Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	otherTok, err := Parse(other.sign(t, testClaims(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("nil", func(t *testing.T) {
		for _, opts := range []*ParseOptions{nil, {}} {
			got, err := ParseWithOptions(tok, opts)
			if err != nil || !sameToken(got, want) {
				t.Fatalf("%v", err)
			}
		}
	})
	t.Run("cached", func(t *testing.T) {
		var c chainCache
		c.put(want)
		got, err := ParseWithOptions(tok, c.options())
		if err != nil || !sameToken(got, want) {
			t.Fatal(err)
		}
		for i := range got.Chain {
			if got.Chain[i] != want.Chain[i] {
				t.Fatalf("certificate %d was parsed again", i)
			}
		}
		if c.asked != 1 {
			t.Fatalf("asked %d times", c.asked)
		}
		// The Token's Chain is its own slice.
		got.Chain[0] = nil
		if want.Chain[0] == nil {
			t.Fatal("the cached chain was modified through the token")
		}
	})
	// Certificates that are not byte for byte the token's are not used.
	bad := map[string][]*x509.Certificate{
		"another chain":  otherTok.Chain,
		"too short":      want.Chain[:2],
		"too long":       append(append([]*x509.Certificate(nil), want.Chain...), want.Chain[0]),
		"reordered":      {want.Chain[1], want.Chain[0], want.Chain[2]},
		"nil":            {want.Chain[0], nil, want.Chain[2]},
		"leaf replaced":  {otherTok.Chain[0], want.Chain[1], want.Chain[2]},
		"no certificate": {},
	}
	for name, certs := range bad {
		t.Run(name, func(t *testing.T) {
			got, err := ParseWithOptions(tok, &ParseOptions{Certificates: func([][]byte) []*x509.Certificate { return certs }})
			if err != nil || !sameToken(got, want) {
				t.Fatal(err)
			}
			for i, c := range got.Chain {
				if slicesContainsPtr(certs, c) {
					t.Fatalf("certificate %d came from the hook", i)
				}
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		// Whatever the hook says, what Parse refuses is refused alike.
		var c chainCache
		c.put(want)
		c.put(otherTok)
		for i, s := range fuzzSeeds(t) {
			w, werr := Parse(s)
			got, err := ParseWithOptions(s, c.options())
			if (werr == nil) != (err == nil) || werr != nil && err.Error() != werr.Error() {
				t.Fatalf("seed %d: %v, Parse: %v", i, err, werr)
			}
			if err == nil && !sameToken(got, w) {
				t.Fatalf("seed %d: another token", i)
			}
		}
	})
	t.Run("not asked beyond the limits", func(t *testing.T) {
		big := make([]byte, MaxCertificateSize+1)
		called := false
		opts := &ParseOptions{Certificates: func([][]byte) []*x509.Certificate { called = true; return want.Chain }}
		if _, err := parseChain([][]byte{want.Chain[0].Raw, big}, opts); !errors.Is(err, ErrTooLarge) || called {
			t.Fatalf("%v, hook called: %v", err, called)
		}
	})
}

// TestParseWithOptionsEventLog: the event log the hook gives is used only
// if it was parsed from exactly the token's event log; the token is the
// same either way, and what Parse refuses is refused alike.
func TestParseWithOptionsEventLog(t *testing.T) {
	p := newPKI(t, pluton.ECDSAP256, 23)
	c := testClaims(t)
	tok := p.sign(t, c)
	want, err := Parse(tok)
	if err != nil || want.Log == nil {
		t.Fatalf("%v, log %v", err, want.Log)
	}
	otherLog, err := measure.ParseLog(c.EventLog[:len(c.EventLog):len(c.EventLog)])
	if err != nil {
		t.Fatal(err)
	}
	sameBytes := otherLog // parsed from the same bytes: usable
	made, err := measure.Restore(want.Log)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		hook *measure.Log
		used bool
	}{
		"same bytes":  {sameBytes, true},
		"nil":         {nil, false},
		"not parsed":  {made.Log(), false},
		"another log": {mustParseLog(t, marshalLog(t, made, []byte("extra"))), false},
	} {
		t.Run(name, func(t *testing.T) {
			asked := 0
			got, err := ParseWithOptions(tok, &ParseOptions{EventLog: func(b []byte) *measure.Log {
				asked++
				if !bytes.Equal(b, c.EventLog) {
					t.Errorf("asked for another log")
				}
				return tc.hook
			}})
			if err != nil || !sameToken(got, want) {
				t.Fatal(err)
			}
			if asked != 1 || (got.Log == tc.hook) != tc.used {
				t.Fatalf("asked %d times, hook's log used: %v", asked, got.Log == tc.hook)
			}
			if !got.Log.ParsedFrom(c.EventLog) {
				t.Fatal("the token's log is not its event log's")
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		opts := &ParseOptions{EventLog: func([]byte) *measure.Log { return want.Log }}
		for i, s := range fuzzSeeds(t) {
			w, werr := Parse(s)
			got, err := ParseWithOptions(s, opts)
			if (werr == nil) != (err == nil) || werr != nil && err.Error() != werr.Error() {
				t.Fatalf("seed %d: %v, Parse: %v", i, err, werr)
			}
			if err == nil && !sameToken(got, w) {
				t.Fatalf("seed %d: another token", i)
			}
		}
	})
}

// marshalLog is the log of r with one more event.
func marshalLog(t *testing.T, r *measure.Registers, data []byte) []byte {
	t.Helper()
	if err := r.Measure(9, measure.EVEventTag, data, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	b, err := r.Log().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParseLog(t *testing.T, b []byte) *measure.Log {
	t.Helper()
	l, err := measure.ParseLog(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func slicesContainsPtr(s []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range s {
		if x == c {
			return true
		}
	}
	return false
}

func TestTokenSigner(t *testing.T) {
	for _, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.Ed25519} {
		t.Run(alg.String(), func(t *testing.T) {
			p := newPKIWith(t, alg, 23, pkiOptions{issuerAlg: alg})
			chain := make([][]byte, len(p.chain))
			for i, der := range p.chain {
				chain[i] = bytes.Clone(der)
			}
			ts, err := NewTokenSigner(p.key, alg, chain)
			if err != nil {
				t.Fatal(err)
			}
			chain[0][10] ^= 0xff // NewTokenSigner copied it
			c := testClaims(t)
			for range 2 {
				tok, err := ts.Sign(rand.Reader, c)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Verify(tok, &VerifyOptions{Nonce: c.Nonce, Roots: p.roots})
				if err != nil {
					t.Fatal(err)
				}
				want, err := Parse(p.sign(t, c))
				if err != nil || !reflect.DeepEqual(got.Claims, want.Claims) || !bytes.Equal(got.Chain[0].Raw, p.chain[0]) {
					t.Fatalf("token of other claims or chain: %v", err)
				}
			}
			// Invalid claims: refused as Sign refuses them.
			bad := testClaims(t)
			bad.Nonce = []byte("short")
			_, err1 := ts.Sign(rand.Reader, bad)
			_, err2 := Sign(rand.Reader, p.key, alg, bad, p.chain)
			if err1 == nil || err2 == nil || err1.Error() != err2.Error() || !errors.Is(err1, pluton.ErrInvalidArgument) {
				t.Fatalf("%v, Sign: %v", err1, err2)
			}
			// A malformed event log after the good one it remembers is
			// parsed, and refused as Sign refuses it.
			bad = testClaims(t)
			bad.EventLog = bytes.Clone(bad.EventLog)
			bad.EventLog[0] ^= 1
			_, err1 = ts.Sign(rand.Reader, bad)
			_, err2 = Sign(rand.Reader, p.key, alg, bad, p.chain)
			if err1 == nil || err2 == nil || err1.Error() != err2.Error() {
				t.Fatalf("malformed event log: %v, Sign: %v", err1, err2)
			}
			if _, err := ts.Sign(rand.Reader, c); err != nil {
				t.Fatal(err)
			}
		})
	}
	p := newPKI(t, pluton.ECDSAP256, 24)
	other := newPKI(t, pluton.ECDSAP256, 25)
	for name, c := range map[string]struct {
		key   crypto.Signer
		chain [][]byte
		want  error
	}{
		"nil signer":        {nil, p.chain, pluton.ErrInvalidArgument},
		"another key":       {other.key, p.chain, ErrMalformed},
		"no chain":          {p.key, nil, ErrMalformed},
		"not a certificate": {p.key, [][]byte{[]byte("junk")}, ErrMalformed},
		"too long":          {p.key, make([][]byte, MaxCertificates+1), ErrTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewTokenSigner(c.key, pluton.ECDSAP256, c.chain)
			if !errors.Is(err, c.want) || !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("%v", err)
			}
			if c.key != nil {
				if _, serr := Sign(rand.Reader, c.key, pluton.ECDSAP256, testClaims(t), c.chain); serr == nil || serr.Error() != err.Error() {
					t.Fatalf("%v, Sign: %v", err, serr)
				}
			}
		})
	}
}

// FuzzParseWithOptions: with a cache of the chains it parsed before,
// ParseWithOptions accepts and refuses exactly what Parse does, with the
// same token.
func FuzzParseWithOptions(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	var c chainCache
	opts := c.options()
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := Parse(b)
		got, err := ParseWithOptions(b, opts)
		if (werr == nil) != (err == nil) || werr != nil && err.Error() != werr.Error() {
			t.Fatalf("%v, Parse: %v", err, werr)
		}
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if !sameToken(got, want) {
			t.Fatal("another token")
		}
		c.put(want)
	})
}

// BenchmarkParseWithOptions is Parse of a token whose chain is cached
// against Parse of it: what a verifier saves from a device's second
// attestation on.
func BenchmarkParseWithOptions(b *testing.B) {
	p := newPKI(b, pluton.ECDSAP256, 26)
	tok := p.sign(b, testClaims(b))
	want, err := Parse(tok)
	if err != nil {
		b.Fatal(err)
	}
	var c chainCache
	c.put(want)
	opts := c.options()
	benchratio.Compare(b,
		func() error { _, err := ParseWithOptions(tok, opts); return err },
		func() error { _, err := Parse(tok); return err })
}

// BenchmarkTokenSigner is a TokenSigner's Sign against Sign, which parses
// the chain every time; both sign and check their signature.
func BenchmarkTokenSigner(b *testing.B) {
	p := newPKI(b, pluton.ECDSAP256, 27)
	c := testClaims(b)
	ts, err := NewTokenSigner(p.key, pluton.ECDSAP256, p.chain)
	if err != nil {
		b.Fatal(err)
	}
	benchratio.Compare(b,
		func() error { _, err := ts.Sign(rand.Reader, c); return err },
		func() error { _, err := Sign(rand.Reader, p.key, pluton.ECDSAP256, c, p.chain); return err })
}
