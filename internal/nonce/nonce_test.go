package nonce

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newSource(t testing.TB, max int) (*Source, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s, err := New(&Config{Key: bytes.Repeat([]byte{7}, 32), Label: "test nonce v1", Lifetime: time.Minute, MaxEntries: max, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, c
}

func TestSpendOnce(t *testing.T) {
	s, _ := newSource(t, 0)
	n, err := s.New(nil)
	if err != nil || len(n) != Size {
		t.Fatalf("New: %d bytes, %v", len(n), err)
	}
	if err := s.Check(n, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Spend(n, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Spend(n, nil); !errors.Is(err, ErrReplayed) {
		t.Fatalf("second Spend: %v, want ErrReplayed", err)
	}
}

func TestRefusals(t *testing.T) {
	s, _ := newSource(t, 0)
	n, _ := s.New([]byte("station-1"))
	other, _ := New(&Config{Key: bytes.Repeat([]byte{8}, 32), Label: "test nonce v1"})
	defer other.Close()
	otherLabel, _ := New(&Config{Key: bytes.Repeat([]byte{7}, 32), Label: "another purpose"})
	defer otherLabel.Close()
	flip := bytes.Clone(n)
	flip[10] ^= 1
	for name, tc := range map[string]struct {
		src     *Source
		n, bind []byte
	}{
		"other binding": {s, n, []byte("station-2")},
		"no binding":    {s, n, nil},
		"other key":     {other, n, []byte("station-1")},
		"other label":   {otherLabel, n, []byte("station-1")},
		"flipped bit":   {s, flip, []byte("station-1")},
		"short":         {s, n[:Size-1], []byte("station-1")},
		"long":          {s, append(bytes.Clone(n), 0), []byte("station-1")},
		"empty":         {s, nil, nil},
	} {
		if err := tc.src.Spend(tc.n, tc.bind); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if s.Len() != 0 {
		t.Fatal("a refused nonce was recorded")
	}
	if err := s.Spend(n, []byte("station-1")); err != nil {
		t.Fatal(err)
	}
}

func TestWindows(t *testing.T) {
	s, c := newSource(t, 0)
	n1, _ := s.New(nil)
	c.add(time.Minute) // next window: still good
	if err := s.Check(n1, nil); err != nil {
		t.Fatalf("next window: %v", err)
	}
	if err := s.Spend(n1, nil); err != nil {
		t.Fatal(err)
	}
	n2, _ := s.New(nil)
	c.add(2 * time.Minute) // two windows on: expired, and n1 evicted
	if err := s.Spend(n2, nil); !errors.Is(err, ErrExpired) {
		t.Fatalf("old nonce: %v, want ErrExpired", err)
	}
	if _, err := s.New(nil); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Fatalf("%d entries after eviction", s.Len())
	}
	// A nonce from the future (a clock ahead elsewhere) is refused.
	c.add(-10 * time.Minute)
	if err := s.Spend(n2, nil); !errors.Is(err, ErrExpired) {
		t.Fatalf("future nonce: %v, want ErrExpired", err)
	}
}

func TestFull(t *testing.T) {
	s, c := newSource(t, 3)
	var ns [][]byte
	for range 4 {
		n, err := s.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		ns = append(ns, n)
	}
	for _, n := range ns[:3] {
		if err := s.Spend(n, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Spend(ns[3], nil); !errors.Is(err, ErrFull) {
		t.Fatalf("over cap: %v, want ErrFull", err)
	}
	if _, err := s.New(nil); !errors.Is(err, ErrFull) {
		t.Fatalf("New over cap: %v, want ErrFull", err)
	}
	if s.Len() != 3 {
		t.Fatalf("cache grew to %d", s.Len())
	}
	c.add(2 * time.Minute)
	n, err := s.New(nil)
	if err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if err := s.Spend(n, nil); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	s, _ := newSource(t, 0)
	n, _ := s.New(nil)
	key := s.key
	s.Close()
	if !bytes.Equal(key, make([]byte, len(key))) {
		t.Fatal("key not wiped")
	}
	if _, err := s.New(nil); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if err := s.Spend(n, nil); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestConfig(t *testing.T) {
	for name, c := range map[string]*Config{
		"short key":   {Key: make([]byte, 31), Label: "x"},
		"no label":    {Key: make([]byte, 32)},
		"NUL label":   {Key: make([]byte, 32), Label: "a\x00b"},
		"tiny window": {Key: make([]byte, 32), Label: "x", Lifetime: time.Millisecond},
		"negative":    {Key: make([]byte, 32), Label: "x", MaxEntries: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConcurrentSpend(t *testing.T) {
	s, _ := newSource(t, 0)
	n, _ := s.New(nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 16 {
		wg.Go(func() {
			if s.Spend(n, nil) == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d spends succeeded", ok)
	}
}

func FuzzSpend(f *testing.F) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	// A fixed random source, so that every fuzzing process makes the same
	// genuine nonce, the only input that may pass.
	s, err := New(&Config{Key: bytes.Repeat([]byte{7}, 32), Label: "test nonce v1", Lifetime: time.Minute,
		MaxEntries: 1 << 10, Now: c.now, Rand: bytes.NewReader(bytes.Repeat([]byte{0x42}, 64))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	genuine, _ := s.New(nil)
	f.Add(genuine, []byte(nil))
	f.Add(genuine[:10], []byte("b"))
	f.Fuzz(func(t *testing.T, n, binding []byte) {
		if err := s.Check(n, binding); err == nil {
			// Only the genuine nonce, unbound, may pass: the seed.
			if !bytes.Equal(n, genuine) || len(binding) != 0 {
				t.Fatalf("a forged nonce passed Check: %x / %x", n, binding)
			}
			return
		}
		if err := s.Spend(n, binding); err == nil {
			t.Fatal("a forged nonce was accepted")
		}
	})
}

func BenchmarkNewSpend(b *testing.B) {
	s, _ := newSource(b, 1<<30)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n, err := s.New(nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Spend(n, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
