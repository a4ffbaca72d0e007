package vault_test

import (
	"crypto"
	"crypto/sha256"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/vault"
	"github.com/rootline/rootline/internal/vaulttest"
)

// BenchmarkVaultSign measures ECDSA P-256 signatures through a transit
// key on a local Vault dev server (HTTP on loopback, in-memory storage),
// with 1 and 2 goroutines. Each signature is one HTTP request; the
// figure to watch is sigs/s.
func BenchmarkVaultSign(b *testing.B) {
	srv := vaulttest.Start(b)
	srv.EnableTransit(b)
	k, err := vault.Open(b.Context(), &vault.Config{Address: srv.Addr, Token: srv.RootToken})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	if _, err := k.CreateKey(b.Context(), "bench", hsm.P256); err != nil {
		b.Fatal(err)
	}
	s, err := k.Signer(b.Context(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("rootline benchmark"))
	for _, n := range []int{1, 2} {
		b.Run("p256/"+strconv.Itoa(n), func(b *testing.B) {
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range n {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
		})
	}
}
