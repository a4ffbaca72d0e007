package drbg

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// liveUntilFailure reads from l (and asks it to reseed) until it fails, and
// returns the error.
func liveUntilFailure(t *testing.T, l *Live) error {
	t.Helper()
	buf := make([]byte, 64)
	for range 1000 {
		if _, err := l.Read(buf); err != nil {
			return err
		}
		if err := l.Reseed(nil); err != nil {
			return err
		}
	}
	t.Fatal("Live never failed")
	return nil
}

// wantLiveRefuses checks that l is disabled for good: Read returns 0 bytes,
// zeroes p, and fails with an error wrapping pluton.ErrEntropy, and so does
// Reseed.
func wantLiveRefuses(t *testing.T, l *Live) {
	t.Helper()
	buf := bytes.Repeat([]byte{0xaa}, 100)
	n, err := l.Read(buf)
	if n != 0 || !errors.Is(err, pluton.ErrEntropy) {
		t.Fatalf("Read after failure = %d, %v; want 0 and ErrEntropy", n, err)
	}
	if !bytes.Equal(buf, make([]byte, 100)) {
		t.Error("Read after failure left data in p")
	}
	if err := l.Reseed([]byte("again")); !errors.Is(err, pluton.ErrEntropy) {
		t.Fatalf("Reseed after failure = %v; want ErrEntropy", err)
	}
	if l.drbg.keyLen != 0 {
		t.Error("the DRBG state was not uninstantiated")
	}
}

func TestLiveStuckSource(t *testing.T) {
	// Good for start-up and instantiation, and a few reseeds, then stuck.
	src := &scriptedSource{good: startupSamples + 48 + 5*32, bad: stuck}
	hs, err := NewHealthTestedSource(src, 8)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLive(hs, []byte("stuck"))
	if err != nil {
		t.Fatal(err)
	}
	err = liveUntilFailure(t, l)
	wantHealthError(t, err, "repetition count")
	wantLiveRefuses(t, l)
}

func TestLiveBiasedSource(t *testing.T) {
	// Good for exactly three windows (start-up and the first window), then
	// biased from a window boundary on. H = 4: APT cutoff 62, RCT cutoff 6.
	src := &scriptedSource{good: startupSamples + aptWindow, bad: biased}
	hs, err := NewHealthTestedSource(src, 4)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLive(hs, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = liveUntilFailure(t, l)
	wantHealthError(t, err, "adaptive proportion")
	wantLiveRefuses(t, l)
}

// TestLiveAutomaticReseedFailure: the source fails while Live is only being
// read, and the failure shows at the first automatic reseed.
func TestLiveAutomaticReseedFailure(t *testing.T) {
	src := &scriptedSource{good: startupSamples + 48, bad: stuck}
	hs, _ := NewHealthTestedSource(src, 8)
	l, err := NewLive(hs, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	for i := range LiveReseedInterval {
		if _, err := l.Read(buf); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	_, err = l.Read(buf)
	wantHealthError(t, err, "repetition count")
	wantLiveRefuses(t, l)
}

func TestLiveSourceReadError(t *testing.T) {
	ioErr := errors.New("TRNG timeout")
	for _, tt := range []struct {
		name   string
		src    io.Reader
		health bool
	}{
		{"plain reader", &scriptedSource{good: 48 + 32, err: ioErr}, false},
		{"health-tested reader", &scriptedSource{good: startupSamples + 48 + 32, err: ioErr}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if tt.health {
				src, _ = NewHealthTestedSource(src, 8)
			}
			l, err := NewLive(src, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Reseed(nil); err != nil {
				t.Fatalf("first reseed: %v", err)
			}
			err = l.Reseed(nil)
			wantHealthError(t, err, "source read")
			if !errors.Is(err, ioErr) {
				t.Errorf("%v does not wrap the read error", err)
			}
			wantLiveRefuses(t, l)
		})
	}
}

func TestNewLiveFailingSource(t *testing.T) {
	hs, _ := NewHealthTestedSource(&scriptedSource{bad: stuck}, 8)
	if _, err := NewLive(hs, nil); !errors.Is(err, pluton.ErrEntropy) {
		t.Errorf("NewLive over a stuck source: %v", err)
	}
	if _, err := NewLive(&scriptedSource{good: 47, err: io.EOF}, nil); !errors.Is(err, pluton.ErrEntropy) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("NewLive over a short source: %v", err)
	}
	if _, err := NewLive(nil, nil); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Errorf("NewLive(nil): %v", err)
	}
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestLiveEntropyAmounts(t *testing.T) {
	// Full-entropy reader: 32 + 16 bytes to instantiate, 32 per reseed.
	c := &countingReader{r: rand.Reader}
	l, err := NewLive(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.n != 48 {
		t.Errorf("instantiation read %d bytes, want 48", c.n)
	}
	buf := make([]byte, 1)
	for range LiveReseedInterval {
		l.Read(buf)
	}
	if c.n != 48 {
		t.Errorf("%d requests read %d bytes, want 48", LiveReseedInterval, c.n)
	}
	l.Read(buf)
	if c.n != 48+32 {
		t.Errorf("request %d read %d bytes in all, want 80 (one automatic reseed)", LiveReseedInterval+1, c.n)
	}
	// A large read is split into 64 KiB requests, each counting.
	l.Reseed(nil)
	big := make([]byte, (LiveReseedInterval+1)*maxRequestBytes/64)
	for range 64 {
		l.Read(big)
	}
	if c.n != 48+32+32+32 {
		t.Errorf("%d requests of 64 KiB read %d bytes in all, want %d", LiveReseedInterval+1, c.n, 48+32+32+32)
	}

	// A source claiming H = 4: 64 + 32 samples, after 1024 start-up samples.
	c = &countingReader{r: rand.Reader}
	hs, _ := NewHealthTestedSource(c, 4)
	l, err = NewLive(hs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.n != startupSamples+96 {
		t.Errorf("instantiation read %d bytes, want %d", c.n, startupSamples+96)
	}
	l.Reseed(nil)
	if c.n != startupSamples+96+64 {
		t.Errorf("reseed read %d bytes, want 64", c.n-startupSamples-96)
	}

	// Prediction resistance: a reseed before every request.
	c = &countingReader{r: rand.Reader}
	l, err = NewLivePredictionResistant(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Read(make([]byte, 3*maxRequestBytes))
	if c.n != 48+3*32 {
		t.Errorf("prediction resistance: 3 requests read %d bytes in all, want %d", c.n, 48+3*32)
	}
}

// TestLiveIsCTRDRBG checks Live's output against a CTR_DRBG AES-256 with
// derivation function driven by hand with the same entropy, for reads that
// span several requests and automatic reseeds.
func TestLiveIsCTRDRBG(t *testing.T) {
	for _, pr := range []bool{false, true} {
		entropy := randBytes(48 + 100*32)
		perso := []byte("device 42")
		newL := NewLive
		if pr {
			newL = NewLivePredictionResistant
		}
		l, err := newL(bytes.NewReader(entropy), perso)
		if err != nil {
			t.Fatal(err)
		}
		l.drbg.reseedInterval = 3 // to see automatic reseeds

		d, err := NewCTR(256, true, entropy[:32], entropy[32:48], perso)
		if err != nil {
			t.Fatal(err)
		}
		d.reseedInterval = 3
		next := entropy[48:]
		reseed := func() {
			if err := d.Reseed(next[:32], nil); err != nil {
				t.Fatal(err)
			}
			next = next[32:]
		}
		for _, n := range []int{0, 1, 32, 1000, maxRequestBytes, maxRequestBytes + 1, 3*maxRequestBytes - 5} {
			got := make([]byte, n)
			if _, err := l.Read(got); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, n)
			for off := 0; off < n; off += maxRequestBytes {
				chunk := want[off:min(n, off+maxRequestBytes)]
				if pr {
					reseed()
				}
				err := d.Generate(chunk, nil)
				if errors.Is(err, ErrReseedRequired) {
					reseed()
					err = d.Generate(chunk, nil)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("pr=%v: read of %d bytes differs from CTR_DRBG", pr, n)
			}
		}
	}
}

func TestLiveConcurrent(t *testing.T) {
	l, err := NewLive(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outs := make([][]byte, 8)
	for i := range outs {
		wg.Go(func() {
			buf := make([]byte, 40)
			for range 2000 {
				if _, err := l.Read(buf[:1+i]); err != nil {
					t.Error(err)
					return
				}
			}
			outs[i] = bytes.Clone(buf)
			if i%2 == 0 {
				l.Reseed([]byte{byte(i)})
			}
		})
	}
	wg.Wait()
	for i := range outs {
		for j := range i {
			if bytes.Equal(outs[i], outs[j]) {
				t.Errorf("readers %d and %d got the same output", i, j)
			}
		}
	}
}

func TestLiveClose(t *testing.T) {
	l, err := NewLive(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := l.Read(make([]byte, 1)); !errors.Is(err, pluton.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if l.drbg.keyLen != 0 || l.drbg.v != [blockLen]byte{} {
		t.Error("Close left DRBG state behind")
	}
}

func TestLiveAllocs(t *testing.T) {
	if !hasAESNI {
		t.Skip("crypto/aes allocates on every rekey")
	}
	l, err := NewLive(rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for _, n := range []int{32, 4096} {
		if a := testing.AllocsPerRun(1000, func() { l.Read(buf[:n]) }); a != 0 {
			t.Errorf("%d-byte Read: %v allocations", n, a)
		}
	}
}

func TestNewLiveTinyMinEntropy(t *testing.T) {
	hs, err := NewHealthTestedSource(rand.Reader, 1e-4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLive(hs, nil); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Errorf("NewLive over a source claiming 1e-4 bits per byte: %v", err)
	}
}
