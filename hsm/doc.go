// Package hsm keeps rootline's factory keys (the device CA intermediates, the
// keys that sign IDevIDs) in a PKCS#11 token: a hardware security module in
// production, SoftHSM2 in development and tests. Keys are generated inside
// the token and never leave it; callers get a [crypto.Signer].
//
//	m, err := hsm.Open(ctx, "pkcs11:token=factory?pin-source=file:/run/factory.pin", nil)
//	pub, uri, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: "sku-a-ca", Algorithm: hsm.P256})
//	signer, err := m.Signer(ctx, uri.String())
//
// # Naming keys: PKCS#11 URIs
//
// Tokens and keys are named by PKCS#11 URIs (RFC 7512), parsed by
// [ParseURI]:
//
//	pkcs11:token=factory;object=sku-a-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/factory.pin
//
// The path (before "?", attributes separated by ";", RFC 7512 section 2.3)
// selects: token, manufacturer, serial and model are matched against the
// token's CK_TOKEN_INFO; library-manufacturer, library-description and
// library-version against the module's CK_INFO; slot-description,
// slot-manufacturer and slot-id against the slot; object is the key's
// CKA_LABEL, id its CKA_ID (any bytes, percent-encoded), type its class
// (a signing key is type=private). An attribute left out matches anything
// (section 2.5); [Open] needs exactly one token to match, [Module.Signer]
// exactly one private key.
//
// The query (after "?", attributes separated by "&", section 2.4) says how
// to get there: module-path, the absolute path of the PKCS#11 library;
// module-name, a library name looked up in the usual module directories;
// pin-source, where the user PIN is (below); and max-sessions, a rootline
// extension bounding the sessions kept open. With neither module-path nor
// module-name, SoftHSM2 is loaded from where distributions install it
// ([FindSoftHSM]).
//
// The parser is strict: it refuses attributes it does not know (vendor
// "x-" ones included: it could not honour them), attributes given twice,
// upper-case names, text that is not UTF-8, and, above all, pin-value. RFC
// 7512 allows a PIN in the URI; this package never accepts one, because
// URIs end up in configuration files, shell history, process listings and
// logs. [URI.String] writes a canonical form that parses back to the same
// URI.
//
// # PINs
//
// The PIN comes from a [PINSource], named by the URI's pin-source (or
// given as [Options.PIN]):
//
//	file:/run/factory.pin   (or /run/factory.pin, or file:///run/factory.pin)
//	env:FACTORY_PIN
//	vault:secret/data/factory#pin   (any scheme registered in Options.PINSources)
//
// A PIN file holds the PIN and at most one trailing line ending; one that
// others may write is refused, one that others may read is used with a
// warning. An environment variable is weaker than a file (the environment
// of a process is readable by its user); prefer a file readable only by
// the service. Further sources (Vault KV, a KMS) plug in through
// [Options.PINSources] without changes here.
//
// The PIN is read when the Module logs in (at Open, and again if the token
// forgets the login), used for C_Login, and wiped; it is not kept in
// between. It never appears in a log record or an error message, and
// rootline's command line takes only a PIN source, never a PIN.
//
// # Keys
//
// [Module.CreateKey] generates an ECDSA P-256 or P-384 key pair
// (CKM_EC_KEY_PAIR_GEN) or, where the token offers PKCS#11 v3.0 EdDSA, an
// Ed25519 one (CKM_EC_EDWARDS_KEY_PAIR_GEN; else [ErrMechanismUnsupported]).
// The private key is a token object with CKA_PRIVATE, CKA_SENSITIVE and
// CKA_SIGN true and CKA_EXTRACTABLE, CKA_DECRYPT, CKA_UNWRAP and CKA_DERIVE
// false; both objects carry the label and a 128-bit CKA_ID from a CSPRNG.
// The token's own report of the new key is then checked (sensitive, always
// sensitive, not extractable, never extractable: a token that ignored the
// template gets its key destroyed, [ErrKeyAttributes]), and the pair passes
// a pairwise-consistency test before it is returned. Other PKCS#11 tools
// see the same: pkcs11-tool --list-objects shows "Access: sensitive, always
// sensitive, never extractable, local".
//
// Signers sign with CKM_ECDSA over the digest the caller passes (as the
// crypto.Signer contract has it) and return ASN.1 DER signatures, turned
// from the raw r||s PKCS#11 gives (RFC 3279, 2.2.3); Ed25519 signers sign
// the message with CKM_EDDSA (pure Ed25519; Ed25519ph and Ed25519ctx are
// refused).
//
// # Injected identity
//
// For products whose chips receive their identity instead of generating it
// (DESIGN.md, "The factory flow"), [Module.InjectKey] generates a device
// key in the token and wraps it so that only one chip can unwrap it, and
// [Module.DeriveSecret] does the same for a per-device secret derived from
// a product master ([Module.CreateSecretMaster]). The chip's side is
// pluton/soft (TransportKey, InstallWrappedKey, InstallWrappedSecret),
// which also defines the wire blob; the caller must first have checked
// the chip's transport key statement against its DeviceID certificate.
//
// The device key is a token object with CKA_SENSITIVE true and
// CKA_EXTRACTABLE true, so it leaves the token only wrapped (its CKA_VALUE
// cannot be read), and CKA_SIGN false. Its public key stays on the token
// too, so a retry can wrap the same key again ([Module.WrapKey]); destroy
// both with [Module.DestroyKey] once the chip has confirmed.
// CKA_WRAP_WITH_TRUSTED is set on request ([InjectKeyRequest]); it needs a
// token that can mark a derived key CKA_TRUSTED, which SoftHSM2 cannot
// (only its SO sets CKA_TRUSTED), so there the wrap fails with
// [ErrWrapWithTrusted].
//
// The wrapping key is derived inside the token, on session objects that
// are destroyed before the call returns:
//
//  1. an ephemeral EC key pair on the transport key's curve
//     (CKM_EC_KEY_PAIR_GEN, CKA_TOKEN false, sensitive, not extractable);
//  2. CKM_ECDH1_DERIVE with the chip's transport public key and kdf
//     CKD_NULL: the shared secret Z (the x-coordinate) as a 32-byte AES
//     key, KZ, its last 32 bytes (all of Z on P-256);
//  3. CKM_AES_ECB_ENCRYPT_DATA under KZ of SHA-256(info), where info binds
//     the format, the kind (key or secret), both curves, the chip's UEID,
//     the name, and both public keys: the wrapping key
//     KEK = AES-256(KZ, D[0:16]) || AES-256(KZ, D[16:32]), with D =
//     SHA-256(info), a CKK_AES key with only CKA_WRAP;
//  4. C_WrapKey with CKM_AES_KEY_WRAP_PAD (RFC 5649): the device key's
//     PKCS#8 PrivateKeyInfo, or the secret's value.
//
// Why not a standard KDF: the SP 800-56C one-step KDF would be
// CKM_ECDH1_DERIVE with kdf CKD_SHA256_KDF (ANSI X9.63), and a two-step KDF
// would need an in-token extract and expand (CKM_SP800_108_COUNTER_KDF,
// CKM_HKDF_DERIVE, CKM_SHA256_KEY_DERIVATION). SoftHSM2 2.6.1 refuses every
// kdf but CKD_NULL (CKR_MECHANISM_PARAM_INVALID for CKD_SHA1_KDF,
// CKD_SHA256_KDF, CKD_SHA384_KDF and CKD_SHA256_KDF_SP800) and offers none
// of those derive mechanisms; its only derivations on a secret key are
// the *_ENCRYPT_DATA ones. So step 3 uses AES-256 under Z as the PRF: Z is
// a shared secret of about 256 bits of min-entropy (P-256) used directly
// as an AES key, without the randomness-extraction step SP 800-56C asks
// for, and AES (a PRP, on two distinct blocks) stands in for an approved
// PRF. The binding of the UEID and the public keys holds all the same (a
// blob for another chip, or altered, fails RFC 5649's integrity check on
// the chip). On P-384, only 256 of Z's 384 bits are used. A token that
// offers CKD_SHA256_KDF can take a second KDF id later; the blob carries
// the id.
//
// A per-device secret is AES-256-ECB under the product master (an AES-256
// token key with CKA_DERIVE only) of SHA-256("rootline/inject secret v1"
// || 0x00 || len16(name) || name || len16(UEID) || UEID), derived with
// CKM_AES_ECB_ENCRYPT_DATA into a sensitive session object, wrapped as
// above, then destroyed: the secret exists in the clear only in the
// token and the chip, and only the name and UEID need keeping to make it
// again. (Not SP 800-108, which SoftHSM2 does not offer; AES under a
// uniformly random master is a PRF on the 32-byte diversifier.)
//
// Each call first checks the mechanisms it needs (C_GetMechanismList, then
// C_GetMechanismInfo for the CKF_ flag it uses); a token without one gets
// a *[MissingMechanismError] naming it, before any object is made.
//
// # Sessions, recovery, concurrency
//
// A Module keeps a pool of sessions, one per concurrent signature, up to
// [Options.MaxSessions] (default: the token's ulMaxRwSessionCount, capped
// at twice the number of CPUs). Each signer caches its key's object handle.
// A session the token lost (CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED) is replaced, a lost login (CKR_USER_NOT_LOGGED_IN) is
// redone with a fresh PIN, and a stale handle (CKR_OBJECT_HANDLE_INVALID,
// CKR_KEY_HANDLE_INVALID, or any new login) is looked up again by CKA_ID;
// the call is then retried. Errors from the token are *[Error] values that
// keep the function and the CKR_ code, and match this package's sentinels
// with errors.Is (CKR_PIN_INCORRECT is [ErrPINIncorrect]).
//
// PKCS#11 modules are per process: C_Initialize once, one login state per
// token shared by every session. So Modules on the same library share it
// (it is unloaded when the last closes), and while one Module has a token
// logged in, a second Open of that token in the same process cannot check
// its PIN. SoftHSM2 reads its configuration (SOFTHSM2_CONF) when first
// loaded, and again only after every Module on it has been closed.
//
// # Builds
//
// PKCS#11 libraries are C, loaded through cgo (github.com/miekg/pkcs11).
// A build without cgo (CGO_ENABLED=0) or with the nopkcs11 tag compiles a
// stub whose [Open] and [InitToken] fail with [ErrUnsupported]; URIs and PIN
// sources work in both.
//
// # Development tokens
//
// [InitToken] creates a SoftHSM2 token through the PKCS#11 API (C_InitToken,
// C_InitPIN), so PINs never pass through a command line; rootline hsm
// init-token wraps it. Package hsm/hsmtest gives each test a fresh token.
package hsm
