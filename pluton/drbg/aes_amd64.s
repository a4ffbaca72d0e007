//go:build !purego

#include "textflag.h"

// AES (FIPS 197) with the AES-NI instructions, encryption only. The round
// keys are 16-byte blocks in FIPS 197 byte order, as laid out by expandKey
// (aes.go), which is the order AESENC expects.

// func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func subWord(w uint32) uint32
//
// SubWord of FIPS 197, 5.2: the S-box applied to each byte of w. The word is
// copied into all four columns of the state, so that ShiftRows (part of
// AESENCLAST) leaves it unchanged, and AESENCLAST with an all-zero round key
// then computes SubBytes alone. Constant time.
TEXT ·subWord(SB), NOSPLIT, $0-12
	MOVL       w+0(FP), AX
	MOVQ       AX, X0
	PSHUFD     $0, X0, X0
	PXOR       X1, X1
	AESENCLAST X1, X0
	MOVQ       X0, AX
	MOVL       AX, ret+8(FP)
	RET

// Round-key expansion (FIPS 197, 5.2) for AES-128 and AES-256, four words
// at a time. For i a multiple of Nk, temp = SubWord(RotWord(w[i-1])) xor
// Rcon[i/Nk]: PSHUFB copies RotWord(w[i-1]) into all four columns (so that
// ShiftRows has no effect) and AESENCLAST with every column of the round key
// equal to Rcon computes SubBytes and the xor. Then w[i+j] = w[i+j-Nk] xor
// w[i+j-Nk-1] xor ... xor w[i-Nk] xor temp for j = 0..3, a prefix xor done
// with three shifts. AES-256 has a second kind of step (i mod 8 = 4) where
// temp = SubWord(w[i-1]), without RotWord or Rcon.

// rotWordMask makes every column of a PSHUFB result RotWord of the last
// column of the source: bytes 13, 14, 15, 12.
DATA rotWordMask<>+0(SB)/4, $0x0c0f0e0d
DATA rotWordMask<>+4(SB)/4, $0x0c0f0e0d
DATA rotWordMask<>+8(SB)/4, $0x0c0f0e0d
DATA rotWordMask<>+12(SB)/4, $0x0c0f0e0d
GLOBL rotWordMask<>(SB), RODATA|NOPTR, $16

// PREFIXXOR(x) sets x to the prefix xor of its columns, using X4.
#define PREFIXXOR(x) \
	MOVO   x, X4; \
	PSLLDQ $4, X4; \
	PXOR   X4, x; \
	PSLLDQ $4, X4; \
	PXOR   X4, x; \
	PSLLDQ $4, X4; \
	PXOR   X4, x

// ROUNDRCON(rc, prev, cur, off): i mod Nk = 0; prev holds w[i-4..i-1], cur
// holds w[i-Nk..i-Nk+3] and becomes w[i..i+3], stored at off(DI).
#define ROUNDRCON(rc, prev, cur, off) \
	MOVL       $rc, AX; \
	MOVQ       AX, X5; \
	PSHUFD     $0, X5, X5; \
	MOVO       prev, X2; \
	PSHUFB     X6, X2; \
	AESENCLAST X5, X2; \
	PREFIXXOR(cur); \
	PXOR       X2, cur; \
	MOVOU      cur, off(DI)

// ROUNDSUB(off): AES-256, i mod 8 = 4; X1 holds w[i-4..i-1], X3 holds
// w[i-8..i-5] and becomes w[i..i+3], stored at off(DI).
#define ROUNDSUB(off) \
	PSHUFD     $0xff, X1, X2; \
	AESENCLAST X7, X2; \
	PREFIXXOR(X3); \
	PXOR       X2, X3; \
	MOVOU      X3, off(DI)

// func expandKeyAsm(nk int, key *byte, rk *byte)
//
// Writes the 4·(Nk+7) words of the AES-128 (nk = 4) or AES-256 (nk = 8)
// key schedule of key to rk.
TEXT ·expandKeyAsm(SB), NOSPLIT, $0-24
	MOVQ  nk+0(FP), CX
	MOVQ  key+8(FP), SI
	MOVQ  rk+16(FP), DI
	MOVOU rotWordMask<>(SB), X6
	PXOR  X7, X7
	MOVOU (SI), X1
	MOVOU X1, (DI)
	CMPQ  CX, $8
	JEQ   aes256
	ROUNDRCON(0x01, X1, X1, 16)
	ROUNDRCON(0x02, X1, X1, 32)
	ROUNDRCON(0x04, X1, X1, 48)
	ROUNDRCON(0x08, X1, X1, 64)
	ROUNDRCON(0x10, X1, X1, 80)
	ROUNDRCON(0x20, X1, X1, 96)
	ROUNDRCON(0x40, X1, X1, 112)
	ROUNDRCON(0x80, X1, X1, 128)
	ROUNDRCON(0x1b, X1, X1, 144)
	ROUNDRCON(0x36, X1, X1, 160)
	JMP   wipe

aes256:
	MOVOU 16(SI), X3
	MOVOU X3, 16(DI)
	ROUNDRCON(0x01, X3, X1, 32)
	ROUNDSUB(48)
	ROUNDRCON(0x02, X3, X1, 64)
	ROUNDSUB(80)
	ROUNDRCON(0x04, X3, X1, 96)
	ROUNDSUB(112)
	ROUNDRCON(0x08, X3, X1, 128)
	ROUNDSUB(144)
	ROUNDRCON(0x10, X3, X1, 160)
	ROUNDSUB(176)
	ROUNDRCON(0x20, X3, X1, 192)
	ROUNDSUB(208)
	ROUNDRCON(0x40, X3, X1, 224)

wipe:
	PXOR X1, X1
	PXOR X2, X2
	PXOR X3, X3
	PXOR X4, X4
	RET

// func encryptBlocksAsm(nr int, rk *byte, dst, src *byte, n int)
//
// Encrypts n 16-byte blocks from src to dst (which may be equal to src but not
// overlap it otherwise), four at a time to fill the AES pipeline, then one at
// a time. nr is the number of rounds (10, 12 or 14); rk points to nr+1 round
// keys.
TEXT ·encryptBlocksAsm(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), CX
	MOVQ rk+8(FP), AX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ n+32(FP), DX

loop4:
	CMPQ   DX, $4
	JB     loop1
	MOVOU  (AX), X8
	MOVOU  (SI), X0
	MOVOU  16(SI), X1
	MOVOU  32(SI), X2
	MOVOU  48(SI), X3
	PXOR   X8, X0
	PXOR   X8, X1
	PXOR   X8, X2
	PXOR   X8, X3
	LEAQ   16(AX), BX
	LEAQ   -1(CX), R8

rounds4:
	MOVOU  (BX), X8
	AESENC X8, X0
	AESENC X8, X1
	AESENC X8, X2
	AESENC X8, X3
	ADDQ   $16, BX
	DECQ   R8
	JNZ    rounds4
	MOVOU      (BX), X8
	AESENCLAST X8, X0
	AESENCLAST X8, X1
	AESENCLAST X8, X2
	AESENCLAST X8, X3
	MOVOU      X0, (DI)
	MOVOU      X1, 16(DI)
	MOVOU      X2, 32(DI)
	MOVOU      X3, 48(DI)
	ADDQ       $64, SI
	ADDQ       $64, DI
	SUBQ       $4, DX
	JMP        loop4

loop1:
	TESTQ DX, DX
	JZ    done
	MOVOU (AX), X8
	MOVOU (SI), X0
	PXOR  X8, X0
	LEAQ  16(AX), BX
	LEAQ  -1(CX), R8

rounds1:
	MOVOU  (BX), X8
	AESENC X8, X0
	ADDQ   $16, BX
	DECQ   R8
	JNZ    rounds1
	MOVOU      (BX), X8
	AESENCLAST X8, X0
	MOVOU      X0, (DI)
	ADDQ       $16, SI
	ADDQ       $16, DI
	DECQ       DX
	JMP        loop1

done:
	PXOR X0, X0
	PXOR X1, X1
	PXOR X2, X2
	PXOR X3, X3
	PXOR X8, X8
	RET
