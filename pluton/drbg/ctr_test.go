package drbg

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/rootline/rootline/pluton"
)

// refCTR is a literal transcription of CTR_DRBG (SP 800-90A 10.2.1) and
// Block_Cipher_df (10.3.2) over crypto/aes, written for clarity rather than
// speed and sharing no code with CTR. It checks request sizes and inputs
// that the ACVP vectors (always 4096-bit requests) do not.
type refCTR struct {
	keyLen, seedLen int
	useDF           bool
	key, v          []byte
}

func (r *refCTR) encrypt(key, block []byte) []byte {
	c, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	out := make([]byte, 16)
	c.Encrypt(out, block)
	return out
}

func (r *refCTR) incV() {
	n := new(big.Int).SetBytes(r.v)
	n.Add(n, big.NewInt(1))
	n.Mod(n, new(big.Int).Lsh(big.NewInt(1), 128))
	r.v = n.FillBytes(make([]byte, 16))
}

func (r *refCTR) update(provided []byte) {
	var temp []byte
	for len(temp) < r.seedLen {
		r.incV()
		temp = append(temp, r.encrypt(r.key, r.v)...)
	}
	temp = temp[:r.seedLen]
	for i := range temp {
		temp[i] ^= provided[i]
	}
	r.key, r.v = temp[:r.keyLen], temp[r.keyLen:]
}

func (r *refCTR) bcc(key, data []byte) []byte {
	chain := make([]byte, 16)
	for i := 0; i < len(data); i += 16 {
		in := make([]byte, 16)
		for j := range in {
			in[j] = chain[j] ^ data[i+j]
		}
		chain = r.encrypt(key, in)
	}
	return chain
}

func (r *refCTR) df(input []byte, nBytes int) []byte {
	s := new(big.Int).SetUint64(uint64(len(input))).FillBytes(make([]byte, 4))
	s = append(s, new(big.Int).SetUint64(uint64(nBytes)).FillBytes(make([]byte, 4))...)
	s = append(s, input...)
	s = append(s, 0x80)
	for len(s)%16 != 0 {
		s = append(s, 0)
	}
	k := make([]byte, r.keyLen)
	for i := range k {
		k[i] = byte(i)
	}
	var temp []byte
	for i := 0; len(temp) < r.keyLen+16; i++ {
		iv := make([]byte, 16)
		iv[3] = byte(i)
		temp = append(temp, r.bcc(k, append(iv, s...))...)
	}
	k, x := temp[:r.keyLen], temp[r.keyLen:r.keyLen+16]
	var out []byte
	for len(out) < nBytes {
		x = r.encrypt(k, x)
		out = append(out, x...)
	}
	return out[:nBytes]
}

func (r *refCTR) pad(in []byte) []byte {
	out := make([]byte, r.seedLen)
	copy(out, in)
	return out
}

func newRefCTR(keyBits int, useDF bool, entropy, nonce, perso []byte) *refCTR {
	r := &refCTR{keyLen: keyBits / 8, seedLen: keyBits/8 + 16, useDF: useDF}
	var seed []byte
	if useDF {
		seed = r.df(append(append(append([]byte{}, entropy...), nonce...), perso...), r.seedLen)
	} else {
		seed = r.pad(perso)
		for i := range seed {
			seed[i] ^= entropy[i]
		}
	}
	r.key, r.v = make([]byte, r.keyLen), make([]byte, 16)
	r.update(seed)
	return r
}

func (r *refCTR) reseed(entropy, additional []byte) {
	var seed []byte
	if r.useDF {
		seed = r.df(append(append([]byte{}, entropy...), additional...), r.seedLen)
	} else {
		seed = r.pad(additional)
		for i := range seed {
			seed[i] ^= entropy[i]
		}
	}
	r.update(seed)
}

func (r *refCTR) generate(n int, additional []byte) []byte {
	if len(additional) > 0 {
		if r.useDF {
			additional = r.df(additional, r.seedLen)
		} else {
			additional = r.pad(additional)
		}
		r.update(additional)
	} else {
		additional = make([]byte, r.seedLen)
	}
	var temp []byte
	for len(temp) < n {
		r.incV()
		temp = append(temp, r.encrypt(r.key, r.v)...)
	}
	r.update(additional)
	return temp[:n]
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestCTRAgainstReference runs CTR (both implementations of AES) and refCTR
// side by side over every request size from 0 to 200 bytes and some large
// ones, with and without additional input, for every key size and both
// modes.
func TestCTRAgainstReference(t *testing.T) {
	sizes := []int{}
	for n := 0; n <= 200; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 1000, 4096, 4097, maxRequestBytes-1, maxRequestBytes)
	for _, keyBits := range []int{128, 192, 256} {
		for _, useDF := range []bool{false, true} {
			t.Run(fmt.Sprintf("AES-%d/df=%v", keyBits, useDF), func(t *testing.T) {
				seedLen := keyBits/8 + 16
				entropy, nonce, perso := randBytes(seedLen), randBytes(16), randBytes(seedLen-3)
				ref := newRefCTR(keyBits, useDF, entropy, nonce, perso)
				var ds []*CTR
				for _, generic := range []bool{false, true} {
					d, err := newCTR(keyBits, useDF, generic, entropy, nonce, perso)
					if err != nil {
						t.Fatal(err)
					}
					ds = append(ds, d)
				}
				for i, n := range sizes {
					var additional []byte
					if i%3 == 1 {
						additional = randBytes(i % (seedLen + 1))
					}
					if i%50 == 49 {
						entropy, additional := randBytes(seedLen), randBytes(i%seedLen)
						ref.reseed(entropy, additional)
						for _, d := range ds {
							if err := d.Reseed(entropy, additional); err != nil {
								t.Fatal(err)
							}
						}
					}
					want := ref.generate(n, additional)
					for j, d := range ds {
						got := make([]byte, n)
						if err := d.Generate(got, additional); err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(got, want) {
							t.Fatalf("generic=%v, request %d (%d bytes, %d additional):\n got %x\nwant %x", j == 1, i, n, len(additional), got, want)
						}
					}
				}
			})
		}
	}
}

func TestCTRInvalidInputs(t *testing.T) {
	e := func(n int) []byte { return make([]byte, n) }
	for _, tt := range []struct {
		name                  string
		keyBits               int
		df                    bool
		entropy, nonce, perso []byte
	}{
		{"key size 0", 0, true, e(32), e(16), nil},
		{"key size 512", 512, true, e(64), e(32), nil},
		{"key size 168 (TDES)", 168, false, e(37), nil, nil},
		{"df: no entropy", 256, true, nil, e(16), nil},
		{"df: entropy below strength", 256, true, e(31), e(16), nil},
		{"df: AES-128 entropy below strength", 128, true, e(15), e(8), nil},
		{"df: no nonce", 256, true, e(32), nil, nil},
		{"df: nonce below half strength", 256, true, e(32), e(15), nil},
		{"no df: no entropy", 256, false, nil, nil, nil},
		{"no df: entropy short of seedlen", 256, false, e(47), nil, nil},
		{"no df: entropy over seedlen", 256, false, e(49), nil, nil},
		{"no df: AES-192 entropy 48 bytes", 192, false, e(48), nil, nil},
		{"no df: personalization over seedlen", 128, false, e(32), nil, e(33)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewCTR(tt.keyBits, tt.df, tt.entropy, tt.nonce, tt.perso)
			if !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("NewCTR = %v, %v; want an error wrapping ErrInvalidArgument", d, err)
			}
		})
	}
	// Valid edge cases.
	for _, tt := range []struct {
		name                  string
		keyBits               int
		df                    bool
		entropy, nonce, perso []byte
	}{
		{"df: minimum lengths", 256, true, e(32), e(16), nil},
		{"df: AES-192 minimum lengths", 192, true, e(24), e(12), nil},
		{"df: long personalization", 128, true, e(16), e(8), e(10000)},
		{"no df: nonce ignored", 192, false, e(40), e(3), e(40)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCTR(tt.keyBits, tt.df, tt.entropy, tt.nonce, tt.perso); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// twinCTRs returns two CTRs instantiated identically.
func twinCTRs(t *testing.T, keyBits int, df bool) (*CTR, *CTR) {
	t.Helper()
	seedLen := keyBits/8 + 16
	entropy, nonce := randBytes(seedLen), randBytes(16)
	a, err := NewCTR(keyBits, df, entropy, nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCTR(keyBits, df, entropy, nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// sameOutput checks that a and b (instantiated identically, b having seen
// only failed calls) still produce the same output.
func sameOutput(t *testing.T, a, b drbg) {
	t.Helper()
	x, y := make([]byte, 64), make([]byte, 64)
	if err := a.Generate(x, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Generate(y, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatal("a failed call changed the state")
	}
}

func TestCTRFailedCallsLeaveStateUnchanged(t *testing.T) {
	for _, df := range []bool{false, true} {
		t.Run(fmt.Sprintf("df=%v", df), func(t *testing.T) {
			a, b := twinCTRs(t, 256, df)
			out := make([]byte, maxRequestBytes+1)
			for i := range out {
				out[i] = 0xaa
			}
			if err := b.Generate(out, nil); !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Errorf("Generate(2^19+8 bits) = %v, want ErrInvalidArgument", err)
			}
			if out[0] != 0xaa {
				t.Error("a failed Generate wrote output")
			}
			if err := b.Reseed(make([]byte, 31), nil); !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Errorf("Reseed(31 bytes) = %v, want ErrInvalidArgument", err)
			}
			if !df {
				if err := b.Generate(out[:16], make([]byte, 49)); !errors.Is(err, pluton.ErrInvalidArgument) {
					t.Errorf("Generate with 49 bytes of additional input = %v, want ErrInvalidArgument", err)
				}
				if err := b.Reseed(make([]byte, 48), make([]byte, 49)); !errors.Is(err, pluton.ErrInvalidArgument) {
					t.Errorf("Reseed with 49 bytes of additional input = %v, want ErrInvalidArgument", err)
				}
				if err := b.Reseed(make([]byte, 49), nil); !errors.Is(err, pluton.ErrInvalidArgument) {
					t.Errorf("Reseed(49 bytes) = %v, want ErrInvalidArgument", err)
				}
			}
			sameOutput(t, a, b)
		})
	}
}

func TestCTRReseedRequired(t *testing.T) {
	a, b := twinCTRs(t, 128, true)
	a.reseedInterval, b.reseedInterval = 3, 3
	out := make([]byte, 16)
	for i := range 3 {
		if err := a.Generate(out, nil); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if err := b.Generate(out, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Generate(out, nil); !errors.Is(err, ErrReseedRequired) {
		t.Fatalf("request 4 = %v, want ErrReseedRequired", err)
	}
	a.reseedInterval, b.reseedInterval = 4, 4
	sameOutput(t, a, b)
	if err := b.Generate(out, nil); !errors.Is(err, ErrReseedRequired) {
		t.Fatalf("request 5 = %v, want ErrReseedRequired", err)
	}
	if err := b.Reseed(make([]byte, 16), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Generate(out, nil); err != nil {
		t.Fatalf("after reseed: %v", err)
	}
	if a.reseedCounter != 5 || b.reseedCounter != 2 {
		t.Errorf("reseed counters %d, %d; want 5, 2", a.reseedCounter, b.reseedCounter)
	}
}

func TestCTRUninstantiate(t *testing.T) {
	var zero CTR
	if err := zero.Generate(make([]byte, 16), nil); !errors.Is(err, ErrUninstantiated) {
		t.Errorf("zero CTR Generate = %v", err)
	}
	if err := zero.Reseed(make([]byte, 32), nil); !errors.Is(err, ErrUninstantiated) {
		t.Errorf("zero CTR Reseed = %v", err)
	}
	d, _ := twinCTRs(t, 256, true)
	d.Uninstantiate()
	if err := d.Generate(make([]byte, 16), nil); !errors.Is(err, ErrUninstantiated) {
		t.Errorf("Generate after Uninstantiate = %v", err)
	}
	if d.v != [blockLen]byte{} || (hasAESNI && d.key.rk != [15 * blockLen]byte{}) {
		t.Error("Uninstantiate left state behind")
	}
}

// TestCTRAllocs checks that the hot path does not allocate where the AES-NI
// implementation is used.
func TestCTRAllocs(t *testing.T) {
	if !hasAESNI {
		t.Skip("crypto/aes allocates on every rekey")
	}
	d, _ := twinCTRs(t, 256, true)
	out := make([]byte, 4096)
	additional := randBytes(100)
	for _, tt := range []struct {
		name       string
		n          int
		additional []byte
	}{{"32B", 32, nil}, {"4KiB", 4096, nil}, {"32B+additional", 32, additional}} {
		if a := testing.AllocsPerRun(100, func() { d.Generate(out[:tt.n], tt.additional) }); a != 0 {
			t.Errorf("%s: %v allocations per Generate", tt.name, a)
		}
	}
	if a := testing.AllocsPerRun(100, func() { d.Reseed(additional[:32], additional) }); a != 0 {
		t.Errorf("%v allocations per Reseed", a)
	}
}
