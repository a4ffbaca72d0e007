// Package attest is rootline's attestation verifier: it hands devices
// nonces, checks the evidence they answer with (pluton/evidence), appraises
// it against reference values, records the verdict, and answers with a
// signed attestation result (an EAR, draft-ietf-rats-ear, as a JWT) and,
// when it affirms, a 24-hour operational certificate (DESIGN.md, "The
// field flow").
//
//	v, err := attest.New(&attest.Config{Roots: roots, CRLs: crls, Devices: reg,
//		Store: store, Endorsements: refs, Signer: earKey, Issuer: ca, NonceKey: key})
//	n, err := v.Nonce(ctx)                 // to the device
//	res, err := v.Attest(ctx, &attest.Request{Evidence: tok, CSR: csr})
//	// res.Status, res.Reasons, res.EAR, res.Certificate
//
// Attest is Verify, then Appraise, then the Store, the CA and SignEAR.
// The two stages are separate types: Verify returns a *Verified, which
// only Verify can make, so code that appraises only ever sees claims that
// were verified.
//
// # Stage 1: Verify
//
// Verify refuses with an *Error (matching ErrRefused, with a Code) at the
// first check that fails, in this order:
//
//  1. Size and form: the token is at most evidence.MaxTokenSize bytes and a
//     token of the rootline evidence profile v1 (evidence.Parse) —
//     CodeTooLarge, CodeMalformed.
//  2. Signature and DICE chain: the COSE_Sign1 signature with the leaf
//     (top Alias) certificate's key; the x5chain's structure from the
//     Alias certificates down to the DeviceID certificate, which must be
//     self-signed (evidence.Verify); the event log replays to the
//     registers — CodeSignature, CodeChain, CodeEventLog.
//  3. Registry: the token's UEID is a registered device (Devices), whose
//     state is RegistryActive, of the product the token names —
//     CodeUnknownDevice, CodeDeviceState, CodeIdentity.
//  4. IDevID: the chain the request carries, if any, is the registered
//     one; the registered IDevID chain verifies to one of Config.Roots
//     (crypto/x509 path validation); the IDevID is not a CA, is issued by
//     the next certificate, its HardwareModuleName (RFC 4108) serial
//     number is the token's UEID and its subject's CN the product; and it
//     is bound to the token as the device's kind of identity says (below)
//     — CodeChain, CodeUnknownRoot, CodeIdentity, CodeQuote, CodeRecord.
//  5. Revocation: a current CRL (thisUpdate ≤ now ≤ nextUpdate) of the
//     IDevID's issuer, signed by that issuer, is loaded (Config.CRLs,
//     SetCRLs) and does not list the IDevID — CodeRevocation (fails
//     closed), CodeRevoked.
//  6. Freshness: the nonce is one of this verifier's (same key), of the
//     current or previous window, and unused; it is spent now
//     (internal/nonce) — CodeNonceInvalid, CodeNonceExpired,
//     CodeNonceReplayed, CodeBusy.
//  7. Rollback: every counter, and every layer's SVN, is at least the one
//     last accepted for this device (Store.State) — CodeRollback.
//
// Why the IDevID is not in the x5chain: the IDevID profile (package ca) is
// an end-entity certificate (keyUsage digitalSignature, no cA), and the
// device's first Alias certificate is issued under the name of its
// self-signed DeviceID certificate. So the DICE chain ends with the
// DeviceID certificate, and the verifier binds it to the factory by key:
// the IDevID the factory issued certifies the same DeviceID public key (or,
// for an injected identity, the registry binds the DeviceID key to the
// UEID). A device on a TPM has no DICE chain: its x5chain is its IDevID
// chain (see "Kinds of identity").
//
// Steps 1, 2 and 4 (but for a TPM's quote) are costly and the same on
// every attestation of a device: the DICE chain (keyed by the SHA-256 of
// its certificates) and the IDevID chain are remembered once verified, in
// bounded LRU caches (Config.ChainCacheSize). With its chains cached, an
// attestation costs one signature verification (the token's, checked
// directly, RFC 9052, §4.4) and one signature (the EAR). Steps 3, 5, 6
// and 7 run every time. A device sends the same event log at every
// attestation of a boot: the cached DICE chain also keeps the parsed log
// of its last verified token, reused only for a byte-identical log claim
// (measure.Log.ParsedFrom), with its replay; the replay is still compared
// with the signed register values of every token.
//
// # Kinds of identity
//
// Step 4 binds the IDevID to the token as DeviceRecord.Kind says (the
// registry export's "kind", provision/export):
//
//   - KindDICE (or no kind): the IDevID's public key is the DeviceID key
//     that anchors the DICE chain, and the registered DeviceID key
//     (DeviceRecord.DeviceIDKey) if the record has one.
//   - KindInjected: the IDevID certifies a key the factory HSM made, not
//     the DeviceID key; the DeviceID key that anchors the DICE chain must
//     be the one registered for the UEID (DeviceRecord.DeviceIDKey).
//   - KindTPM: the token's x5chain is the IDevID chain itself (leaf to
//     root), its leaf the registered IDevID, so the token is signed by the
//     TPM's IDevID key; that chain is the one verified to the roots. The
//     registered IAK (DeviceRecord.IAK) is a TPM-resident restricted
//     signing key whose pluton/tpm.UEID is the token's UEID; the token's
//     TPM quote is the IAK's, over the eat_nonce, of the registers claim
//     (tpm.VerifyEvidenceQuote; step 2 replayed the event log to the same
//     registers) — CodeQuote otherwise; and each layer's digest is that of
//     an event of a quoted PCR (CodeQuote), since the layer claims are
//     otherwise only the word of software holding the IDevID key. The
//     quote is checked on every attestation (it is over the nonce).
//
// A record missing what its kind needs (a DeviceID key for KindInjected,
// an IAK for KindTPM), with one that does not parse or contradicts its
// IDevID, or naming an unknown kind, is refused with CodeRecord.
//
// # Stage 2: Appraise
//
// Appraise compares the verified claims with the product's reference
// values (Endorsements), and never fails: it returns a status, reasons and
// an AR4SI trustworthiness vector.
//
//  1. The lifecycle is provisioned or locked — else contraindicated,
//     CodeLifecycle.
//  2. The product has reference values — CodeUnknownProduct.
//  3. Each layer's version has a reference value (CodeUnknownVersion);
//     the layer's digest is one of it (CodeUnknownMeasurement), signed by
//     its signer (CodeUnknownSigner), with an SVN at least its minimum
//     (CodeSVN). Any of these makes the result contraindicated.
//  4. The layers together are a release (CodeUnknownRelease otherwise). A
//     release not marked vulnerable affirms; a vulnerable one gives a
//     warning, with the release's note as the reason (CodeVulnerable).
//
// # Endorsements
//
// Reference values are a JSON document (ReadEndorsements, strict: unknown
// members, trailing data, bad values and documents over
// MaxEndorsementsSize are refused), version 1:
//
//	{
//	  "version": 1,
//	  "products": [{
//	    "product": "sku-a",
//	    "releases": [{
//	      "release": "2026.11.1",
//	      "layers": [{
//	        "layer": "os",                    // as the evidence names it
//	        "version": "1.4.0",               // the image's SemVer
//	        "digests": [{"alg": "sha-256", "value": "<lowercase hex>"}],
//	        "min_svn": 3,
//	        "signer": "<lowercase hex key id, 32, 48 or 64 bytes>"
//	      }, …],
//	      "vulnerable": "CVE-2026-0001: …"     // optional: warning, not affirming
//	    }]
//	  }]
//	}
//
// SetEndorsements replaces them all and UpdateProduct one product's, at
// run time (an authenticated API of the server calls them).
//
// # Results
//
// SignEAR makes the EAR: a JWT (RFC 7519) signed ES256 (RFC 7518, §3.4:
// the signature is r || s, 64 bytes) by Config.Signer, with header
// {"alg":"ES256","typ":"JWT","kid":KeyID()} and the claims
//
//	eat_profile       "tag:github.com,2023:veraison/ear"
//	iat               the time of the verdict (seconds)
//	ear.verifier-id   {"developer", "build"} (Config.VerifierID)
//	eat_nonce         the evidence's nonce, base64url
//	submods           {"device": {
//	    ear.status                   "affirming" | "warning" | "contraindicated"
//	    ear.trustworthiness-vector   {instance-identity, configuration, executables,
//	                                  file-system, hardware, runtime-opaque,
//	                                  storage-opaque, sourced-data} (AR4SI values)
//	    ear.appraisal-policy-id      Config.PolicyID
//	    rootline.reasons             [{"code", "detail"}], private
//	    rootline.ueid, rootline.release   private
//	}}
//
// JWKS publishes the key (RFC 7517) with its RFC 7638 thumbprint as kid.
//
// # Store
//
// Every verdict attributable to a registered device is recorded (Store:
// SQLite for one verifier, Postgres for replicas sharing a database, or
// MemoryStore for tests), with its reasons, and can be listed per device,
// newest first, a page at a time. An affirming or warning verdict also
// records the device's counters and layer SVNs as its accepted state, in
// the same transaction, and the store refuses (ErrRollback) a state lower
// than the one stored, so two concurrent attestations cannot lower it. A
// contraindicated verdict leaves the state as it was.
package attest
