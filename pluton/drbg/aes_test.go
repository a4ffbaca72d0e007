package drbg

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"fmt"
	"testing"
)

// TestAESBlock checks the AES-NI key schedule and block encryption against
// crypto/aes for every key size and for 0 to 9 blocks (the 4-way and the
// single-block paths of encryptBlocksAsm), in place and not.
func TestAESBlock(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI: aesBlock always uses crypto/aes")
	}
	for _, keyLen := range []int{16, 24, 32} {
		for n := range 10 {
			t.Run(fmt.Sprintf("AES-%d/%d-blocks", keyLen*8, n), func(t *testing.T) {
				for range 20 {
					key := make([]byte, keyLen)
					src := make([]byte, n*blockLen)
					rand.Read(key)
					rand.Read(src)
					ref, err := aes.NewCipher(key)
					if err != nil {
						t.Fatal(err)
					}
					want := make([]byte, len(src))
					for i := 0; i < len(src); i += blockLen {
						ref.Encrypt(want[i:], src[i:])
					}
					var c aesBlock
					c.setKey(key, false)
					if c.generic {
						t.Fatal("setKey chose crypto/aes despite AES-NI")
					}
					got := make([]byte, len(src))
					c.encryptBlocks(got, src)
					if !bytes.Equal(got, want) {
						t.Fatalf("key %x: got %x, want %x", key, got, want)
					}
					c.encryptBlocks(src, src)
					if !bytes.Equal(src, want) {
						t.Fatalf("key %x, in place: got %x, want %x", key, src, want)
					}
				}
			})
		}
	}
}

// TestAESKeyScheduleFIPS197 checks the expanded AES-128 key of FIPS 197,
// Appendix A.1 (last round key w[40..43]).
func TestAESKeyScheduleFIPS197(t *testing.T) {
	if !hasAESNI {
		t.Skip("no AES-NI")
	}
	key := []byte{0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c}
	var rk [15 * blockLen]byte
	if nr := expandKey(&rk, key); nr != 10 {
		t.Fatalf("Nr = %d, want 10", nr)
	}
	want := []byte{0xd0, 0x14, 0xf9, 0xa8, 0xc9, 0xee, 0x25, 0x89, 0xe1, 0x3f, 0x0c, 0xc8, 0xb6, 0x63, 0x0c, 0xa6}
	if got := rk[10*blockLen : 11*blockLen]; !bytes.Equal(got, want) {
		t.Errorf("w[40..43] = %x, want %x", got, want)
	}
}
