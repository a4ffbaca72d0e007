package attest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time (user and system) this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSQLiteRecord is the SQLite store alone: an accepted verdict per
// call (the rollback check, the verdict, the new state), each caller its
// own device, 16 callers per core, as behind the HTTP server. It reports
// the process CPU per write (cpu-ns/op: the writer's transactions, the
// callers' goroutines, the GC) and the writes per transaction.
func BenchmarkSQLiteRecord(b *testing.B) {
	b.Run("wait=default", func(b *testing.B) { benchmarkSQLiteRecord(b, 0) })
	b.Run("wait=none", func(b *testing.B) { benchmarkSQLiteRecord(b, -1) })
}

func benchmarkSQLiteRecord(b *testing.B, wait time.Duration) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, &SQLiteConfig{Path: filepath.Join(b.TempDir(), "v.db"), GatherWait: wait})
	if err != nil {
		b.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	var dev, ctr atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		ueid := fmt.Appendf(nil, "device-%08d", dev.Add(1))
		for pb.Next() {
			n := uint64(ctr.Add(1))
			v := &Verdict{UEID: ueid, Time: time.Now(), Status: StatusAffirming, Product: "sku-a", Release: "factory-1",
				Accepted: &DeviceState{Counters: map[string]uint64{"svn/policy": 1, "n": n}, SVNs: map[string]uint64{"app": 1, "os": 1, "bootloader": 1}}}
			if err := s.Record(ctx, v); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
	// The setup's writes are none: every write counted is the loop's.
	closed = true
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(s.writes)/float64(max(s.commits, 1)), "writes/commit")
}
