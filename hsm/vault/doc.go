// Package vault keeps factory signing keys in HashiCorp Vault's transit
// secrets engine, as package hsm keeps them in a PKCS#11 token: keys are
// generated inside Vault, never exported, and used through crypto.Signer.
//
// Open logs in with a token or by AppRole, over TLS verified against a
// given CA (plain http only on loopback, for a development server):
//
//	k, err := vault.Open(ctx, &vault.Config{
//		Address: "https://vault.factory:8200",
//		AppRole: &vault.AppRole{RoleID: roleID, SecretIDFile: "/run/secrets/secret-id"},
//		CACert:  "/etc/rootline/vault-ca.pem",
//	})
//	pub, err := k.CreateKey(ctx, "sku-a-intermediate", hsm.P256)
//	s, err := k.Signer(ctx, "sku-a-intermediate")
//	sig, err := s.Sign(nil, digest, crypto.SHA256) // ASN.1 DER
//
// Keys are created with exportable=false and allow_plaintext_backup=false,
// and a signer refuses a key that has either. ECDSA signers send Vault the
// caller's digest (prehashed=true, hash_algorithm from opts,
// marshaling_algorithm=asn1) and return DER, as crypto/ecdsa does; Ed25519
// signers send the message. Each signer is bound to the key version that
// was current when it was made, and verifies its first signature under
// that version's public key before returning it.
//
// Failures are sorted for callers that branch: errors.Is(err, ErrSealed),
// ErrUnreachable, ErrKeyNotFound, ErrPermission; errors.As with *Error gives
// the path and status, and with *api.ResponseError Vault's own messages.
//
// A KMS is also a PIN source for package hsm: a field of a KV secret holds
// a token's user PIN, named pin-source=vault:PATH#FIELD in the PKCS#11 URI
// (with "#" written %23) once [KMS.PINSourceFunc] is registered in
// hsm.Options.PINSources. The PIN is copied out for the caller to wipe;
// the API client's decoded answer holds it as a Go string, which cannot be
// wiped, until the garbage collector reclaims it.
//
// Nothing is read from VAULT_* environment variables: Config is the whole
// configuration.
package vault
