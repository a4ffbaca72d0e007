// Package drbg implements the deterministic random bit generators of NIST
// SP 800-90A Rev. 1 and the health tests of an SP 800-90B entropy source,
// and puts them together as [Live], the random number generator of
// rootline's security subsystem.
//
// # Which one to use
//
// Code that needs random bytes from the security subsystem uses [Live]: an
// [io.Reader], safe for concurrent use, that never returns output once its
// entropy source has failed.
//
//	src, err := drbg.NewHealthTestedSource(noise, 1.5) // claimed bits of min-entropy per byte
//	...
//	rng, err := drbg.NewLive(src, []byte("device serial"))
//	...
//	if _, err := rng.Read(key); err != nil { // errors.Is(err, pluton.ErrEntropy)
//		...
//	}
//
// [CTR] and [HMAC] are the bare mechanisms, for known-answer tests and for
// callers that manage seeding themselves: the caller supplies every entropy
// input, reseeds when Generate returns [ErrReseedRequired], and obtains
// prediction resistance by calling Reseed before each Generate.
//
// # The mechanisms
//
//   - [CTR] is CTR_DRBG (SP 800-90A 10.2.1) with AES-128, AES-192 or AES-256,
//     with or without the derivation function Block_Cipher_df (10.3.2).
//   - [HMAC] is HMAC_DRBG (10.1.2) with SHA-1, SHA-2 or SHA-3.
//
// Both check their inputs against 9.1-9.3 and the limits of 10.1 Table 2
// and 10.2.1 Table 3: entropy input of at least the security strength
// (exactly seedlen for CTR_DRBG without derivation function, which takes no
// nonce), a nonce of at least half the security strength (8.6.7), at most
// 2^19 bits per Generate
// request, and reseed_interval = 2^48. Bad inputs fail with an error wrapping
// [pluton.ErrInvalidArgument] and leave the state unchanged. Uninstantiate
// (9.4) wipes the state. Each mechanism runs a known-answer self-test
// (11.3.1) once before its first instantiation; a failure wraps
// [pluton.ErrSelfTest].
//
// # The entropy source
//
// [HealthTestedSource] wraps a noise source of byte samples with a claimed
// min-entropy per sample and applies the continuous health tests of
// SP 800-90B 4.4 (repetition count, 4.4.1; adaptive proportion, 4.4.2, with
// a window of 512) at a false-positive rate α = 2^-40, after start-up tests
// over the first 1024 samples (4.3). A failure is permanent and reported as
// a [*HealthError] wrapping [pluton.ErrEntropy].
//
// # Live
//
// [Live] is CTR_DRBG with AES-256 and the derivation function, instantiated
// with 256 bits of entropy and a 128-bit nonce from its source, reseeded
// from the source every [LiveReseedInterval] requests (and before every
// request if made by [NewLivePredictionResistant]). Reads larger than 2^19
// bits are split into several Generate requests (9.3.1); no generated output
// is buffered between calls. If the source fails, Live wipes its state and
// fails every later call with an error wrapping [pluton.ErrEntropy].
//
// On amd64 the AES key schedule is computed with AES-NI in place, so that
// the rekeying that ends every CTR_DRBG request (CTR_DRBG_Update, 10.2.1.2)
// does not allocate; a 32-byte Read costs about as much as one
// crypto/rand.Read. Elsewhere, or built with the purego tag, the package
// uses crypto/aes.
package drbg
