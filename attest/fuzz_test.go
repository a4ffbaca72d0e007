package attest

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// FuzzVerify feeds Verify (and Attest) mutations of real tokens (of an
// emulated device, a device of an injected identity, a device on a TPM
// and a synthetic one): nothing panics, every refusal is an *Error, and
// only a genuine token is ever accepted.
func FuzzVerify(f *testing.F) {
	e := newEnv(f, &envOptions{memoryStore: true, vendorAlg: pluton.ECDSAP256})
	d := e.newDevice(2)
	td := e.newTPMDevice(2)
	id := e.newInjectedDevice(2)
	s := e.newSynth()
	var seeds [][]byte
	for range 3 {
		seeds = append(seeds, e.evidence(d.Device), e.evidence(td.Device), e.evidence(id.Device))
	}
	n, _ := e.v.Nonce(e.ctx)
	seeds = append(seeds, s.sign(f, n, s.chain))
	for _, tok := range seeds {
		f.Add(tok, false)
		f.Add(tok, true)
	}
	f.Fuzz(func(t *testing.T, tok []byte, whole bool) {
		req := &Request{Evidence: tok}
		if whole {
			res, err := e.v.Attest(e.ctx, req)
			if err != nil {
				t.Fatalf("Attest failed instead of refusing: %v", err)
			}
			if res.Status != StatusContraindicated && !slices.ContainsFunc(seeds, func(s []byte) bool { return bytes.Equal(s, tok) }) {
				t.Fatalf("a forged token was %s", res.Status)
			}
			return
		}
		ver, err := e.v.Verify(e.ctx, req)
		if err != nil {
			var re *Error
			if !errors.As(err, &re) || re.Reason.Code == "" {
				t.Fatalf("not a refusal: %v", err)
			}
			return
		}
		if !slices.ContainsFunc(seeds, func(s []byte) bool { return bytes.Equal(s, tok) }) {
			t.Fatal("a forged token verified")
		}
		e.v.Appraise(ver)
	})
}
