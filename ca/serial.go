package ca

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"math/big"
)

// SerialSize is the length in bytes of the random serial numbers this
// package draws.
const SerialSize = 16

// NewSerial draws a certificate serial number: SerialSize bytes from rand,
// which must be a CSPRNG (crypto/rand.Reader), with the top bit cleared so
// that the DER INTEGER is positive in at most 16 octets, and drawn again in
// the (2^-127) case of zero. RFC 5280, §4.1.2.2: "a positive integer",
// unique for each certificate the CA issues, at most 20 octets; 127
// random bits make a collision negligible (and exceed the 64 bits of the
// CA/Browser Forum Baseline Requirements, §7.1).
func NewSerial(rand io.Reader) (*big.Int, error) {
	var b [SerialSize]byte
	for {
		if _, err := io.ReadFull(rand, b[:]); err != nil {
			return nil, fmt.Errorf("ca: drawing a serial number: %w", err)
		}
		b[0] &= 0x7f
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// CheckSerial accepts a positive serial number of at most 20 octets (RFC
// 5280, §4.1.2.2). Errors wrap [ErrBadSerial].
func CheckSerial(s *big.Int) error {
	switch {
	case s == nil || s.Sign() <= 0:
		return fmt.Errorf("%w: not positive", ErrBadSerial)
	case s.BitLen() > 159: // 20 octets of a positive DER INTEGER
		return fmt.Errorf("%w: longer than 20 octets", ErrBadSerial)
	}
	return nil
}

// contextSigner is implemented by signers whose signing a context bounds
// (hsm.ContextSigner).
type contextSigner interface {
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// boundSigner binds a context to a crypto.Signer for one call of
// crypto/x509, which knows no contexts.
type boundSigner struct {
	ctx context.Context
	crypto.Signer
}

func bind(ctx context.Context, s crypto.Signer) crypto.Signer {
	if _, ok := s.(contextSigner); ok {
		return boundSigner{ctx, s}
	}
	return s
}

func (b boundSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return b.Signer.(contextSigner).SignContext(b.ctx, digest, opts)
}
