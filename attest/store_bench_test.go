package attest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSQLiteRecord is the SQLite store alone: an accepted verdict per
// call (the rollback check, the verdict, the new state), each caller its
// own device, 16 callers per core, as behind the HTTP server.
func BenchmarkSQLiteRecord(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, &SQLiteConfig{Path: filepath.Join(b.TempDir(), "v.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var dev, ctr atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
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
}
