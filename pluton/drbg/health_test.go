package drbg

import (
	"crypto/rand"
	"errors"
	"io"
	"math"
	"math/big"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// exactAPTCutoff is 1 + CRITBINOM(512, p, 1-2^-alphaLog2) computed exactly in
// integer arithmetic, with p = 2^-H the float64 the code uses: p = a/2^e,
// and P[X > k] ≤ 2^-alphaLog2 is Σ_{j>k} C(n,j)·a^j·(2^e-a)^(n-j) ≤ 2^(e·n-alphaLog2).
func exactAPTCutoff(h float64, alphaLog2 int) int {
	const n = aptWindow
	frac, exp := math.Frexp(math.Pow(2, -h)) // p = frac·2^exp, 0.5 ≤ frac < 1
	a := new(big.Int).SetUint64(uint64(math.Ldexp(frac, 53)))
	e := uint(53 - exp) // p = a / 2^e
	b := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), e), a)
	// powA[j] = a^j, powB[j] = b^j.
	powA, powB := make([]*big.Int, n+1), make([]*big.Int, n+1)
	powA[0], powB[0] = big.NewInt(1), big.NewInt(1)
	for j := 1; j <= n; j++ {
		powA[j] = new(big.Int).Mul(powA[j-1], a)
		powB[j] = new(big.Int).Mul(powB[j-1], b)
	}
	limit := new(big.Int).Lsh(big.NewInt(1), e*n-uint(alphaLog2))
	tail := new(big.Int) // 2^(e·n) · P[X > k]
	k := n
	for k > 0 {
		term := new(big.Int).Binomial(n, int64(k))
		term.Mul(term, powA[k])
		term.Mul(term, powB[n-k])
		next := new(big.Int).Add(tail, term)
		if next.Cmp(limit) > 0 {
			break
		}
		tail = next
		k--
	}
	return 1 + k
}

func TestCutoffs(t *testing.T) {
	// The tables in the HealthTestedSource documentation: α = 2^-20 ...
	for _, tt := range []struct {
		h        float64
		rct, apt int
	}{
		{0.5, 41, 410}, {1, 21, 311}, {2, 11, 177}, {3, 8, 103}, {4, 6, 62},
		{5, 5, 39}, {6, 5, 25}, {7, 4, 18}, {8, 4, 13},
	} {
		if rct, apt := int(rctCutoff(tt.h, 20)), aptCutoff(tt.h, 20); rct != tt.rct || apt != tt.apt {
			t.Errorf("α = 2^-20, H = %v: cutoffs (%d, %d), want (%d, %d)", tt.h, rct, apt, tt.rct, tt.apt)
		}
	}
	// ... and α = 2^-40, the source's.
	for _, tt := range []struct {
		h        float64
		rct, apt int
	}{
		{0.5, 81, 432}, {1, 41, 336}, {2, 21, 201}, {3, 15, 123}, {4, 11, 78},
		{5, 9, 51}, {6, 8, 35}, {7, 7, 26}, {8, 6, 19},
	} {
		s, err := NewHealthTestedSource(rand.Reader, tt.h)
		if err != nil {
			t.Fatal(err)
		}
		rct, apt := s.Cutoffs()
		if rct != tt.rct || apt != tt.apt {
			t.Errorf("H = %v: cutoffs (%d, %d), want (%d, %d)", tt.h, rct, apt, tt.rct, tt.apt)
		}
	}
	// The float64 computation against exact arithmetic.
	hs := []float64{0.05, 0.1, 0.25, 1.0 / 3, 0.75, 1.25, 2.5, 3.3, 4.5, 5.5, 6.5, 7.25, 7.9}
	if !testing.Short() {
		for h := 0.2; h <= 8; h += 0.2 {
			hs = append(hs, h)
		}
	}
	for _, h := range append(hs, 1, 2, 3, 4, 5, 6, 7, 8) {
		for _, a := range []int{20, alphaLog2} {
			if got, want := aptCutoff(h, a), exactAPTCutoff(h, a); got != want {
				t.Errorf("α = 2^-%d, H = %v: APT cutoff %d, exact %d", a, h, got, want)
			}
		}
	}
	// RCT: 1 + ⌈20/H⌉ exactly at the boundaries (α = 2^-20).
	for _, tt := range []struct {
		h    float64
		want float64
	}{{20.0 / 3, 4}, {2.5, 9}, {20.0 / 7, 8}, {0.1, 201}, {1.0 / 3, 61}} {
		if got := rctCutoff(tt.h, 20); got != tt.want {
			t.Errorf("H = %v: RCT cutoff %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestNewHealthTestedSourceInvalid(t *testing.T) {
	for _, h := range []float64{0, -1, 8.01, math.NaN(), math.Inf(1), 1e-12} {
		if _, err := NewHealthTestedSource(rand.Reader, h); !errors.Is(err, pluton.ErrInvalidArgument) {
			t.Errorf("H = %v: %v, want ErrInvalidArgument", h, err)
		}
	}
	if _, err := NewHealthTestedSource(nil, 8); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Errorf("nil source: %v", err)
	}
}

// scriptedSource serves good (crypto/rand) bytes for its first good bytes,
// then the bytes of bad(i) for i = 0, 1, ..., or an error.
type scriptedSource struct {
	good int
	bad  func(i int) byte
	err  error // returned once good bytes are exhausted, if set
	n    int   // bytes served
}

func (s *scriptedSource) Read(p []byte) (int, error) {
	for i := range p {
		if s.n < s.good {
			rand.Read(p[i : i+1])
		} else if s.err != nil {
			return i, s.err
		} else {
			p[i] = s.bad(s.n - s.good)
		}
		s.n++
	}
	return len(p), nil
}

// stuck repeats one byte: the repetition count test must fire.
func stuck(int) byte { return 0x42 }

// biased puts a zero in every fourth sample, between three random nonzero
// samples. A window of 512 samples that starts on a zero holds 128 of them,
// above the cutoff for any H ≥ 3 (103), while no value ever repeats more than
// three times in a row, so the repetition count test (cutoff ≥ 4) cannot
// fire.
func biased(i int) byte {
	if i%4 == 0 {
		return 0
	}
	var b [1]byte
	for b[0] == 0 {
		rand.Read(b[:])
	}
	return b[0]
}

func wantHealthError(t *testing.T, err error, test string) *HealthError {
	t.Helper()
	if !errors.Is(err, pluton.ErrEntropy) {
		t.Fatalf("error %v does not wrap pluton.ErrEntropy", err)
	}
	var he *HealthError
	if !errors.As(err, &he) {
		t.Fatalf("error %v is not a *HealthError", err)
	}
	if he.Test != test {
		t.Fatalf("failed test %q (%v), want %q", he.Test, err, test)
	}
	return he
}

func TestHealthStuck(t *testing.T) {
	for _, h := range []float64{1, 4, 8} {
		// Good for the start-up tests and 10 KiB more, then stuck.
		src := &scriptedSource{good: startupSamples + 10240, bad: stuck}
		s, err := NewHealthTestedSource(src, h)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1000)
		var failed error
		for range 20 {
			if _, err := s.Read(buf); err != nil {
				failed = err
				break
			}
		}
		he := wantHealthError(t, failed, "repetition count")
		if he.Startup {
			t.Error("failure reported as during start-up")
		}
		for _, b := range buf {
			if b != 0 {
				t.Fatal("output of a failed Read was not zeroed")
			}
		}
		// The error state is permanent, even if the source recovers.
		src.bad = biased
		if n, err := s.Read(buf[:1]); n != 0 || err != he {
			t.Fatalf("Read after failure = %d, %v", n, err)
		}
	}
}

func TestHealthBiased(t *testing.T) {
	for _, h := range []float64{3, 4, 8} {
		src := &scriptedSource{good: startupSamples + 5*aptWindow, bad: biased}
		s, err := NewHealthTestedSource(src, h)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		var failed error
		for range 100 {
			if _, err := s.Read(buf); err != nil {
				failed = err
				break
			}
		}
		wantHealthError(t, failed, "adaptive proportion")
	}
}

// TestHealthAPTCutoffExact walks one window up to the cutoff: C-1
// occurrences of the first sample pass, the C-th fails.
func TestHealthAPTCutoffExact(t *testing.T) {
	for _, h := range []float64{4, 8} {
		for _, fire := range []bool{false, true} {
			_, c := (&HealthTestedSource{aptCutoff: aptCutoff(h, alphaLog2)}).Cutoffs()
			occurrences := c - 1
			if fire {
				occurrences = c
			}
			// A window: 0x00, then the other occurrences of 0x00 spread out,
			// distinct filler in between.
			window := make([]byte, aptWindow)
			for i := range window {
				window[i] = byte(1 + i%255)
			}
			for j := 0; j < occurrences; j++ {
				window[j*(aptWindow/c)] = 0
			}
			src := &scriptedSource{good: startupSamples, bad: func(i int) byte { return window[i%aptWindow] }}
			s, err := NewHealthTestedSource(src, h)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Read(make([]byte, aptWindow))
			if fire {
				wantHealthError(t, err, "adaptive proportion")
			} else if err != nil {
				t.Errorf("H = %v, %d occurrences (cutoff %d): %v", h, occurrences, c, err)
			}
		}
	}
}

func TestHealthStartup(t *testing.T) {
	src := &scriptedSource{good: 0, bad: stuck}
	s, err := NewHealthTestedSource(src, 8)
	if err != nil {
		t.Fatal(err)
	}
	if src.n != 0 {
		t.Errorf("NewHealthTestedSource read %d bytes", src.n)
	}
	_, err = s.Read(make([]byte, 1))
	if he := wantHealthError(t, err, "repetition count"); !he.Startup {
		t.Error("failure not reported as during start-up")
	}

	// A good source: the first Read consumes the 1024 start-up samples too.
	src = &scriptedSource{good: 1 << 20}
	s, _ = NewHealthTestedSource(src, 8)
	if _, err := s.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if src.n != startupSamples+10 {
		t.Errorf("first Read of 10 bytes consumed %d samples, want %d", src.n, startupSamples+10)
	}
	if _, err := s.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if src.n != startupSamples+20 {
		t.Errorf("second Read consumed %d samples in all, want %d", src.n, startupSamples+20)
	}
}

func TestHealthSourceErrors(t *testing.T) {
	ioErr := errors.New("noise source unplugged")
	for _, tt := range []struct {
		name string
		src  *scriptedSource
		want error
	}{
		{"error during start-up", &scriptedSource{good: 100, err: ioErr}, ioErr},
		{"error later", &scriptedSource{good: 5000, err: ioErr}, ioErr},
		{"EOF", &scriptedSource{good: 5000, err: io.EOF}, io.ErrUnexpectedEOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := NewHealthTestedSource(tt.src, 8)
			var err error
			for range 10 {
				if _, err = s.Read(make([]byte, 1000)); err != nil {
					break
				}
			}
			wantHealthError(t, err, "source read")
			if !errors.Is(err, tt.want) {
				t.Errorf("%v does not wrap %v", err, tt.want)
			}
			if _, err2 := s.Read(make([]byte, 1)); err2 != err {
				t.Errorf("error not permanent: %v", err2)
			}
		})
	}
}

// TestHealthGoodSource reads 1 MiB of crypto/rand through the tests with a
// claimed H = 4 (cutoffs 6 and 62). The chance of a false alarm on a
// perfect source is about 2^20 · 2^-40 for the repetition count test and
// negligible for the adaptive proportion test. (With H = 8 the repetition
// count cutoff is 4 and a perfect source trips it about once per 2^24
// samples, so a 1 MiB run would fail one time in sixteen.)
func TestHealthGoodSource(t *testing.T) {
	s, err := NewHealthTestedSource(rand.Reader, 4)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for range 16 {
		if _, err := s.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
}
