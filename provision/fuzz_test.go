package provision

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// FuzzNonce: only nonces the service made for the station are accepted, and
// each once; anything else is ErrNonce.
func FuzzNonce(f *testing.F) {
	e := newEnv(f)
	good, err := e.svc.Nonce(context.Background(), e.station)
	if err != nil {
		f.Fatal(err)
	}
	other, _ := e.svc.Nonce(context.Background(), Station{Name: "st-2"})
	f.Add(good, "st-1")
	f.Add(other, "st-1")
	f.Add(good[:10], "st-1")
	f.Add([]byte{}, "")
	// (Seeds may come from another fuzzing process, whose nonces are made
	// with the same key and clock: valid here too.)
	spent := map[string]bool{}
	f.Fuzz(func(t *testing.T, nonce []byte, station string) {
		// The station the nonce is bound to, if it is one of the two
		// issued: the other must not be able to use it.
		for _, other := range []string{"st-1", "st-2"} {
			if other != station && e.svc.nonces.Check(nonce, []byte(other)) == nil && e.svc.nonces.Check(nonce, []byte(station)) == nil {
				t.Fatalf("nonce %x valid for both %q and %q", nonce, station, other)
			}
		}
		err := e.svc.spendNonce(station, nonce)
		if err == nil {
			// Nonces were issued to st-1 and st-2 only: one of theirs,
			// spent by that station, once.
			if (station != "st-1" && station != "st-2") || len(nonce) != NonceSize || spent[string(nonce)] {
				t.Fatalf("accepted %x for %q", nonce, station)
			}
			spent[string(nonce)] = true
			return
		}
		if !errors.Is(err, ErrNonce) {
			t.Fatalf("error %v is not ErrNonce", err)
		}
	})
}

// FuzzProvision: mangled evidence and CSRs are refused, and issue nothing.
func FuzzProvision(f *testing.F) {
	e := newEnv(f)
	d := e.chip(f, e.fw)
	good := e.request(f, d, e.station)
	f.Add(good.Evidence, good.CSR)
	f.Add(good.Evidence[:len(good.Evidence)-3], good.CSR)
	f.Add(good.Evidence, good.CSR[:20])
	f.Add([]byte{0xd2, 0x84}, []byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, ev, csr []byte) {
		req := *good
		req.Evidence, req.CSR = ev, csr
		_, err := e.svc.Provision(context.Background(), e.station, &req)
		if err == nil && (!bytes.Equal(ev, good.Evidence) || !bytes.Equal(csr, good.CSR)) {
			t.Fatal("a mangled request was provisioned")
		}
		if i, l := e.counts(t); i > 1 || l > 1 {
			t.Fatalf("issued %d, logged %d", i, l)
		}
	})
}
