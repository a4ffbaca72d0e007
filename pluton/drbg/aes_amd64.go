//go:build !purego

package drbg

// hasAESNI reports whether the CPU has the AES-NI instructions and SSSE3
// (CPUID.01H:ECX.AES[bit 25] and ECX.SSSE3[bit 9]), which the assembly needs.
// It is computed once at start-up and never changes.
var hasAESNI = func() bool {
	_, _, ecx, _ := cpuid(1, 0)
	return ecx&(1<<25) != 0 && ecx&(1<<9) != 0
}()

//go:noescape
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

func subWord(w uint32) uint32

//go:noescape
func expandKeyAsm(nk int, key *byte, rk *byte)

//go:noescape
func encryptBlocksAsm(nr int, rk *byte, dst, src *byte, n int)
