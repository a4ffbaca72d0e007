package registry

import (
	"context"
	"fmt"
	"math/big"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rootline/rootline/internal/pgtest"
)

// BenchmarkReserveIssue measures the registry's part of provisioning one
// chip (Reserve, then MarkIssued: two committed transactions), from 1 and
// from 8 concurrent stations. Reported as chips/s.
func BenchmarkReserveIssue(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) Registry
	}{
		{"sqlite", func(b *testing.B) Registry {
			r, err := OpenSQLite(context.Background(), &SQLiteConfig{Path: filepath.Join(b.TempDir(), "r.db")})
			if err != nil {
				b.Fatal(err)
			}
			return r
		}},
		{"postgres", func(b *testing.B) Registry {
			server := pgtestServer(b)
			r, err := OpenPostgres(context.Background(), &PostgresConfig{DSN: pgtest.CreateDatabase(b, server)})
			if err != nil {
				b.Fatal(err)
			}
			return r
		}},
	}
	for _, be := range backends {
		for _, g := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", be.name, g), func(b *testing.B) {
				r := be.open(b)
				defer r.Close()
				var next atomic.Int64
				ctx := context.Background()
				b.ResetTimer()
				cpu0 := processCPU()
				var wg sync.WaitGroup
				for range g {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := int(next.Add(1))
							if i > b.N {
								return
							}
							if _, err := r.Reserve(ctx, req(i)); err != nil {
								b.Error(err)
								return
							}
							if _, err := r.MarkIssued(ctx, ueid(i), cert(i), big.NewInt(int64(i))); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chips/s")
				// CPU time per chip (Go, and SQLite's, in this process; a
				// PostgreSQL server's is not counted): steadier than the
				// rate, which waits on the disk's syncs.
				b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// pgtestServer starts a PostgreSQL server for one benchmark. (A server
// shared by all would outlive the cleanup of the benchmark that started it.)
func pgtestServer(b *testing.B) string {
	return pgtest.Start(b)
}

// BenchmarkGet measures reading a record by UEID on SQLite (Confirm reads
// the chip's record before completing it) from 16 goroutines, as many as
// bench provision's stations: the readers' pool keeps its connections and
// prepared statements.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	r, err := OpenSQLite(ctx, &SQLiteConfig{Path: filepath.Join(b.TempDir(), "r.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	const n = 256
	for i := 1; i <= n; i++ {
		if _, err := r.Reserve(ctx, req(i)); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1))%n + 1
			if _, err := r.Get(ctx, ueid(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
