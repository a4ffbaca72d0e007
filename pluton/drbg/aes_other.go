//go:build !amd64 || purego

package drbg

// hasAESNI is false: without the assembly in aes_amd64.s every key goes
// through crypto/aes.
const hasAESNI = false

func subWord(uint32) uint32 { panic("drbg: internal error: no AES-NI") }

func expandKeyAsm(nk int, key *byte, rk *byte) { panic("drbg: internal error: no AES-NI") }

func encryptBlocksAsm(nr int, rk *byte, dst, src *byte, n int) {
	panic("drbg: internal error: no AES-NI")
}
