package drbg

import (
	"crypto"
	"crypto/hmac"
	_ "crypto/sha1" // register the hash functions NewHMAC accepts
	_ "crypto/sha256"
	_ "crypto/sha3"
	_ "crypto/sha512"
	"fmt"
	"hash"

	"github.com/rootline/rootline/pluton"
)

// hmacStrength is the security strength of HMAC_DRBG with each hash
// function it accepts (SP 800-90A Rev. 1, 10.1, Table 2, and for SHA-3 the
// strength of the SHA-2 function of the same output length).
func hmacStrength(h crypto.Hash) int {
	switch h {
	case crypto.SHA1:
		return 128
	case crypto.SHA224, crypto.SHA512_224, crypto.SHA3_224:
		return 192
	case crypto.SHA256, crypto.SHA512_256, crypto.SHA384, crypto.SHA512,
		crypto.SHA3_256, crypto.SHA3_384, crypto.SHA3_512:
		return 256
	}
	return 0
}

// HMAC is HMAC_DRBG (SP 800-90A Rev. 1, 10.1.2) with one of SHA-1, SHA-224,
// SHA-256, SHA-384, SHA-512, SHA-512/224, SHA-512/256 (FIPS 180-4) or
// SHA3-224, SHA3-256, SHA3-384, SHA3-512 (FIPS 202).
//
// The security strength is that of 10.1, Table 2: 128 bits for SHA-1, 192
// for the 224-bit functions, 256 for the others. An HMAC is not safe for
// concurrent use. The zero value is not instantiated: every method fails with
// [ErrUninstantiated].
type HMAC struct {
	h        crypto.Hash
	strength int // security strength in bits; 0 if not instantiated

	// The working state of 10.1.2.1: V, Key and reseed_counter. mac is
	// HMAC keyed with Key.
	v, key        []byte
	mac           hash.Hash
	reseedCounter uint64

	reseedInterval uint64 // reseed_interval (Table 2)
}

// NewHMAC instantiates an HMAC_DRBG (SP 800-90A 9.1 and 10.1.2.3) with hash
// function h. entropy must be at least security_strength bits long, nonce
// at least security_strength/2 bits (8.6.7); entropy, nonce and
// personalization may each be up to 2^32 bytes.
//
// NewHMAC runs the HMAC_DRBG known-answer self-test once per process before
// the first instantiation; if it fails, NewHMAC returns an error wrapping
// [pluton.ErrSelfTest].
func NewHMAC(h crypto.Hash, entropy, nonce, personalization []byte) (*HMAC, error) {
	if err := hmacSelfTest(); err != nil {
		return nil, err
	}
	return newHMAC(h, entropy, nonce, personalization)
}

func newHMAC(h crypto.Hash, entropy, nonce, personalization []byte) (*HMAC, error) {
	// 9.1 step 1: the security strength is fixed by the hash function.
	strength := hmacStrength(h)
	if strength == 0 || !h.Available() {
		return nil, fmt.Errorf("drbg: HMAC_DRBG with hash %v is not supported: %w", h, pluton.ErrInvalidArgument)
	}
	// 9.1 step 3 (personalization string), step 6 (entropy input of
	// security_strength to max_length bits) and step 8 with 8.6.7 (nonce).
	if err := checkEntropy("HMAC_DRBG", entropy, strength/8, maxInputBytes); err != nil {
		return nil, err
	}
	if len(nonce) < strength/16 || uint64(len(nonce)) > maxInputBytes {
		return nil, fmt.Errorf("drbg: HMAC_DRBG nonce is %d bytes, want at least %d (SP 800-90A 8.6.7): %w", len(nonce), strength/16, pluton.ErrInvalidArgument)
	}
	if err := checkInput("HMAC_DRBG personalization string", personalization, maxInputBytes); err != nil {
		return nil, err
	}

	outLen := h.Size()
	d := &HMAC{
		h:              h,
		strength:       strength,
		reseedInterval: maxReseedInterval,
		// 10.1.2.3 steps 2-3: Key = 0x00 00...00, V = 0x01 01...01.
		key: make([]byte, outLen),
		v:   make([]byte, outLen),
	}
	for i := range d.v {
		d.v[i] = 0x01
	}
	d.mac = hmac.New(h.New, d.key)
	// Steps 1 and 4: seed_material = entropy_input ‖ nonce ‖
	// personalization_string; (Key, V) = HMAC_DRBG_Update(seed_material,
	// Key, V).
	d.update(entropy, nonce, personalization)
	// Step 5: reseed_counter = 1.
	d.reseedCounter = 1
	return d, nil
}

// update is HMAC_DRBG_Update (10.1.2.2) with provided_data = a ‖ b ‖ c.
func (d *HMAC) update(a, b, c []byte) {
	for _, sep := range []byte{0x00, 0x01} {
		// Steps 1 and 4: K = HMAC(K, V ‖ sep ‖ provided_data).
		d.mac.Reset()
		d.mac.Write(d.v)
		d.mac.Write([]byte{sep})
		d.mac.Write(a)
		d.mac.Write(b)
		d.mac.Write(c)
		d.key = d.mac.Sum(d.key[:0])
		d.mac = hmac.New(d.h.New, d.key)
		// Steps 2 and 5: V = HMAC(K, V).
		d.mac.Write(d.v)
		d.v = d.mac.Sum(d.v[:0])
		// Step 3: if provided_data = Null, return.
		if len(a)+len(b)+len(c) == 0 {
			return
		}
	}
}

// Reseed reseeds the DRBG (SP 800-90A 9.2, 10.1.2.4) with fresh entropy
// input (at least security_strength bits) and optional additional input. On
// error the state is unchanged.
func (d *HMAC) Reseed(entropy, additional []byte) error {
	if d.strength == 0 {
		return ErrUninstantiated
	}
	// 9.2: entropy input and additional input lengths.
	if err := checkEntropy("HMAC_DRBG", entropy, d.strength/8, maxInputBytes); err != nil {
		return err
	}
	if err := checkInput("HMAC_DRBG additional input", additional, maxInputBytes); err != nil {
		return err
	}
	// 10.1.2.4 steps 1-2: seed_material = entropy_input ‖ additional_input;
	// (Key, V) = HMAC_DRBG_Update(seed_material, Key, V).
	d.update(entropy, additional, nil)
	// Step 3: reseed_counter = 1.
	d.reseedCounter = 1
	return nil
}

// Generate fills out with pseudorandom bits (SP 800-90A 9.3.1, 10.1.2.5),
// using optional additional input. out may be at most 2^19 bits (64 KiB)
// long: larger requests fail, they are not split. Once reseed_interval
// requests have been served Generate returns [ErrReseedRequired]. On error
// out and the state are unchanged.
//
// For prediction resistance (9.3.1 step 7) call Reseed with fresh entropy and
// the additional input, then Generate with none.
func (d *HMAC) Generate(out, additional []byte) error {
	if d.strength == 0 {
		return ErrUninstantiated
	}
	// 9.3.1 steps 2 and 4.
	if len(out) > maxRequestBytes {
		return fmt.Errorf("drbg: request of %d bytes exceeds the SP 800-90A maximum of %d: %w", len(out), maxRequestBytes, pluton.ErrInvalidArgument)
	}
	if err := checkInput("HMAC_DRBG additional input", additional, maxInputBytes); err != nil {
		return err
	}
	// 10.1.2.5 step 1: if reseed_counter > reseed_interval, a reseed is
	// required.
	if d.reseedCounter > d.reseedInterval {
		return ErrReseedRequired
	}
	// Step 2: if additional_input ≠ Null, (Key, V) =
	// HMAC_DRBG_Update(additional_input, Key, V).
	if len(additional) > 0 {
		d.update(additional, nil, nil)
	}
	// Steps 3-5: V = HMAC(Key, V), temp = temp ‖ V, until
	// requested_number_of_bits; returned_bits = leftmost(temp, ...).
	for i := 0; i < len(out); i += len(d.v) {
		d.mac.Reset()
		d.mac.Write(d.v)
		d.v = d.mac.Sum(d.v[:0])
		copy(out[i:], d.v)
	}
	// Step 6: (Key, V) = HMAC_DRBG_Update(additional_input, Key, V).
	d.update(additional, nil, nil)
	// Step 7: reseed_counter = reseed_counter + 1.
	d.reseedCounter++
	return nil
}

// Uninstantiate wipes Key and V (SP 800-90A 9.4). Every later call fails with
// [ErrUninstantiated]. The HMAC keyed with Key lives in crypto/hmac and is
// dropped rather than wiped.
func (d *HMAC) Uninstantiate() {
	clear(d.key)
	clear(d.v)
	d.mac = nil
	d.strength, d.reseedCounter = 0, 0
}
