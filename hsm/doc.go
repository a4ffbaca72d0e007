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
