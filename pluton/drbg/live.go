package drbg

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/rootline/rootline/pluton"
)

const (
	// liveSecurityStrength is the security strength of Live, in bits:
	// CTR_DRBG with AES-256.
	liveSecurityStrength = 256
	// LiveReseedInterval is the reseed_interval of Live: it reseeds from its
	// entropy source after this many Generate requests (each at most 64
	// KiB), far below the SP 800-90A maximum of 2^48 (10.2.1, Table 3).
	// The cost of a reseed is then a fraction of a nanosecond per request.
	LiveReseedInterval = 1 << 12
	// maxLiveSeedBytes bounds what Live reads for one instantiation: a
	// source claiming less than about 0.0004 bits per byte is refused.
	maxLiveSeedBytes = 1 << 20
)

// Live is the DRBG that the security subsystem hands out: a CTR_DRBG with
// AES-256 and the derivation function (SP 800-90A Rev. 1, 10.2.1), seeded
// from an entropy source, safe for concurrent use.
//
//   - It instantiates from 256 bits of entropy plus a 128-bit nonce read from
//     the source (8.6.7 allows a nonce from the entropy source), with an
//     optional personalization string.
//   - It reseeds from the source after [LiveReseedInterval] Generate
//     requests (9.3.1 steps 7-9), on [Live.Reseed], and, if created by
//     [NewLivePredictionResistant], before every request (9.3.1 step 7).
//   - Read splits large reads into Generate requests of at most 2^19 bits
//     (64 KiB), max_number_of_bits_per_request; no output is kept between
//     calls.
//   - If the entropy source fails (a [HealthError], a read error or a short
//     read), Live uninstantiates itself (9.4) and every later call returns an
//     error wrapping [pluton.ErrEntropy]. It never falls back to another
//     source or keeps going on the old seed.
//
// How many bytes make 256 bits of entropy: if the source is a
// [*HealthTestedSource], ⌈256/H⌉ samples at its claimed min-entropy H per
// byte (the derivation function condenses them); any other reader is taken
// to deliver full entropy, 8 bits per byte, as crypto/rand.Reader does.
type Live struct {
	mu      sync.Mutex
	drbg    CTR
	entropy io.Reader
	pr      bool

	entropyLen, nonceLen int    // bytes read from entropy for 256 and 128 bits
	buf                  []byte // entropy input, wiped after use
	err                  error  // permanent failure
}

// NewLive instantiates a Live DRBG from entropy (normally a
// [*HealthTestedSource] over the hardware noise source or crypto/rand.Reader)
// and an optional personalization string (at most 2^32 bytes; a device
// identity or a boot counter keeps instances apart). It fails with an error
// wrapping [pluton.ErrEntropy] if the source fails, and wrapping
// [pluton.ErrSelfTest] if the CTR_DRBG self-test fails.
func NewLive(entropy io.Reader, personalization []byte) (*Live, error) {
	return newLive(entropy, personalization, false)
}

// NewLivePredictionResistant is like [NewLive] but the DRBG provides
// prediction resistance (SP 800-90A 8.8, 9.3.1 step 7): it reseeds from the
// entropy source before every Generate request, so that each output depends
// on fresh entropy. It consumes ⌈256/H⌉ bytes of entropy per request of up
// to 64 KiB.
func NewLivePredictionResistant(entropy io.Reader, personalization []byte) (*Live, error) {
	return newLive(entropy, personalization, true)
}

func newLive(entropy io.Reader, personalization []byte, pr bool) (*Live, error) {
	if entropy == nil {
		return nil, fmt.Errorf("drbg: nil entropy source: %w", pluton.ErrInvalidArgument)
	}
	h := 8.0
	if s, ok := entropy.(*HealthTestedSource); ok {
		h = s.h
	}
	l := &Live{
		entropy:    entropy,
		pr:         pr,
		entropyLen: int(math.Ceil(liveSecurityStrength / h)),
		nonceLen:   int(math.Ceil(liveSecurityStrength / 2 / h)),
	}
	if l.entropyLen+l.nonceLen > maxLiveSeedBytes {
		return nil, fmt.Errorf("drbg: claimed min-entropy of %v bits per byte would need %d bytes per seed: %w", h, l.entropyLen+l.nonceLen, pluton.ErrInvalidArgument)
	}
	// Check the personalization string before drawing entropy (9.1 step 3).
	if err := checkInput("CTR_DRBG personalization string", personalization, maxInputBytes); err != nil {
		return nil, err
	}
	if err := checkDFLen(uint64(l.entropyLen+l.nonceLen) + uint64(len(personalization))); err != nil {
		return nil, err
	}
	if err := ctrSelfTest(); err != nil {
		return nil, err
	}
	l.buf = make([]byte, l.entropyLen+l.nonceLen)
	// SP 800-90A 9.1 steps 6-8: obtain the entropy input and the nonce.
	seed := l.buf[:l.entropyLen+l.nonceLen]
	if err := l.readEntropy(seed); err != nil {
		return nil, err
	}
	// Step 9: the instantiate algorithm.
	err := l.drbg.instantiate(liveSecurityStrength, true, seed[:l.entropyLen], seed[l.entropyLen:], personalization)
	clear(seed)
	if err != nil {
		return nil, err
	}
	l.drbg.reseedInterval = LiveReseedInterval
	return l, nil
}

// readEntropy fills p from the entropy source. On failure it puts l in the
// error state for good.
func (l *Live) readEntropy(p []byte) error {
	_, err := io.ReadFull(l.entropy, p)
	if err == nil {
		return nil
	}
	clear(p)
	if !errors.Is(err, pluton.ErrEntropy) {
		err = &HealthError{Test: "source read", Err: err}
	}
	l.err = fmt.Errorf("drbg: live DRBG disabled: %w", err)
	l.drbg.Uninstantiate()
	return l.err
}

// reseed is the Reseed function of SP 800-90A 9.2: it obtains the entropy
// input from the source and runs the reseed algorithm.
func (l *Live) reseed(additional []byte) error {
	seed := l.buf[:l.entropyLen]
	if err := l.readEntropy(seed); err != nil {
		return err
	}
	err := l.drbg.Reseed(seed, additional)
	clear(seed)
	return err
}

// Read fills p with output of the DRBG. It returns len(p), nil; or 0 and an
// error if the entropy source failed (now or before), in which case p is
// zeroed.
func (l *Live) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		clear(p)
		return 0, l.err
	}
	for done := 0; done < len(p); {
		// Generate requests of at most max_number_of_bits_per_request.
		chunk := p[done:min(len(p), done+maxRequestBytes)]
		if err := l.generate(chunk); err != nil {
			clear(p)
			return 0, err
		}
		done += len(chunk)
	}
	if len(p) == 0 {
		return 0, nil
	}
	return len(p), nil
}

// generate is the Generate function of SP 800-90A 9.3.1 without additional
// input.
func (l *Live) generate(out []byte) error {
	// Step 7: with prediction resistance, reseed first; additional_input
	// (none here) goes to the reseed and is then Null.
	if l.pr {
		if err := l.reseed(nil); err != nil {
			return err
		}
	}
	for {
		// Step 8: the generate algorithm.
		err := l.drbg.generate(out, nil)
		if !errors.Is(err, ErrReseedRequired) {
			return err
		}
		// Step 9: if the generate algorithm reports that a reseed is
		// required, go to step 7: reseed (7.1), additional_input = Null
		// (7.4), then step 8 again.
		if err := l.reseed(nil); err != nil {
			return err
		}
	}
}

// Reseed reseeds the DRBG from its entropy source now, with optional
// additional input (at most 2^32 bytes), for instance after a suspected
// compromise of the state. If the entropy source fails, Live is disabled
// for good and the error wraps [pluton.ErrEntropy].
func (l *Live) Reseed(additional []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	// Check the additional input before drawing entropy (9.2).
	if err := checkInput("CTR_DRBG additional input", additional, maxInputBytes); err != nil {
		return err
	}
	if err := checkDFLen(uint64(l.entropyLen) + uint64(len(additional))); err != nil {
		return err
	}
	return l.reseed(additional)
}

// Close uninstantiates the DRBG (SP 800-90A 9.4), wiping its state. Later
// calls fail with an error wrapping [pluton.ErrClosed].
func (l *Live) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drbg.Uninstantiate()
	clear(l.buf)
	if l.err == nil {
		l.err = fmt.Errorf("drbg: live DRBG closed: %w", pluton.ErrClosed)
	}
	return nil
}
