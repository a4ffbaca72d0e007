package evidence

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// sentinels are the errors every refusal wraps one of.
var sentinels = []error{ErrMalformed, ErrTooLarge, ErrSignature, ErrChain, ErrNonce, ErrEventLog}

func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("untyped error %v", err)
	}
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v wraps %d sentinels", err, n)
	}
}

// fuzzSeeds returns tokens to start from: valid ones of every algorithm
// and size, and a few broken ones.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, alg := range pluton.Algorithms() {
		p := newPKI(tb, alg, 5)
		seeds = append(seeds, p.sign(tb, testClaims(tb)), p.sign(tb, minimalClaims()), p.sign(tb, quoteClaims(tb)))
	}
	p := newPKI(tb, pluton.Ed25519, 6)
	tok := p.sign(tb, testClaims(tb))
	seeds = append(seeds,
		tok[1:],                          // untagged
		tok[:len(tok)/2],                 // truncated
		append([]byte{0xd8, 61}, tok...), // CWT tag
		p.signRaw(tb, nil, nil, rawMap(tb, pair{10, []byte("12345678")}, pair{10, []byte("12345678")})),
		p.signRaw(tb, nil, nil, withClaim(tb, mustPayload(tb, testClaims(tb)), 10, []int{1, 2, 3, 4, 5, 6, 7, 8})),
		nil, []byte{0xd2, 0x84},
	)
	return seeds
}

// FuzzParse: Parse never panics, refuses with a typed error, and what it
// accepts is canonical: its claims encode back to the same payload, pass
// Sign's checks, and the message marshals back to the input.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := Parse(b)
		if err != nil {
			checkRefusal(t, err)
			if tok != nil {
				t.Fatal("a token with an error")
			}
			return
		}
		payload, err := encodeClaims(tok.Claims)
		if err != nil {
			t.Fatalf("parsed claims do not encode: %v", err)
		}
		if !bytes.Equal(payload, tok.msg.Payload) {
			t.Fatal("parsed claims encode to other bytes")
		}
		again, err := tok.msg.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("parsed token marshals to other bytes: %v", err)
		}
		if (tok.Log == nil) != (len(tok.Claims.EventLog) == 0) || len(tok.Chain) == 0 || tok.PublicKey == nil {
			t.Fatalf("inconsistent token %+v", tok)
		}
	})
}

// FuzzVerify: Verify never panics and refuses with a typed error; what it
// accepts answers the challenge and is signed by the chain's leaf.
func FuzzVerify(f *testing.F) {
	// Deterministic certificates (Ed25519 throughout), so that every
	// fuzzing process has the same roots as the seeds.
	p := newPKIWith(f, pluton.Ed25519, 7, pkiOptions{issuerAlg: pluton.Ed25519})
	c := testClaims(f)
	f.Add(p.sign(f, c))
	m := minimalClaims()
	m.Nonce = c.Nonce
	f.Add(p.sign(f, m))
	q := quoteClaims(f)
	q.Nonce = c.Nonce
	f.Add(p.sign(f, q))
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	opts := &VerifyOptions{Nonce: c.Nonce, Roots: p.roots}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := Verify(b, opts)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if !bytes.Equal(tok.Claims.Nonce, c.Nonce) {
			t.Fatalf("accepted token %+v", tok)
		}
		if err := tok.msg.Verify(tok.PublicKey, nil); err != nil {
			t.Fatal(err)
		}
	})
}
