// Package dice implements DICE layering as the Open Profile for DICE
// specifies it (google/open-dice, docs/specification.md, v2.6), and agrees
// with open-dice's own known answers.
//
// A DICE layer measures the next one into [InputValues] ("Input Values":
// code, configuration, authority, mode, hidden) and calls [Derive] to turn
// its own CDIs into the next layer's ("Computing CDI Values", "Computing
// Layered CDI Values"):
//
//	CDI_Attest[n+1] = HKDF-SHA-512(32, CDI_Attest[n], H(code || config || authority || mode || hidden), "CDI_Attest")
//	CDI_Seal[n+1]   = HKDF-SHA-512(32, CDI_Seal[n],   H(authority || mode || hidden), "CDI_Seal")
//
// The first layer, run by the hardware (boot ROM), passes the 32-byte UDS as
// both current CDIs. A layer must then wipe its CDIs, or lock them away from
// the next layer ("Protecting Layered CDI Values").
//
// [KeyPair] derives the deterministic signing key of a CDI ("Asymmetric Key
// Pair Derivation", "Deriving Asymmetric Key Pairs"): the 32-byte seed
// HKDF-SHA-512(CDI, ASYM_SALT, "Key Pair") ([AsymSeed]), then an Ed25519,
// ECDSA P-256 or P-384 key from it as open-dice derives them, or, as a
// rootline extension, an ML-DSA-65 key. [DeriveID] and [PublicKeyID] compute
// the 20-byte identifier of a public key ("Deriving Identifiers") that
// certificates use as serial number and, hex-encoded, as subject and issuer
// name ("Certificate Details").
//
// # What rootline uses it for
//
// The security subsystem (package pluton) holds the UDS. Its DeviceID key
// is KeyPair(UDS): it never changes over the device's life, and the
// factory certifies its public key. At each boot layer the current layer
// measures the next, calls Derive, and certifies the next layer's Alias key,
// KeyPair(next CDI_Attest), with its own key (the DeviceID for the first
// layer), so a verifier can follow the chain from the factory certificate
// to the running software; a change of code, configuration, authority or
// mode changes the Alias key. CDI_Seal, which changes only with the
// authority, mode and hidden inputs, keys data sealed to a layer across
// updates.
//
// # Conformance
//
// Derive, AsymSeed, KeyPair (Ed25519, P-256, P-384) and DeriveID reproduce
// open-dice's known_test_values (testdata/known_test_values.json): both CDIs
// of the three cases, the subject and issuer public keys and IDs of its
// X.509 and CBOR certificates, and their signatures.
//
// # Certificates
//
// DeviceIDCertificate and AliasCertificate make the X.509 certificates of
// the TCG DICE certificate profile, following open-dice's X.509 profile for
// names, serials and key identifiers (the DICE IDs), with the DiceTcbInfo
// extension (OID 2.23.133.5.4.1, TCG DICE Attestation Architecture §6.1.1)
// describing the measured layer, and the tcg-dice-Ueid extension in the
// DeviceID certificate. DiceTcbInfo is marked non-critical: the
// specification says SHOULD be critical, but OpenSSL and Go's crypto/x509
// both refuse a chain with an unknown critical extension, and a chain that
// standard verifiers refuse is of no use to a device's relying parties. A
// verifier that appraises measurements must therefore require the
// extension itself (TcbInfoFromCertificate fails with ErrNoTcbInfo).
package dice
