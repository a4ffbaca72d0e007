package api

import (
	"sync/atomic"
	"testing"

	"github.com/rootline/rootline/attest"
)

// BenchmarkAttest compares the verifier's own work per attestation
// (Verifier.Attest, memory store, chains cached) with the same through the
// API over HTTPS (TLS 1.3, one HTTP/1.1 connection per client goroutine),
// in CBOR and JSON: the difference is the cost of this package and of
// net/http and crypto/tls. Tokens are made before the timer starts.
func BenchmarkAttest(b *testing.B) {
	e := newEnv(b)
	s := e.newSynth()
	tokens := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			nc, err := e.v.Nonce(e.ctx)
			if err != nil {
				b.Fatal(err)
			}
			out[i] = s.sign(b, nc, s.chain)
		}
		return out
	}
	if res, err := e.v.Attest(e.ctx, &attest.Request{Evidence: tokens(1)[0]}); err != nil || res.Status != attest.StatusAffirming {
		b.Fatal(res, err)
	}
	b.Run("direct", func(b *testing.B) {
		toks := tokens(b.N)
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := e.v.Attest(e.ctx, &attest.Request{Evidence: toks[next.Add(1)-1]})
				if err != nil || res.Status != attest.StatusAffirming {
					b.Error(res, err)
					return
				}
			}
		})
	})
	for _, json := range []bool{false, true} {
		name := "https-cbor"
		if json {
			name = "https-json"
		}
		b.Run(name, func(b *testing.B) {
			toks := tokens(b.N)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := Dial(&ClientConfig{URL: e.url, ServerCA: e.serverCA, JSON: json, HTTP1: true})
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				for pb.Next() {
					res, err := c.Attest(e.ctx, &AttestRequest{Evidence: toks[next.Add(1)-1]})
					if err != nil || res.Status != attest.StatusAffirming {
						b.Error(res, err)
						return
					}
				}
			})
		})
	}
	b.Run("https-nonce", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			c, err := Dial(&ClientConfig{URL: e.url, ServerCA: e.serverCA, HTTP1: true})
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			for pb.Next() {
				if _, err := c.Nonce(e.ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
