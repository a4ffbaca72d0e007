// Package tpm implements [pluton.Subsystem] on a TPM 2.0, through go-tpm's
// tpm2 direct API.
//
// # Connecting
//
// [Open] takes a transport: a TPM character device (Options.Device,
// normally /dev/tpmrm0, the kernel's resource manager), a TPM that takes
// raw command buffers over TCP (Options.Address: swtpm's command port, see
// [DialTCP]), or any go-tpm transport.TPM (Options.Transport). All
// authorizations are password sessions with the empty password.
//
// # Keys
//
// Keys are ECDSA P-256 and P-384 keys created with TPM2_Create (TPM 2.0
// Part 3 §12.1) under the TCG reference ECC P-256 storage root key of the
// owner hierarchy, which TPM2_CreatePrimary re-creates identically from the
// owner seed at every [Open]. The TPM returns the private key encrypted and
// integrity-protected under that SRK (a TPM2B_PRIVATE); the package keeps
// it with the public area and the key's compartment, usage and label in a
// state file (Options.StatePath), rewritten atomically on every change. A
// key is loaded with TPM2_Load when used; at most one key (plus the SRK) is
// loaded at a time, and both are flushed at Close, because a TPM without a
// resource manager (swtpm, a raw /dev/tpm0) holds only about three
// transient objects.
//
// UsageSign keys are unrestricted signing keys: [TPM.Signer] signs any
// digest with TPM2_Sign and returns ASN.1 DER. UsageAttest keys are
// restricted signing keys (Part 1 §25.2), which sign only structures the
// TPM generated itself: they have no Signer, and sign PCR quotes
// ([TPM.Quote]). Compartments are enforced as in pluton/soft: a key or
// counter of another compartment gives a [*pluton.CompartmentError].
//
// # Counters
//
// Each monotonic counter is an NV index of type counter (TPMA_NV_COUNTER,
// Part 1 §37.2.3) in the owner range. A TPM moves such a counter only up,
// by one, and initializes it at its first increment to the largest value
// any counter of the TPM has had; the state file records that starting
// point so that counters read from 1 after their first increment, as
// pluton/soft's do. The rollback protection comes from the TPM; the
// starting point in the state file is trusted like the key table (an
// attacker who can rewrite the state file can shift what a counter reads,
// not move the TPM's counter back). [TPM.AdvanceCounter] increments one
// step per command and refuses jumps of more than [MaxAdvance].
//
// # PCRs and quotes
//
// [TPM.ExtendPCR] and [TPM.ReadPCRs] use TPM2_PCR_Extend and TPM2_PCR_Read;
// extended with the digests of a [github.com/rootline/rootline/pluton/measure.Registers] event, the TPM's PCRs
// take the values the measure event log replays to (tested, and tested
// against tpm2_pcrread). [TPM.Quote] signs PCRs with TPM2_Quote and
// [VerifyQuote] checks a quote (signature, TPM_GENERATED magic, nonce, PCR
// selection and digest); tpm2_checkquote accepts the quotes (tested).
//
// # Identity
//
// A TPM's identity keys follow TCG "TPM 2.0 Keys for Device Identity and
// Attestation": an IAK (restricted ECDSA P-256 signing key: it signs only
// TPM-generated structures) and an IDevID (unrestricted ECDSA P-256
// signing key, for TLS and IEEE 802.1AR), both fixedTPM, fixedParent and
// sensitiveDataOrigin. Both are primary keys of the endorsement hierarchy:
// nothing is persisted (no TPM2_EvictControl); TPM2_CreatePrimary
// re-creates each from the endorsement seed and its template, identical
// after every restart until the seed changes (TPM2_ChangeEPS). The IAK is
// [TPM.Identity]'s DeviceID and key [pluton.DeviceIDHandle] of the
// SecurityMonitor. For the factory, [TPM.IdentityKeys] returns both
// public keys and a TPM2_Certify of the IDevID by the IAK over the
// service's nonce; [VerifyCertify] checks it (signature, magic, type,
// nonce, the IDevID's Name and Qualified Name, its attributes) and returns
// the IDevID key to certify. [TPM.IDevIDSigner] signs with the IDevID.
//
// # Sealing
//
// [TPM.Seal] seals up to [MaxSealSize] bytes to the values of PCRs (those
// they hold, or given ones) in a sealed data object under the SRK whose
// authPolicy is a TPM2_PolicyPCR; [TPM.Unseal] reads it back in a policy
// session, and fails with [ErrPolicy] and the TPM's TPM_RC_POLICY_FAIL
// once a PCR moved. Both run salted sessions that encrypt the secret on
// the wire. The blob is versioned (see Seal).
//
// # Evidence
//
// [TPM.QuoteClaims] adds a TPM quote to pluton/evidence claims: it quotes
// the measurement PCRs with the eat_nonce as qualifying data and sets the
// registers claim to the quoted values, the event log claim, and the
// rootline-tpm-quote claim (-65544). evidence.Verify replays the event log
// against the registers; [VerifyEvidenceQuote] then checks the quote
// against the attestation key, the eat_nonce and the registers, which
// binds the log to the TPM's PCRs. tpm2_checkquote accepts these quotes
// with the PCR values (tested).
//
// # Not supported
//
// A TPM has no write-once fuses and no DICE lifecycle: FuseIdentity,
// FuseRootKeyHash, RootKeyHash, Lifecycle and Transition fail with
// [ErrNotSupported], which wraps errors.ErrUnsupported. Ed25519 and
// ML-DSA-65 fail with pluton.ErrUnsupportedAlgorithm. Not done: reading
// the manufacturer's IAK and IDevID certificates from the TPM's NV, and
// the TCG IAK/IDevID authPolicy (see iakTemplate).
//
// # Errors
//
// A command the TPM refuses gives a [*CommandError] that keeps the response
// code: errors.Is(err, tpm2.TPMRCValue) and errors.As(err, &rc) with a
// tpm2.TPMRC or tpm2.TPMFmt1Error work through it. Quotes that do not
// verify give a [*QuoteError], certifications a [*CertifyError].
//
// The package tpmtest starts a fresh swtpm per test.
package tpm
