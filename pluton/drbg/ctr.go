package drbg

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/rootline/rootline/pluton"
)

// Limits of SP 800-90A Rev. 1, 10.2.1, Table 3 (CTR_DRBG) and 10.1, Table 2
// (HMAC_DRBG), which agree on them.
const (
	// maxRequestBytes is max_number_of_bits_per_request, 2^19 bits.
	maxRequestBytes = 1 << 19 / 8
	// maxReseedInterval is the largest reseed_interval, 2^48 requests.
	maxReseedInterval = 1 << 48
	// maxInputBytes is max_length (of the entropy input),
	// max_personalization_string_length and max_additional_input_length,
	// 2^35 bits. For CTR_DRBG it applies only with the derivation function;
	// without it the limit is seedlen.
	maxInputBytes = 1 << 35 / 8
	// maxSeedLen is the largest seedlen, that of AES-256: 384 bits.
	maxSeedLen = 32 + blockLen
)

// CTR is CTR_DRBG (SP 800-90A Rev. 1, 10.2.1) with AES-128, AES-192 or
// AES-256 as the block cipher, with or without the derivation function
// Block_Cipher_df (10.3.2), and a counter field as long as the block
// (ctr_len = blocklen = 128).
//
// The security strength is the key length. A CTR is not safe for concurrent
// use; [Live] wraps one for that. The zero value is not instantiated: every
// method fails with [ErrUninstantiated].
type CTR struct {
	keyLen int // keylen/8: 16, 24 or 32; 0 if not instantiated
	useDF  bool
	// generic selects crypto/aes even where AES-NI is available; only tests
	// set it, to check both implementations against the same vectors.
	generic bool

	// The working state of 10.2.1.1: V, Key and reseed_counter.
	v             [blockLen]byte
	key           aesBlock
	reseedCounter uint64

	// reseedInterval is reseed_interval (10.2.1, Table 3); Live lowers it.
	reseedInterval uint64

	// scratch holds the counter blocks of a small request together with those
	// of CTR_DRBG_Update, so that both are encrypted in one call; dfKey and
	// bcc are the working state of Block_Cipher_df. They live here rather
	// than on the stack because the crypto/aes fallback makes them escape,
	// and are cleared after use.
	scratch [8 * blockLen]byte
	dfKey   aesBlock
	bcc     bccState
}

// NewCTR instantiates a CTR_DRBG (SP 800-90A 9.1 and 10.2.1.3) with AES of
// keyBits bits (128, 192 or 256, which is also the security strength).
//
// With the derivation function (useDF), entropy must hold at least keyBits
// bits of entropy and be at least keyBits/8 bytes long, and nonce at least
// keyBits/16 bytes (8.6.7); the personalization string may be up to 2^32
// bytes.
//
// Without the derivation function, entropy must be exactly seedlen bits
// (keyBits+128) of full entropy, the personalization string at most seedlen
// bits, and the nonce is not used: CTR_DRBG_Instantiate_algorithm of
// 10.2.1.3.1 has no nonce input, so any nonce given is ignored.
//
// NewCTR runs the CTR_DRBG known-answer self-test once per process before
// the first instantiation; if it fails, NewCTR returns an error wrapping
// [pluton.ErrSelfTest].
func NewCTR(keyBits int, useDF bool, entropy, nonce, personalization []byte) (*CTR, error) {
	if err := ctrSelfTest(); err != nil {
		return nil, err
	}
	return newCTR(keyBits, useDF, false, entropy, nonce, personalization)
}

func newCTR(keyBits int, useDF, generic bool, entropy, nonce, personalization []byte) (*CTR, error) {
	d := &CTR{generic: generic}
	if err := d.instantiate(keyBits, useDF, entropy, nonce, personalization); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *CTR) seedLen() int { return d.keyLen + blockLen }

// instantiate is the Instantiate function of 9.1 for CTR_DRBG: the checks of
// steps 1 and 3, the lengths asked of the entropy input in step 6 and of the
// nonce in step 8 (prediction resistance is the caller's business), then
// CTR_DRBG_Instantiate_algorithm (10.2.1.3.1 or 10.2.1.3.2) as step 9.
func (d *CTR) instantiate(keyBits int, useDF bool, entropy, nonce, personalization []byte) error {
	// Step 1: the requested security strength is the key length (Table 3).
	switch keyBits {
	case 128, 192, 256:
	default:
		return fmt.Errorf("drbg: CTR_DRBG key size %d bits (want 128, 192 or 256): %w", keyBits, pluton.ErrInvalidArgument)
	}
	keyLen := keyBits / 8
	seedLen := keyLen + blockLen
	if useDF {
		// Step 3 and Table 3: personalization at most
		// max_personalization_string_length; 8.6.7: a nonce of at least
		// security_strength/2 bits; entropy input between security_strength
		// and max_length bits.
		if err := checkEntropy("CTR_DRBG", entropy, keyLen, maxInputBytes); err != nil {
			return err
		}
		if len(nonce) < keyLen/2 || uint64(len(nonce)) > maxInputBytes {
			return fmt.Errorf("drbg: CTR_DRBG nonce is %d bytes, want at least %d (SP 800-90A 8.6.7): %w", len(nonce), keyLen/2, pluton.ErrInvalidArgument)
		}
		if err := checkInput("CTR_DRBG personalization string", personalization, maxInputBytes); err != nil {
			return err
		}
		if err := checkDFInput(entropy, nonce, personalization); err != nil {
			return err
		}
	} else {
		// Table 3, no derivation function: the entropy input is exactly
		// seedlen bits of full entropy and the personalization string at
		// most seedlen bits.
		if len(entropy) != seedLen {
			return fmt.Errorf("drbg: CTR_DRBG without derivation function needs exactly %d bytes of entropy input, got %d: %w", seedLen, len(entropy), pluton.ErrInvalidArgument)
		}
		if err := checkInput("CTR_DRBG personalization string", personalization, uint64(seedLen)); err != nil {
			return err
		}
	}

	d.keyLen, d.useDF = keyLen, useDF
	d.reseedInterval = maxReseedInterval
	var seed [maxSeedLen]byte
	seedMaterial := seed[:seedLen]
	if useDF {
		// 10.2.1.3.2 steps 1-2: seed_material = Block_Cipher_df(
		// entropy_input || nonce || personalization_string, seedlen).
		d.df(seedMaterial, entropy, nonce, personalization)
	} else {
		// 10.2.1.3.1 steps 1-2: personalization_string padded with zeros to
		// seedlen, seed_material = entropy_input ⊕ personalization_string.
		copy(seedMaterial, personalization)
		subtle.XORBytes(seedMaterial, seedMaterial, entropy)
	}
	// Steps 3-4 (both): Key = 0^keylen, V = 0^blocklen.
	var zeroKey [32]byte
	d.key.setKey(zeroKey[:keyLen], d.generic)
	clear(d.v[:])
	// Step 5: (Key, V) = CTR_DRBG_Update(seed_material, Key, V).
	d.update(seedMaterial)
	clear(seed[:])
	// Step 6: reseed_counter = 1.
	d.reseedCounter = 1
	return nil
}

// Reseed reseeds the DRBG (SP 800-90A 9.2, 10.2.1.4) with fresh entropy
// input and optional additional input. The length rules for entropy are
// those of [NewCTR]; additional input may be up to 2^32 bytes with the
// derivation function and up to seedlen bits without. On error the state is
// unchanged.
func (d *CTR) Reseed(entropy, additional []byte) error {
	if d.keyLen == 0 {
		return ErrUninstantiated
	}
	seedLen := d.seedLen()
	var seed [maxSeedLen]byte
	seedMaterial := seed[:seedLen]
	if d.useDF {
		// 9.2 and Table 3: entropy input between security_strength and
		// max_length bits, additional input at most
		// max_additional_input_length.
		if err := checkEntropy("CTR_DRBG", entropy, d.keyLen, maxInputBytes); err != nil {
			return err
		}
		if err := checkInput("CTR_DRBG additional input", additional, maxInputBytes); err != nil {
			return err
		}
		if err := checkDFInput(entropy, additional, nil); err != nil {
			return err
		}
		// 10.2.1.4.2 steps 1-2: seed_material = Block_Cipher_df(
		// entropy_input || additional_input, seedlen).
		d.df(seedMaterial, entropy, additional, nil)
	} else {
		if len(entropy) != seedLen {
			return fmt.Errorf("drbg: CTR_DRBG without derivation function needs exactly %d bytes of entropy input, got %d: %w", seedLen, len(entropy), pluton.ErrInvalidArgument)
		}
		if err := checkInput("CTR_DRBG additional input", additional, uint64(seedLen)); err != nil {
			return err
		}
		// 10.2.1.4.1 steps 1-2: additional_input padded to seedlen,
		// seed_material = entropy_input ⊕ additional_input.
		copy(seedMaterial, additional)
		subtle.XORBytes(seedMaterial, seedMaterial, entropy)
	}
	// Step 3: (Key, V) = CTR_DRBG_Update(seed_material, Key, V).
	d.update(seedMaterial)
	clear(seed[:])
	// Step 4: reseed_counter = 1.
	d.reseedCounter = 1
	return nil
}

// Generate fills out with pseudorandom bits (SP 800-90A 9.3.1, 10.2.1.5),
// using optional additional input (up to 2^32 bytes with the derivation
// function, seedlen bits without). out may be at most 2^19 bits (64 KiB) long:
// larger requests fail, they are not split. Once reseed_interval requests
// have been served Generate returns [ErrReseedRequired]. On error out and
// the state are unchanged.
//
// Generate does not reseed by itself; for prediction resistance (9.3.1 step
// 7) call Reseed with fresh entropy and the additional input, then Generate
// with none.
func (d *CTR) Generate(out, additional []byte) error {
	if d.keyLen == 0 {
		return ErrUninstantiated
	}
	// 9.3.1 step 2: requested_number_of_bits ≤ max_number_of_bits_per_request.
	if len(out) > maxRequestBytes {
		return fmt.Errorf("drbg: request of %d bytes exceeds the SP 800-90A maximum of %d: %w", len(out), maxRequestBytes, pluton.ErrInvalidArgument)
	}
	// 9.3.1 step 4: additional input at most max_additional_input_length.
	maxAdditional := uint64(maxInputBytes)
	if !d.useDF {
		maxAdditional = uint64(d.seedLen())
	}
	if err := checkInput("CTR_DRBG additional input", additional, maxAdditional); err != nil {
		return err
	}
	if d.useDF {
		if err := checkDFInput(additional, nil, nil); err != nil {
			return err
		}
	}
	return d.generate(out, additional)
}

// generate is CTR_DRBG_Generate_algorithm, 10.2.1.5.1 (no derivation
// function) or 10.2.1.5.2 (with it); the two differ only in step 2.1.
func (d *CTR) generate(out, additional []byte) error {
	// Step 1: if reseed_counter > reseed_interval, a reseed is required.
	if d.reseedCounter > d.reseedInterval {
		return ErrReseedRequired
	}
	var add [maxSeedLen]byte
	addInput := add[:d.seedLen()]
	// Step 2: if additional_input ≠ Null, process it and update the state;
	// otherwise additional_input = 0^seedlen for step 6.
	if len(additional) > 0 {
		if d.useDF {
			// 10.2.1.5.2 step 2.1: additional_input =
			// Block_Cipher_df(additional_input, seedlen).
			d.df(addInput, additional, nil, nil)
		} else {
			// 10.2.1.5.1 step 2.1: pad additional_input to seedlen bits.
			copy(addInput, additional)
		}
		// Step 2.2: (Key, V) = CTR_DRBG_Update(additional_input, Key, V).
		d.update(addInput)
	}
	// Steps 3-6: the output blocks Block_Encrypt(Key, V+1),
	// Block_Encrypt(Key, V+2), ..., then CTR_DRBG_Update(additional_input,
	// Key, V), whose blocks continue the same counter sequence under the
	// same Key.
	d.generateAndUpdate(out, addInput)
	clear(add[:])
	// Step 7: reseed_counter = reseed_counter + 1.
	d.reseedCounter++
	return nil
}

// generateAndUpdate is steps 3-6 of 10.2.1.5.1: it fills out with the
// encrypted counter blocks and then runs CTR_DRBG_Update(provided, Key, V).
func (d *CTR) generateAndUpdate(out, provided []byte) {
	full := len(out) / blockLen * blockLen
	updateBlocks := (d.seedLen() + blockLen - 1) / blockLen // 2 or 3
	hi := binary.BigEndian.Uint64(d.v[:8])
	lo := binary.BigEndian.Uint64(d.v[8:])
	// Step 4 (with ctr_len = blocklen, 4.1 is V = (V+1) mod 2^blocklen):
	// the counter blocks are written into out and encrypted in place.
	if full > 4*blockLen {
		hi, lo = fillCounters(out[:full], hi, lo)
		d.key.encryptBlocks(out[:full], out[:full])
	} else {
		// Small requests (under 80 bytes, the common case) go through
		// scratch together with the update's blocks, in one call.
		full = 0
	}
	// The remaining output (at most 5 blocks) and the update's 2 or 3
	// blocks. With AES-NI they are rounded up to a multiple of 4 blocks,
	// which costs no more with the 4-way assembly; the extra blocks are not
	// used.
	rest := (len(out) - full + blockLen - 1) / blockLen
	n := rest + updateBlocks
	if !d.key.generic {
		n = (n + 3) &^ 3
	}
	s := d.scratch[:n*blockLen]
	fillCounters(s, hi, lo)
	d.key.encryptBlocks(s, s)
	copy(out[full:], s)
	// CTR_DRBG_Update (10.2.1.2) steps 1-3: temp is the next seedlen bits
	// of the keystream (after the whole blocks of output); step 4: temp =
	// temp ⊕ provided_data; steps 5-6: Key = leftmost(temp, keylen),
	// V = rightmost(temp, blocklen).
	temp := s[rest*blockLen : rest*blockLen+d.seedLen()]
	subtle.XORBytes(temp, temp, provided)
	d.key.setKey(temp[:d.keyLen], d.generic)
	copy(d.v[:], temp[d.keyLen:])
	clear(s)
}

// update is CTR_DRBG_Update (10.2.1.2) with provided_data of seedlen bits.
func (d *CTR) update(provided []byte) {
	d.generateAndUpdate(nil, provided)
}

// fillCounters writes V+1, V+2, ... (V = hi‖lo, mod 2^128, big-endian)
// into the blocks of b and returns the last value written.
func fillCounters(b []byte, hi, lo uint64) (uint64, uint64) {
	for i := 0; i+blockLen <= len(b); i += blockLen {
		lo++
		if lo == 0 {
			hi++
		}
		binary.BigEndian.PutUint64(b[i:], hi)
		binary.BigEndian.PutUint64(b[i+8:], lo)
	}
	return hi, lo
}

// df is Block_Cipher_df (10.3.2) of the concatenation a ‖ b ‖ c, writing
// no_of_bits_to_return = 8·len(out) bits (seedlen) to out. The caller has
// checked that the total length fits the 32-bit L of step 2.
func (d *CTR) df(out, a, b, c []byte) {
	keyLen := d.keyLen
	// Step 8: K = leftmost(0x00010203...1D1E1F, keylen).
	var k [32]byte
	for i := range k {
		k[i] = byte(i)
	}
	cipher := &d.dfKey
	cipher.setKey(k[:keyLen], d.generic)

	// Steps 6-9: temp = BCC(K, IV_0 ‖ S) ‖ BCC(K, IV_1 ‖ S) ‖ ... until
	// keylen + outlen bits, with IV_i = i (32 bits) ‖ 0^(outlen-32). The two
	// or three BCC chains (10.3.3) are run side by side, block by block.
	chains := (keyLen + blockLen + blockLen - 1) / blockLen
	bcc := &d.bcc
	bcc.c, bcc.fill = cipher, 0
	clear(bcc.chains[:])
	for i := range chains {
		// BCC steps 1 and 4 for the first block: chaining_value = 0^outlen,
		// input_block = chaining_value ⊕ IV_i.
		binary.BigEndian.PutUint32(bcc.chains[i*blockLen:], uint32(i))
	}
	cipher.encryptBlocks(bcc.chains[:], bcc.chains[:])
	// Steps 2-5: S = L ‖ N ‖ input_string ‖ 0x80, padded with zeros to a
	// multiple of outlen, where L and N are the input and output lengths in
	// bytes as 32-bit integers.
	var ln [8]byte
	binary.BigEndian.PutUint32(ln[:4], uint32(len(a)+len(b)+len(c)))
	binary.BigEndian.PutUint32(ln[4:], uint32(len(out)))
	bcc.write(ln[:])
	bcc.write(a)
	bcc.write(b)
	bcc.write(c)
	var pad [blockLen]byte
	pad[0] = 0x80
	bcc.write(pad[:1])
	if bcc.fill > 0 {
		bcc.write(pad[1 : 1+blockLen-bcc.fill])
	}
	// BCC step 5: the output blocks are the chaining values.
	temp := bcc.chains[:keyLen+blockLen]

	// Steps 10-11: K = leftmost(temp, keylen), X = the next outlen bits.
	cipher.setKey(temp[:keyLen], d.generic)
	x := temp[keyLen : keyLen+blockLen]
	// Steps 12-14: temp = E(K, X) ‖ E(K, E(K, X)) ‖ ..., leftmost
	// number_of_bits_to_return bits.
	for i := 0; i < len(out); i += blockLen {
		cipher.encryptBlocks(x, x)
		copy(out[i:], x)
	}
	cipher.wipe()
	clear(bcc.chains[:])
	clear(bcc.buf[:])
	bcc.c = nil
}

// bccState runs up to four BCC chains (10.3.3) over the same data.
type bccState struct {
	c      *aesBlock
	chains [4 * blockLen]byte // chaining values; unused chains are ignored
	buf    [blockLen]byte
	fill   int
}

func (s *bccState) write(p []byte) {
	for len(p) > 0 {
		n := copy(s.buf[s.fill:], p)
		s.fill += n
		p = p[n:]
		if s.fill == blockLen {
			// BCC step 4: input_block = chaining_value ⊕ block_i,
			// chaining_value = Block_Encrypt(Key, input_block).
			for i := 0; i < len(s.chains); i += blockLen {
				subtle.XORBytes(s.chains[i:i+blockLen], s.chains[i:i+blockLen], s.buf[:])
			}
			s.c.encryptBlocks(s.chains[:], s.chains[:])
			s.fill = 0
		}
	}
}

// Uninstantiate wipes the DRBG's internal state (SP 800-90A 9.4). Every
// later call fails with [ErrUninstantiated]. Where AES-NI is not available
// the key schedule lives in crypto/aes and is dropped rather than wiped.
func (d *CTR) Uninstantiate() {
	d.key.wipe()
	clear(d.v[:])
	clear(d.scratch[:])
	d.keyLen, d.reseedCounter = 0, 0
}

// checkEntropy checks an entropy input against the min_length
// (security_strength, minBytes) and max_length that the Instantiate and
// Reseed functions (9.1 step 6, 9.2) ask of Get_entropy_input.
func checkEntropy(mech string, entropy []byte, minBytes int, maxBytes uint64) error {
	if len(entropy) < minBytes || uint64(len(entropy)) > maxBytes {
		return fmt.Errorf("drbg: %s entropy input is %d bytes, want at least %d (the security strength): %w", mech, len(entropy), minBytes, pluton.ErrInvalidArgument)
	}
	return nil
}

func checkInput(what string, in []byte, maxBytes uint64) error {
	if uint64(len(in)) > maxBytes {
		return fmt.Errorf("drbg: %s is %d bytes, longer than the maximum of %d: %w", what, len(in), maxBytes, pluton.ErrInvalidArgument)
	}
	return nil
}

// checkDFInput checks that the input string of Block_Cipher_df fits its
// 32-bit length field L (10.3.2 step 2).
func checkDFInput(a, b, c []byte) error {
	return checkDFLen(uint64(len(a)) + uint64(len(b)) + uint64(len(c)))
}

func checkDFLen(n uint64) error {
	if n > math.MaxUint32 {
		return fmt.Errorf("drbg: CTR_DRBG derivation function input longer than 2^32-1 bytes: %w", pluton.ErrInvalidArgument)
	}
	return nil
}
