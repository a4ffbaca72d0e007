package evidence

import (
	"bytes"
	"crypto"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/rootline/rootline/pluton"
)

// quoteClaims are testClaims with a TPM quote claim of registers 0, 4 and
// 8 of the SHA-256 bank. The attestation and signature are opaque to this
// package: arbitrary bytes stand in for them.
func quoteClaims(tb testing.TB) *Claims {
	c := testClaims(tb)
	c.TPMQuote = &TPMQuote{
		Attest:    append([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18}, bytes.Repeat([]byte{1}, 100)...),
		Signature: append([]byte{0x00, 0x18, 0x00, 0x0b}, bytes.Repeat([]byte{2}, 68)...),
		Bank:      crypto.SHA256,
		PCRs:      []int{0, 4, 8},
	}
	return c
}

func TestTPMQuoteClaim(t *testing.T) {
	p := newPKI(t, pluton.ECDSAP256, 1)
	c := quoteClaims(t)
	tok, err := Verify(p.sign(t, c), &VerifyOptions{Nonce: c.Nonce})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tok.Claims.TPMQuote, c.TPMQuote) {
		t.Fatalf("quote claim %+v, want %+v", tok.Claims.TPMQuote, c.TPMQuote)
	}
	// The claim's encoding: a map of four entries under -65544.
	m := claimsMap(t, mustPayload(t, c))
	var q map[int]cbor.RawMessage
	if err := cbor.Unmarshal(m[-65544], &q); err != nil || len(q) != 4 {
		t.Fatalf("claim -65544 = %x, %v", m[-65544], err)
	}
	if !bytes.Equal(q[3], []byte{0x2f}) || !bytes.Equal(q[4], []byte{0x83, 0x00, 0x04, 0x08}) {
		t.Fatalf("bank %x, PCRs %x", q[3], q[4])
	}
	// A quote of all 24 registers: more than 16 array elements.
	all := testClaims(t)
	all.Registers = map[crypto.Hash]map[int][]byte{crypto.SHA384: {}}
	all.EventLog = nil
	all.TPMQuote = &TPMQuote{Attest: []byte{1}, Signature: []byte{2}, Bank: crypto.SHA384}
	for i := range 24 {
		all.Registers[crypto.SHA384][i] = make([]byte, 48)
		all.TPMQuote.PCRs = append(all.TPMQuote.PCRs, i)
	}
	if tok, err := Verify(p.sign(t, all), nil); err != nil || len(tok.Claims.TPMQuote.PCRs) != 24 {
		t.Fatalf("24 PCRs: %v", err)
	}
}

// TestTPMQuoteClaimRefused: Sign refuses a bad quote claim, and Parse a
// bad encoding of one.
func TestTPMQuoteClaimRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(c *Claims)
		want   error
	}{
		{"no attest", func(c *Claims) { c.TPMQuote.Attest = nil }, ErrMalformed},
		{"no signature", func(c *Claims) { c.TPMQuote.Signature = []byte{} }, ErrMalformed},
		{"long attest", func(c *Claims) { c.TPMQuote.Attest = make([]byte, MaxTPMQuoteSize+1) }, ErrTooLarge},
		{"long signature", func(c *Claims) { c.TPMQuote.Signature = make([]byte, MaxTPMQuoteSize+1) }, ErrTooLarge},
		{"SHA-512 bank", func(c *Claims) { c.TPMQuote.Bank = crypto.SHA512 }, ErrMalformed},
		{"no PCR", func(c *Claims) { c.TPMQuote.PCRs = nil }, ErrMalformed},
		{"unsorted PCRs", func(c *Claims) { c.TPMQuote.PCRs = []int{4, 0, 8} }, ErrMalformed},
		{"duplicate PCR", func(c *Claims) { c.TPMQuote.PCRs = []int{0, 4, 4, 8} }, ErrMalformed},
		{"PCR 24", func(c *Claims) { c.TPMQuote.PCRs = []int{0, 24} }, ErrMalformed},
		{"negative PCR", func(c *Claims) { c.TPMQuote.PCRs = []int{-1, 0} }, ErrMalformed},
		{"PCR not in the registers", func(c *Claims) { c.TPMQuote.PCRs = []int{0, 4, 7} }, ErrMalformed},
		{"no registers", func(c *Claims) { c.Registers, c.EventLog = nil, nil }, ErrMalformed},
		{"bank not in the registers", func(c *Claims) { delete(c.Registers, crypto.SHA256) }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := quoteClaims(t)
			tc.modify(c)
			_, err := encodeClaims(c)
			isRefusal(t, err, tc.want)
		})
	}

	p := newPKI(t, pluton.Ed25519, 1)
	good := mustPayload(t, quoteClaims(t))
	q := func(f func(m map[int]any)) cbor.RawMessage {
		c := quoteClaims(t)
		m := map[int]any{1: c.TPMQuote.Attest, 2: c.TPMQuote.Signature, 3: -16, 4: []int{0, 4, 8}}
		f(m)
		return mustCBOR(t, m)
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"not a map", withClaim(t, good, -65544, []int{1}), ErrMalformed},
		{"empty map", withClaim(t, good, -65544, map[int]int{}), ErrMalformed},
		{"no attest", withClaim(t, good, -65544, q(func(m map[int]any) { delete(m, 1) })), ErrMalformed},
		{"no bank", withClaim(t, good, -65544, q(func(m map[int]any) { delete(m, 3) })), ErrMalformed},
		{"no PCRs", withClaim(t, good, -65544, q(func(m map[int]any) { delete(m, 4) })), ErrMalformed},
		{"empty PCRs", withClaim(t, good, -65544, q(func(m map[int]any) { m[4] = []int{} })), ErrMalformed},
		{"unknown key", withClaim(t, good, -65544, q(func(m map[int]any) { m[5] = 1 })), ErrMalformed},
		{"attest as text", withClaim(t, good, -65544, q(func(m map[int]any) { m[1] = "attest" })), ErrMalformed},
		{"attest as null", withClaim(t, good, -65544, q(func(m map[int]any) { m[1] = nil })), ErrMalformed},
		{"bank by name", withClaim(t, good, -65544, q(func(m map[int]any) { m[3] = "sha-256" })), ErrMalformed},
		{"unknown bank", withClaim(t, good, -65544, q(func(m map[int]any) { m[3] = -44 })), ErrMalformed},
		{"PCR 24", withClaim(t, good, -65544, q(func(m map[int]any) { m[4] = []int{0, 24} })), ErrMalformed},
		{"huge PCR", withClaim(t, good, -65544, q(func(m map[int]any) { m[4] = []uint64{1 << 63} })), ErrMalformed},
		{"negative PCR", withClaim(t, good, -65544, q(func(m map[int]any) { m[4] = []int{-1} })), ErrMalformed},
		{"unsorted PCRs", withClaim(t, good, -65544, q(func(m map[int]any) { m[4] = []int{8, 4, 0} })), ErrMalformed},
		{"too many PCRs", withClaim(t, good, -65544, q(func(m map[int]any) { m[4] = make([]int, 25) })), ErrTooLarge},
		{"non-preferred PCR", withClaim(t, good, -65544, q(func(m map[int]any) { m[4] = cbor.RawMessage{0x83, 0x00, 0x18, 0x04, 0x08} })), ErrMalformed},
		{"long attest", withClaim(t, good, -65544, q(func(m map[int]any) { m[1] = make([]byte, MaxTPMQuoteSize+1) })), ErrTooLarge},
		{"without registers", withClaim(t, withClaim(t, good, -65541, nil), -65540, nil), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(p.signRaw(t, nil, nil, tc.payload), nil)
			isRefusal(t, err, tc.want)
			checkRefusal(t, err)
		})
	}
}
