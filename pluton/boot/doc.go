// Package boot signs and verifies the images of a secure boot chain: the
// bootloader, the operating system and the application, each verified by
// the stage before it before it runs.
//
// # Images
//
// An image is a manifest (layer, product, semantic version, security
// version number, payload size and digest, signer key ids; see [Manifest])
// signed as a COSE_Sign1 (RFC 9052, §4.2), immediately followed by the
// payload bytes. A hybrid image is signed as a COSE_Sign (§4.1) with
// exactly two signatures, one ECDSA (P-256 or P-384) and one ML-DSA-65, so
// that it stays trustworthy if either algorithm is broken. Signers are
// ECDSA P-256/P-384, Ed25519 and ML-DSA-65 keys ([pluton.Algorithm]); each
// is named by its [KeyID], the SHA-256 of its SubjectPublicKeyInfo.
//
//	image, err := boot.SignImage(rand.Reader, []crypto.Signer{osKey},
//		&boot.Manifest{Layer: boot.OS, Product: "sku-a", Version: "1.4.0", SVN: 3}, payload)
//
// # Trust
//
// A chip fuses the SHA-256 (or SHA-384) of its product's root key. The
// root key signs a trust policy ([PolicyContent], [SignPolicy]): for each
// layer, the keys that may sign its images and whether it requires hybrid
// signatures; the revoked keys; and a policy version that only moves
// forward. The boot ROM checks the policy against the fuse
// ([VerifyPolicy]) and then each image against the policy and the chip's
// anti-rollback counter for its layer ([Policy.VerifyImage]):
//
//	policy, err := boot.VerifyPolicy(policyBytes, fusedRootHash, "sku-a", policyCounter)
//	m, payload, err := policy.VerifyImage(image, boot.OS, osCounter)
//	// boot payload; once it is confirmed good, advance the OS counter to m.SVN.
//
// This package does no chip I/O: the caller reads the counters, and
// advances a layer's counter to the verified manifest's SVN only after the
// image has booted successfully, never before, so that an interrupted
// update can fall back to the previous image.
//
// Every refusal is a *[VerifyError] wrapping one sentinel error
// ([ErrBadSignature], [ErrUnknownSigner], [ErrRevokedSigner],
// [ErrRollback], [ErrWrongLayer], [ErrWrongProduct], [ErrDigestMismatch],
// [ErrTruncated], [ErrMalformed], [ErrTooLarge], [ErrHybridRequired],
// [ErrRootKeyMismatch]). Images and policies are untrusted input: they
// are parsed strictly, every size is bounded, and nothing in them is used
// before the signature covering it is verified.
//
// # Key files
//
// The signing tool keeps private keys as PKCS#8 PEM files (ML-DSA-65 in
// the seed form of RFC 9881) and public keys as SubjectPublicKeyInfo PEM
// files: [GenerateKey], [ParsePrivateKeyPEM], [ParsePublicKeyPEM],
// [MarshalPublicKeyPEM].
package boot
