package drbg

import (
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/rootline/rootline/pluton"
)

// Parameters of the continuous health tests (SP 800-90B 4.4).
const (
	// alphaLog2 is -log2(α): the false-positive probability α = 2^-20 of
	// each test, the upper end of the range 2^-40 ≤ α ≤ 2^-20 that
	// SP 800-90B 4.3 recommends.
	alphaLog2 = 40
	// aptWindow is W of the adaptive proportion test: 512 for a non-binary
	// noise source (4.4.2).
	aptWindow = 512
	// startupSamples is how many samples the start-up tests run the
	// continuous tests on before the first output (4.3, item 4: at least
	// 1024 consecutive samples).
	startupSamples = 1024
)

// HealthTestedSource wraps a noise source whose samples are bytes and runs
// the continuous health tests of SP 800-90B 4.4 on every sample it passes
// on:
//
//   - the repetition count test (4.4.1), which fails on a run of
//     C = 1 + ⌈40/H⌉ identical samples;
//   - the adaptive proportion test (4.4.2), which counts, in consecutive
//     windows of W = 512 samples, how often the first sample of the window
//     recurs, and fails when the count reaches C = 1 + CRITBINOM(512, 2^-H,
//     1-2^-40), the smallest C with P[X ≥ C] ≤ 2^-40 for X ~ B(512, 2^-H).
//
// Both use α = 2^-40 and the claimed min-entropy H per sample. The cutoffs
// (repetition count, adaptive proportion) are, for example:
//
//	H     0.5   1    2    3    4   5   6   7   8
//	RCT   81    41   21   15   11  9   8   7   6
//	APT   432   336  201  123  78  51  35  26  19
//
// (With α = 2^-20, the other end of SP 800-90B's range, the same formulas
// give 41/410, 21/311, 11/177, 8/103, 6/62, 5/39, 5/25, 4/18 and 4/13; the
// tests check both.)
//
// See [HealthTestedSource.Cutoffs].
//
// The published APT formula counts the first sample of the window as one of
// W trials although it is always A; public comments on SP 800-90B point out
// that the exact cutoff, 2 + CRITBINOM(W-1, 2^-H, 1-α), is often one higher.
// This package uses the published formula, which is slightly more sensitive
// (and has slightly more false alarms) than the exact one.
//
// Before its first output it runs the start-up tests (4.3, item 4): the same
// two tests over 1024 consecutive samples, which are then discarded.
//
// Once a test fails, or the noise source returns an error or ends, the source
// is in the error state for good: every Read returns a [*HealthError] (which
// wraps [pluton.ErrEntropy]) and no data.
//
// A false alarm is expected about once per 2^40 samples per test at worst
// (fewer where the ceiling and CRITBINOM round up: with H = 8 the repetition
// count test fires on about one sample in 2^40 of a perfect source). A
// HealthTestedSource that feeds a [Live] DRBG reads only a few dozen samples
// per reseed; a caller reading much more from it directly should claim H
// conservatively.
//
// A HealthTestedSource is safe for concurrent use.
type HealthTestedSource struct {
	mu  sync.Mutex
	src io.Reader
	h   float64

	rctCutoff, aptCutoff int

	// Repetition count test state (4.4.1): A, the current sample, and B,
	// how many times in a row it has been seen (0 before the first sample).
	rctA byte
	rctB int
	// Adaptive proportion test state (4.4.2): A, the first sample of the
	// window; B, how often it has occurred in the window; and how many
	// samples of the window have been seen (0: a new window starts).
	aptA byte
	aptB int
	aptI int

	started bool         // the start-up tests passed
	err     *HealthError // the permanent error, once a test fails
}

// NewHealthTestedSource returns a HealthTestedSource over src, a noise source
// whose bytes are claimed to carry minEntropy bits of min-entropy each
// (0 < minEntropy ≤ 8). It does not read src; the start-up tests run on the
// first Read.
func NewHealthTestedSource(src io.Reader, minEntropy float64) (*HealthTestedSource, error) {
	if src == nil {
		return nil, fmt.Errorf("drbg: nil noise source: %w", pluton.ErrInvalidArgument)
	}
	if !(minEntropy > 0 && minEntropy <= 8) {
		return nil, fmt.Errorf("drbg: claimed min-entropy %v bits per 8-bit sample, want 0 < H ≤ 8: %w", minEntropy, pluton.ErrInvalidArgument)
	}
	rct := rctCutoff(minEntropy, alphaLog2)
	if rct > math.MaxInt32 {
		return nil, fmt.Errorf("drbg: claimed min-entropy %v bits per sample is too small to test: %w", minEntropy, pluton.ErrInvalidArgument)
	}
	return &HealthTestedSource{
		src:       src,
		h:         minEntropy,
		rctCutoff: int(rct),
		aptCutoff: aptCutoff(minEntropy, alphaLog2),
	}, nil
}

// rctCutoff is the repetition count test cutoff of SP 800-90B 4.4.1,
// C = 1 + ⌈-log2(α)/H⌉, for α = 2^-alphaLog2. The tiny slack keeps values
// such as 20/(20/3) from rounding up past an integer.
func rctCutoff(h float64, alphaLog2 int) float64 {
	return 1 + math.Ceil(float64(alphaLog2)/h-1e-9)
}

// aptCutoff is the adaptive proportion test cutoff of SP 800-90B 4.4.2,
// C = 1 + CRITBINOM(W, 2^-H, 1-α): CRITBINOM(n, p, 1-α) is the smallest k
// with P[X ≤ k] ≥ 1-α for X ~ B(n, p), that is the smallest k with
// P[X > k] ≤ α. The tail is summed from the top in float64 from log-space
// probabilities; a test checks the results against exact rational
// arithmetic. α = 2^-alphaLog2.
func aptCutoff(h float64, alphaLog2 int) int {
	const n = aptWindow
	alpha := math.Ldexp(1, -alphaLog2)
	logP := -h * math.Ln2               // log p, p = 2^-H
	logQ := math.Log(-math.Expm1(logP)) // log(1-p), accurately for p near 1
	lgN, _ := math.Lgamma(n + 1)
	tail := 0.0 // P[X > k]
	k := n
	for k > 0 {
		lgK, _ := math.Lgamma(float64(k) + 1)
		lgNK, _ := math.Lgamma(float64(n-k) + 1)
		pmf := math.Exp(lgN - lgK - lgNK + float64(k)*logP + float64(n-k)*logQ)
		if tail+pmf > alpha {
			break
		}
		tail += pmf
		k--
	}
	return 1 + k
}

// Cutoffs returns the cutoffs C of the repetition count test (SP 800-90B
// 4.4.1) and of the adaptive proportion test (4.4.2) for the claimed
// min-entropy.
func (s *HealthTestedSource) Cutoffs() (repetitionCount, adaptiveProportion int) {
	return s.rctCutoff, s.aptCutoff
}

// Read fills p with samples of the noise source that passed the health
// tests, or returns (0, *HealthError) if the source is in the error state.
// It reads until p is full, so n < len(p) only with an error.
func (s *HealthTestedSource) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if !s.started {
		// SP 800-90B 4.3, item 4: run the continuous tests over 1024
		// consecutive samples before any output; these samples are
		// discarded.
		var buf [startupSamples]byte
		err := s.fill(buf[:], true)
		clear(buf[:])
		if err != nil {
			return 0, err
		}
		s.started = true
	}
	if err := s.fill(p, false); err != nil {
		clear(p)
		return 0, err
	}
	return len(p), nil
}

// fill reads len(p) samples into p and tests each of them.
func (s *HealthTestedSource) fill(p []byte, startup bool) error {
	if _, err := io.ReadFull(s.src, p); err != nil {
		s.err = &HealthError{Test: "source read", Startup: startup, Err: err}
		return s.err
	}
	for _, x := range p {
		if test := s.test(x); test != "" {
			s.err = &HealthError{Test: test, Startup: startup}
			return s.err
		}
	}
	return nil
}

// test runs both continuous tests on the next sample x and returns the name
// of the test that failed, if any.
func (s *HealthTestedSource) test(x byte) string {
	// Repetition count test, SP 800-90B 4.4.1: if x = A, B = B+1 and fail
	// if B ≥ C; otherwise A = x and B = 1.
	if s.rctB > 0 && x == s.rctA {
		s.rctB++
		if s.rctB >= s.rctCutoff {
			return "repetition count"
		}
	} else {
		s.rctA, s.rctB = x, 1
	}
	// Adaptive proportion test, SP 800-90B 4.4.2: step 1, A = the first
	// sample of the window; step 2, B = 1; step 3, for each of the next
	// W-1 samples, if it equals A, B = B+1, and fail if B ≥ C.
	if s.aptI == 0 {
		s.aptA, s.aptB = x, 1
	} else if x == s.aptA {
		s.aptB++
		if s.aptB >= s.aptCutoff {
			return "adaptive proportion"
		}
	}
	s.aptI++
	if s.aptI == aptWindow {
		s.aptI = 0
	}
	return ""
}
