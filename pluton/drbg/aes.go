package drbg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/bits"
)

// blockLen is the AES block length in bytes (outlen of SP 800-90A 10.2.1,
// Table 3: 128 bits).
const blockLen = aes.BlockSize

// aesBlock is AES (FIPS 197) keyed for encryption only: the CTR_DRBG
// (SP 800-90A 10.2.1) and its derivation function (10.3.2) never decrypt.
//
// CTR_DRBG_Update (10.2.1.2) replaces the key after every Generate request,
// so rekeying is on the hot path. crypto/aes.NewCipher allocates a fresh
// cipher on every call (about half the cost of a small request); on amd64 with
// AES-NI the key schedule is therefore kept here, in the struct, and
// expanded in place. Elsewhere (or with forceGeneric) aesBlock wraps
// crypto/aes, whose key schedule cannot be wiped.
type aesBlock struct {
	rounds int
	// rk holds the round keys w[0], ..., w[4·rounds+3] of FIPS 197 5.2
	// (44, 52 or 60 words) in byte order, 16 bytes per round.
	rk [15 * blockLen]byte
	// generic is set when crypto/aes is used instead of rk.
	generic bool
	block   cipher.Block
}

// setKey expands key (16, 24 or 32 bytes). The caller has checked the length.
func (c *aesBlock) setKey(key []byte, forceGeneric bool) {
	if !hasAESNI || forceGeneric {
		b, err := aes.NewCipher(key)
		if err != nil {
			panic("drbg: internal error: " + err.Error())
		}
		c.generic, c.block = true, b
		return
	}
	c.generic, c.block = false, nil
	c.rounds = expandKey(&c.rk, key)
}

// expandKey is KeyExpansion of FIPS 197, 5.2, with AES-NI (aes_amd64.s). It
// returns Nr.
func expandKey(rk *[15 * blockLen]byte, key []byte) int {
	nk := len(key) / 4 // Nk: 4, 6 or 8 words
	nr := nk + 6       // Nr: 10, 12 or 14 rounds
	if nk != 6 {
		expandKeyAsm(nk, &key[0], &rk[0])
		return nr
	}
	// AES-192: the groups of Nk = 6 words do not fall on round-key
	// boundaries, so the schedule is built a word at a time here, with the
	// same SubWord. It is not on the hot path of any DRBG in this package.
	var w [4 * (6 + 7)]uint32
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1) // Rcon[i/Nk] = x^(i/Nk - 1) in GF(2^8)
	for i := nk; i < len(w); i += nk {
		w[i] = w[i-nk] ^ subWord(bits.RotateLeft32(w[i-1], 8)) ^ rcon<<24
		rcon <<= 1 // no reduction needed: AES-192 uses Rcon[1..8]
		for j := i + 1; j < min(i+nk, len(w)); j++ {
			w[j] = w[j-nk] ^ w[j-1]
		}
	}
	for i, x := range w {
		binary.BigEndian.PutUint32(rk[4*i:], x)
	}
	clear(w[:])
	return nr
}

// encryptBlocks encrypts len(src)/blockLen whole blocks of src into dst.
// dst and src must be equal or not overlap.
func (c *aesBlock) encryptBlocks(dst, src []byte) {
	n := len(src) / blockLen
	if n == 0 {
		return
	}
	_ = dst[n*blockLen-1] // bounds check before the assembly
	if c.generic {
		for i := 0; i < n*blockLen; i += blockLen {
			c.block.Encrypt(dst[i:i+blockLen], src[i:i+blockLen])
		}
		return
	}
	encryptBlocksAsm(c.rounds, &c.rk[0], &dst[0], &src[0], n)
}

// wipe clears the key schedule (the crypto/aes one is dropped, not wiped).
func (c *aesBlock) wipe() {
	clear(c.rk[:])
	c.rounds, c.block = 0, nil
}
