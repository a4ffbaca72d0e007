// Package keywrap implements the AES Key Wrap with Padding algorithm of
// RFC 5649 (NIST SP 800-38F, KWP), over the AES Key Wrap of RFC 3394
// (SP 800-38F, KW). It is what PKCS#11 calls CKM_AES_KEY_WRAP_PAD, so a key
// an HSM wraps with that mechanism unwraps here, and the reverse.
//
// Unwrap checks the integrity of the whole input before returning anything;
// every failure is [ErrUnwrap], which says nothing about where the check
// failed.
package keywrap

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrUnwrap: the wrapped key does not unwrap under this KEK (wrong KEK,
// altered ciphertext, bad length or padding).
var ErrUnwrap = errors.New("keywrap: wrapped key fails its integrity check")

// MaxPlaintext bounds what Wrap takes and Unwrap gives, far above any key
// (RFC 5649 allows up to 2^32 bytes).
const MaxPlaintext = 1 << 16

// aivHigh is the constant high half of the Alternative Initial Value,
// RFC 5649, section 3: A65959A6 followed by the 32-bit MLI.
const aivHigh = 0xA65959A6

var aivPrefix = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// Wrap wraps plaintext (1 to MaxPlaintext bytes) under kek (16, 24 or 32
// bytes), RFC 5649, section 4.1. The output is 8 bytes longer than the
// plaintext padded to a multiple of 8.
func Wrap(kek, plaintext []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	mli := len(plaintext)
	if mli == 0 || mli > MaxPlaintext {
		return nil, fmt.Errorf("keywrap: plaintext of %d bytes (want 1 to %d)", mli, MaxPlaintext)
	}
	// Section 4.1, step 1: append zero octets to a multiple of 8 (the
	// padding length is 0 to 7), and prefix the AIV.
	padded := (mli + 7) / 8 * 8
	out := make([]byte, 8+padded)
	binary.BigEndian.PutUint32(out[0:4], aivHigh)
	binary.BigEndian.PutUint32(out[4:8], uint32(mli))
	copy(out[8:], plaintext)
	// Step 2: one 64-bit block is encrypted once with AES in ECB mode,
	// AIV || P[1]; more go through the W of RFC 3394, section 2.2.1.
	if padded == 8 {
		b.Encrypt(out, out)
		return out, nil
	}
	wrapInPlace(b, out)
	return out, nil
}

// Unwrap unwraps ciphertext under kek, RFC 5649, section 4.2, and checks
// the AIV, the message length indicator and the zero padding (section
// 3). Any failure is [ErrUnwrap]; the output is then nil and every
// intermediate wiped.
func Unwrap(kek, ciphertext []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	n := len(ciphertext)
	if n < 16 || n%8 != 0 || n > MaxPlaintext+16 {
		return nil, ErrUnwrap
	}
	buf := make([]byte, n)
	copy(buf, ciphertext)
	// Section 4.2, step 1: two blocks are one AES block; more go through
	// W^-1 of RFC 3394, section 2.2.2.
	if n == 16 {
		b.Decrypt(buf, buf)
	} else {
		unwrapInPlace(b, buf)
	}
	// Step 3 (AIV verification): the high half is A65959A6; the MLI is in
	// (8*(n-1), 8*n] where n is the number of 64-bit plaintext blocks; the
	// padding octets are zero. Checked without early exit.
	padded := n - 8
	mli := int(binary.BigEndian.Uint32(buf[4:8]))
	ok := subtle.ConstantTimeCompare(buf[0:4], aivPrefix[:])
	ok &= subtle.ConstantTimeLessOrEq(padded-7, mli) & subtle.ConstantTimeLessOrEq(mli, padded)
	// The padding runs from 8+mli to the end; mli may be out of range
	// here, so bound it before indexing.
	start := min(max(mli, 0), padded)
	var pad byte
	for _, v := range buf[8+start:] {
		pad |= v
	}
	ok &= subtle.ConstantTimeByteEq(pad, 0)
	if ok != 1 {
		clear(buf)
		return nil, ErrUnwrap
	}
	out := make([]byte, mli)
	copy(out, buf[8:8+mli])
	clear(buf)
	return out, nil
}

// wrapInPlace is W of RFC 3394, section 2.2.1 (index-based form), on
// buf = A || R[1] || ... || R[n], n >= 2.
func wrapInPlace(b interface{ Encrypt(dst, src []byte) }, buf []byte) {
	n := len(buf)/8 - 1
	var blk [16]byte
	copy(blk[:8], buf[:8])
	for j := range 6 {
		for i := 1; i <= n; i++ {
			// B = AES(K, A | R[i]); A = MSB(64, B) ^ t where t = (n*j)+i;
			// R[i] = LSB(64, B).
			copy(blk[8:], buf[8*i:8*i+8])
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(blk[:8])^t)
			copy(buf[8*i:8*i+8], blk[8:])
		}
	}
	copy(buf[:8], blk[:8])
	clear(blk[:])
}

// unwrapInPlace is W^-1 of RFC 3394, section 2.2.2 (index-based form).
func unwrapInPlace(b interface{ Decrypt(dst, src []byte) }, buf []byte) {
	n := len(buf)/8 - 1
	var blk [16]byte
	copy(blk[:8], buf[:8])
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			// B = AES-1(K, (A ^ t) | R[i]) where t = n*j+i; A = MSB(64, B);
			// R[i] = LSB(64, B).
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(blk[:8])^t)
			copy(blk[8:], buf[8*i:8*i+8])
			b.Decrypt(blk[:], blk[:])
			copy(buf[8*i:8*i+8], blk[8:])
		}
	}
	copy(buf[:8], blk[:8])
	clear(blk[:])
}
