// Package evidence makes and checks rootline's attestation token: an Entity
// Attestation Token (EAT, RFC 9711) in the form of a CBOR Web Token (CWT,
// RFC 8392), signed in a COSE_Sign1 (RFC 9052) by the Alias key of the
// device's top boot layer, with the DICE certificate chain of that key in
// the message.
//
// A device signs its claims with [Sign]; a verifier calls [Verify] with the
// nonce it handed out and its trust anchors, then appraises the claims of
// the [Token] it gets back (reference values, counters, lifecycle). [Parse]
// reads a token without verifying it. Everything in a token is untrusted
// until Verify accepts it.
//
//	tok, err := evidence.Sign(rand.Reader, alias, pluton.ECDSAP256, claims, chainDER)
//	...
//	t, err := evidence.Verify(tok, &evidence.VerifyOptions{Nonce: nonce, Roots: factoryRoots})
//	if errors.Is(err, evidence.ErrNonce) { ... } // or ErrSignature, ErrChain, …
//
// A device that attests many times with one Alias key and chain makes a
// [TokenSigner] once (the chain parsed and checked then). A verifier that
// remembers the chains it has verified passes [ParseOptions] to
// [ParseWithOptions] so that their certificates are not parsed again; the
// token's signature is still checked, by whatever verifies it.
//
// Any COSE implementation can check a token's signature with the public key
// of the first certificate of its x5chain (tested with
// github.com/veraison/go-cose).
//
// # The rootline evidence profile v1
//
// This is the profile document (RFC 9711, §6) of the tokens this package
// makes and accepts. Its eat_profile is [Profile],
// "tag:rootline.dev,2026:evidence:v1". It is a full profile (§6.2): a
// receiver that follows it can verify every token a sender that follows it
// makes. The answers to the issues of §6.3:
//
//   - Encoding (§6.3.1–6.3.4): CBOR only. Definite lengths only, for
//     arrays, maps and strings. The claims set is in Core Deterministic
//     Encoding (RFC 8949, §4.2.1: preferred serialization, map keys sorted
//     bytewise), and a receiver refuses any other encoding, so each claims
//     set has one encoding. Duplicate map keys and invalid UTF-8 are
//     refused.
//   - Tags (§6.3.5): the token is a tagged COSE_Sign1 (tag 18,
//     COSE_Sign1_Tagged, RFC 9052, §4.2), not wrapped in the CWT tag 61
//     (RFC 8392, §6), which is optional; no other tag appears anywhere.
//   - Protection (§6.3.6): COSE_Sign1 only, no encryption, no detached
//     payload.
//   - Algorithms (§6.3.7): ES256 (-7, ECDSA P-256 with SHA-256), ES384
//     (-35, ECDSA P-384 with SHA-384), EdDSA (-8, Ed25519) (RFC 9053, §2)
//     and ML-DSA-65 (-49, draft-ietf-cose-dilithium); a receiver supports
//     all four. The key decides: the algorithm is that of the Alias key.
//   - Headers: the protected header holds exactly alg (1), content type
//     (3) and x5chain (33); the unprotected header is empty. The content
//     type is the CoAP Content-Format 263, application/eat+cwt (RFC 9782;
//     IANA "CoAP Content-Formats"), [ContentFormat]: a uint, shorter than
//     the media type string.
//   - Key identification (§6.3.9): x5chain (RFC 9360, §2) in the protected
//     header, so that the signature covers it: the DER certificates, leaf
//     first. The leaf is the certificate of the Alias key that signed the
//     token (a DICE Alias certificate, pluton/dice); each next certificate
//     is its issuer's: the Alias certificates of the layers below, then the
//     DeviceID certificate, self-signed before provisioning, or once the
//     chip is provisioned the IDevID certificate of the DeviceID key (it
//     takes the self-signed certificate's place) followed by the factory
//     CA's intermediates. At most [MaxCertificates] certificates of at most
//     [MaxCertificateSize] bytes. Key identifiers (kid) are not used.
//   - Endorsements (§6.3.10): none in the token; the verifier's trust
//     anchors are the factory CA roots (or, before provisioning, a
//     DeviceID key it has recorded).
//   - Freshness (§6.3.11): eat_nonce, one nonce (never an array), from the
//     verifier.
//   - Claims (§6.3.12): those of the tables below and no other: a receiver
//     refuses a token with a claim it does not know (allowed by §6.3.12,
//     against the default of §4), with a required claim missing, or with a
//     claim of the wrong type or out of range.
//   - Detached EAT bundles (§6.3.8), nested tokens and detached submodule
//     digests (§4.2.18.2–4.2.18.3) are not used.
//
// The claims set (the COSE_Sign1 payload):
//
//	key     name                     value                                  presence
//	10      eat_nonce                bstr .size (8..64)                     required   RFC 9711, §4.1
//	256     ueid                     bstr .size (7..33), opaque             required   RFC 9711, §4.2.1
//	263     dbgstat                  uint, from the lifecycle (below)       required   RFC 9711, §4.2.9
//	265     eat_profile              "tag:rootline.dev,2026:evidence:v1"    required   RFC 9711, §4.3.2
//	266     submods                  { + layer-name => layer-claims }       with ≥ 1 layer  RFC 9711, §4.2.18
//	-65537  rootline-lifecycle       tstr: pluton.Lifecycle.String()        required   private
//	-65538  rootline-product         tstr, [A-Za-z0-9][A-Za-z0-9._-]*       optional   private
//	-65539  rootline-counters        { + tstr => uint }                     optional   private
//	-65540  rootline-registers       { + bank => { + uint => bstr } }       optional   private
//	-65541  rootline-event-log       bstr: a TCG crypto-agile event log     optional, needs registers  private
//	-65544  rootline-tpm-quote       { 1 => attest, 2 => signature,         optional, needs registers  private
//	                                   3 => bank, 4 => [ + uint ] }
//
// Each layer's submodule is a Claims-Set (RFC 9711, §4.2.18.1) named by the
// layer ("bootloader", "os", "app", …):
//
//	key     name                     value                                  presence
//	270     swname                   tstr: the layer name again             required   RFC 9711, §4.2.6
//	271     swversion                [ SemVer tstr, 16384 ]                 required   RFC 9711, §4.2.7
//	2399    psa-software-components  [ { 2 => digest, 5 => signer-id,       required   RFC 9783, §4.4.1
//	                                       6 => hash name } ]
//	-65542  rootline-svn             uint: security version number          required   private
//	-65543  rootline-boot-index      uint: 0 for the first layer booted …   required   private
//
// Notes on the claims:
//
//   - Private claim keys are less than -65536, the private-use range of the
//     CWT Claims registry (RFC 8392, §9.1); the names above are this
//     profile's, not registered.
//   - swversion's scheme is 16384, "semver" (CoSWID version-scheme, RFC
//     9393, §4.1), not 1 (multipartnumeric): boot images carry Semantic
//     Versioning 2.0.0 versions (pluton/boot), which multipartnumeric
//     cannot express ("1.2.0-rc.1").
//   - The layer's measurement is one PSA software component (RFC 9783,
//     §4.4.1, "Software Components", claim 2399 of the CWT Claims registry,
//     also used by Arm CCA platform tokens): measurement-value (2) the image digest,
//     signer-id (5) the signing key's identifier, measurement-desc (6) the
//     digest's hash algorithm by its IANA Named Information name ("sha-256",
//     "sha-384", "sha-512"; RFC 6920, §9.4). measurement-type (1) and
//     version (4) are left out: the submodule's name and swversion say
//     them. Both values are psa-hash-type: 32, 48 or 64 bytes. The
//     measurements claim (273, RFC 9711, §4.2.16) was not used: it names
//     its format by a CoAP Content-Format, and none is registered for a
//     (digest, algorithm, signer) triple short of an evidence CoSWID.
//   - The boot index gives the layers' order, which the submods map, sorted
//     by key, loses. Indices are 0 to n-1, each once.
//   - dbgstat is derived from the lifecycle: 0 (enabled) in blank,
//     manufacturing, provisioned and rma; 2 (disabled-since-boot) in
//     locked, since 3 (disabled-permanently) requires an oemid claim
//     (§4.2.9.4); 4 (disabled-fully-and-permanently) in decommissioned. A
//     receiver refuses any other value.
//   - The product identifier is a private claim, not hwmodel (259): RFC
//     9711, §4.2.4 allows hwmodel only with an oemid claim (258), and
//     rootline has no OEM identifier to send; hwmodel is also limited to 32
//     bytes, and product identifiers to 64.
//   - Registers: bank is the COSE algorithm identifier of the bank's hash
//     (RFC 9054, §2): -16 for SHA-256, -43 for SHA-384; register indices
//     are 0 to 23 (pluton/measure); each value has the hash's size.
//   - The event log is at most [MaxEventLogSize] bytes; the verifier parses
//     it (measure.ParseLog) and replays it against the registers claim.
//   - The TPM quote (a device on a TPM 2.0, pluton/tpm): attest (1) is the
//     TPMS_ATTEST of a TPM2_Quote (TPM 2.0 Part 2 §10.12.12, Part 3
//     §18.4) and signature (2) the TPMT_SIGNATURE over it, each a bstr of
//     1 to [MaxTPMQuoteSize] bytes in TPM wire format; bank (3) is the
//     quoted PCR bank as in the registers claim (-16 or -43); PCRs (4) are
//     the quoted PCR indexes, 1 to 24 of them, strictly increasing, each a
//     register of that bank in the registers claim. The quote's
//     qualifyingData is the token's eat_nonce and its pcrDigest the hash of
//     those registers' values in increasing order. All four are required.
//     Verify checks only this form; the quote's signature, nonce and
//     digest are checked with the attestation key, which the x5chain does
//     not carry (pluton/tpm's VerifyEvidenceQuote).
//   - Counters: at most [MaxCounters], names of 1 to 128 characters of
//     [A-Za-z0-9:/._-].
//   - No iat, exp or nbf (RFC 8392, §3.1): devices have no trusted clock;
//     freshness is the nonce's job.
//
// A token is at most [MaxTokenSize] bytes: 64 KiB, plus the event log.
//
// # What Verify checks and what it leaves to the appraisal
//
// [Verify] checks the signature with the leaf certificate's key, the
// structure of the chain (names, CA flags, key usages, path lengths,
// signatures), optionally that it leads to a trusted root and that the
// nonce is the verifier's, and that the event log reproduces the registers.
// It does not check revocation, that the DICE certificates' TcbInfo
// agrees with the measurements (pluton/dice reads TcbInfo), that the UEID
// is the one in the DeviceID certificate, or that the measurements,
// versions, counters and lifecycle are acceptable: those are the
// appraisal's, with its reference values and registry.
package evidence
