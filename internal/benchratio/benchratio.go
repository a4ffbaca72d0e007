// Package benchratio measures an operation against its raw primitive (or a
// peer) in the same benchmark run, alternating the two in small batches so
// that both see the same machine load, and reports their ratio.
//
// Speed targets of the project are written as such ratios ("the subsystem
// costs at most 10% over the raw primitive": ratio >= 0.9); a ratio measured
// in one run is far steadier on a shared 2-core machine than two separate
// benchmarks.
package benchratio

import (
	"testing"
	"time"
)

// batch is how many calls are timed together, so that reading the clock
// does not weigh on operations of a few hundred nanoseconds.
const batch = 64

// Compare runs ours and raw alternately, b.N calls each, and reports
// "ours-ns/op", "raw-ns/op" and "ratio": raw's time over ours, that is our
// throughput relative to the raw primitive (1.0 = as fast, 0.9 = 10%
// slower). It fails the benchmark if either returns an error.
func Compare(b *testing.B, ours, raw func() error) {
	b.Helper()
	var tOurs, tRaw time.Duration
	run := func(f func() error, n int) time.Duration {
		start := time.Now()
		for range n {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i, done := 0, 0; done < b.N; i, done = i+1, done+batch {
		n := min(batch, b.N-done)
		// Which goes first alternates, so neither always runs on a
		// cache or a frequency state left by the other.
		if i%2 == 0 {
			tOurs += run(ours, n)
			tRaw += run(raw, n)
		} else {
			tRaw += run(raw, n)
			tOurs += run(ours, n)
		}
	}
	b.StopTimer()
	if b.N == 0 || tOurs == 0 {
		return
	}
	b.ReportMetric(float64(tOurs.Nanoseconds())/float64(b.N), "ours-ns/op")
	b.ReportMetric(float64(tRaw.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(tRaw)/float64(tOurs), "ratio")
}
