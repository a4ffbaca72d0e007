// Package nonce makes and checks stateless, single-use challenges.
//
// A nonce is Size bytes:
//
//	window (8, big-endian) || random (RandomSize) || HMAC-SHA-256(key, label || 0x00 || window || random || binding)
//
// window is the time divided by the lifetime (the number of whole
// lifetimes since the Unix epoch), random comes from the Source's random
// reader, and binding is an optional byte string the caller ties the nonce
// to (a station name, a device identifier; empty for none). The label names
// the purpose ("rootline/attest nonce v1"), so that a nonce made for one
// purpose is refused for another even under the same key.
//
// Any replica holding the key can check a nonce: it needs no shared state.
// A nonce is accepted in its window and the next (so it lives between one
// and two lifetimes), and only once: a Source remembers the nonces spent in
// those two windows in a bounded cache, evicted a window at a time. When the
// cache holds MaxEntries unexpired nonces, the Source refuses to make or to
// spend more (ErrFull) rather than grow. Single use holds per Source: replicas
// that must not accept a nonce twice between them need a shared cache, or
// sticky routing.
//
// MACs are compared in constant time (hmac.Equal); the key is copied in and
// wiped by Close.
package nonce

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

var (
	// ErrInvalid: the nonce was not made by a Source with this key, label
	// and binding (wrong size, wrong MAC).
	ErrInvalid = errors.New("nonce: not issued by this source")
	// ErrExpired: the nonce's window is neither the current one nor the
	// one before (or lies in the future).
	ErrExpired = errors.New("nonce: expired")
	// ErrReplayed: the nonce was spent already.
	ErrReplayed = errors.New("nonce: already used")
	// ErrFull: the replay cache is full of unexpired nonces; no nonce is
	// made or spent until a window expires.
	ErrFull = errors.New("nonce: replay cache full")
	// ErrClosed: the Source was closed.
	ErrClosed = errors.New("nonce: source closed")
)

// Sizes of a nonce and its parts.
const (
	WindowSize = 8
	RandomSize = 16
	MACSize    = sha256.Size
	Size       = WindowSize + RandomSize + MACSize
	// MinKeySize is the shortest HMAC key accepted.
	MinKeySize = 32
	// MaxLabelLen bounds the label.
	MaxLabelLen = 128
	// DefaultLifetime is the default window length.
	DefaultLifetime = 5 * time.Minute
	// DefaultMaxEntries is the default bound of the replay cache.
	DefaultMaxEntries = 1 << 20
)

// Config configures New.
type Config struct {
	// Key is the HMAC-SHA-256 key, at least MinKeySize bytes; shared by
	// the replicas that must accept each other's nonces. New copies it.
	Key []byte
	// Label names the nonces' purpose: 1 to MaxLabelLen bytes, no NUL.
	Label string
	// Lifetime is the window length; a nonce is accepted for one to two
	// lifetimes. Default DefaultLifetime.
	Lifetime time.Duration
	// MaxEntries bounds the replay cache. Default DefaultMaxEntries.
	MaxEntries int
	// Rand draws the random part. Default crypto/rand.Reader.
	Rand io.Reader
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate checks c.
func (c *Config) Validate() error {
	switch {
	case len(c.Key) < MinKeySize:
		return fmt.Errorf("nonce: key of %d bytes (at least %d)", len(c.Key), MinKeySize)
	case c.Label == "" || len(c.Label) > MaxLabelLen || strings.IndexByte(c.Label, 0) >= 0:
		return errors.New("nonce: label must be 1 to 128 bytes without NUL")
	case c.Lifetime < 0 || c.Lifetime > 0 && c.Lifetime < time.Second:
		return errors.New("nonce: lifetime must be at least a second")
	case c.MaxEntries < 0:
		return errors.New("nonce: negative MaxEntries")
	}
	return nil
}

// Source makes nonces and spends them. It is safe for concurrent use.
type Source struct {
	label    []byte
	lifetime time.Duration
	max      int
	rand     io.Reader
	now      func() time.Time

	keyMu sync.RWMutex
	key   []byte // nil once closed

	mu      sync.Mutex
	spent   map[[RandomSize]byte]uint64 // random → window
	windows map[uint64][][RandomSize]byte
}

// New returns a Source configured by cfg.
func New(cfg *Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{
		label:    append([]byte(cfg.Label), 0),
		lifetime: cfg.Lifetime,
		max:      cfg.MaxEntries,
		rand:     cfg.Rand,
		now:      cfg.Now,
		key:      append([]byte(nil), cfg.Key...),
		spent:    map[[RandomSize]byte]uint64{},
		windows:  map[uint64][][RandomSize]byte{},
	}
	if s.lifetime == 0 {
		s.lifetime = DefaultLifetime
	}
	if s.max == 0 {
		s.max = DefaultMaxEntries
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

func (s *Source) window() uint64 {
	t := s.now().UnixNano()
	if t < 0 {
		return 0
	}
	return uint64(t) / uint64(s.lifetime)
}

// mac appends to dst the MAC of head (window || random) bound to binding,
// or returns ErrClosed.
func (s *Source) mac(dst, head, binding []byte) ([]byte, error) {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	if s.key == nil {
		return nil, ErrClosed
	}
	m := hmac.New(sha256.New, s.key)
	m.Write(s.label)
	m.Write(head)
	m.Write(binding)
	return m.Sum(dst), nil
}

func (s *Source) closed() bool {
	s.keyMu.RLock()
	defer s.keyMu.RUnlock()
	return s.key == nil
}

// New returns a fresh nonce bound to binding (nil for none). It fails with
// ErrFull while the replay cache is full, since such a nonce could not be
// spent, and with ErrClosed after Close.
func (s *Source) New(binding []byte) ([]byte, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	s.mu.Lock()
	w := s.window()
	s.evict(w)
	full := len(s.spent) >= s.max
	s.mu.Unlock()
	if full {
		return nil, ErrFull
	}
	n := make([]byte, WindowSize+RandomSize, Size)
	binary.BigEndian.PutUint64(n, w)
	if _, err := io.ReadFull(s.rand, n[WindowSize:]); err != nil {
		return nil, fmt.Errorf("nonce: reading randomness: %w", err)
	}
	return s.mac(n, n, binding)
}

// Check reports whether the untrusted nonce n is this Source's, bound to
// binding, and within its lifetime, without spending it (it may have been
// spent already). Errors: ErrInvalid, ErrExpired, ErrClosed.
func (s *Source) Check(n, binding []byte) error {
	_, _, err := s.check(n, binding)
	return err
}

func (s *Source) check(n, binding []byte) (w uint64, r [RandomSize]byte, err error) {
	if len(n) != Size {
		return 0, r, fmt.Errorf("%w: %d bytes, want %d", ErrInvalid, len(n), Size)
	}
	head := n[:WindowSize+RandomSize]
	var buf [MACSize]byte
	want, err := s.mac(buf[:0], head, binding)
	if err != nil {
		return 0, r, err
	}
	if !hmac.Equal(n[len(head):], want) {
		return 0, r, ErrInvalid
	}
	w, cur := binary.BigEndian.Uint64(n), s.window()
	if w != cur && w+1 != cur {
		return 0, r, ErrExpired
	}
	copy(r[:], n[WindowSize:])
	return w, r, nil
}

// Spend checks n as Check does and marks it used. Errors: ErrInvalid,
// ErrExpired, ErrReplayed, ErrFull (nothing recorded), ErrClosed.
func (s *Source) Spend(n, binding []byte) error {
	w, r, err := s.check(n, binding)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.spent == nil {
		return ErrClosed
	}
	cur := s.window()
	s.evict(cur)
	if w+1 < cur { // expired while we waited for the lock
		return ErrExpired
	}
	if _, ok := s.spent[r]; ok {
		return ErrReplayed
	}
	if len(s.spent) >= s.max {
		return ErrFull
	}
	s.spent[r] = w
	s.windows[w] = append(s.windows[w], r)
	return nil
}

// evict drops the spent nonces of windows before cur-1: they are refused as
// expired anyway. s.mu is held.
func (s *Source) evict(cur uint64) {
	for w, rs := range s.windows {
		if w+1 < cur {
			for _, r := range rs {
				delete(s.spent, r)
			}
			delete(s.windows, w)
		}
	}
}

// Len returns the number of spent nonces remembered.
func (s *Source) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.spent)
}

// Close wipes the key and forgets the spent nonces; every later call fails
// with ErrClosed. Closing twice is harmless.
func (s *Source) Close() error {
	s.keyMu.Lock()
	clear(s.key)
	s.key = nil
	s.keyMu.Unlock()
	s.mu.Lock()
	s.spent, s.windows = nil, nil
	s.mu.Unlock()
	return nil
}
