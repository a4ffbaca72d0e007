// Package vaultpki is the Vault backend of package ca: a device CA whose
// private keys and state live in HashiCorp Vault.
//
// # Why not Vault's PKI secrets engine
//
// Every profile of package ca names its subject with an otherName in the
// subjectAltName (RFC 5280, 4.2.1.6): the IDevID and operational profiles a
// HardwareModuleName (RFC 4108, 5: SEQUENCE { hwType OBJECT IDENTIFIER,
// hwSerialNum OCTET STRING }), the station profile a RootlineStation
// (SEQUENCE { UTF8String, SEQUENCE OF UTF8String }). Vault's PKI engine
// (checked on Vault 1.21.1; see TestPKIEngineCannotIssueProfiles) cannot
// issue either:
//
//   - other_sans and allowed_other_sans take "OID;UTF8:value" only
//     (issuing.ParseOtherSANs refuses any type but utf8/utf-8), and every
//     otherName it writes is [0] EXPLICIT UTF8String
//     (certutil.HandleOtherSANs);
//   - a CSR's otherNames, taken by roles with use_csr_sans and by
//     sign-verbatim, are read as UTF8String too
//     (certutil.GetOtherSANsFromX509Extensions), and any other value makes
//     Vault refuse the request: "could not parse requested other SAN: no
//     UTF-8 string found in OtherName". So sign-verbatim, which otherwise
//     copies a CSR's extensions into the certificate, does not help either
//     (and would need the chip's CSR to carry the name, which package ca
//     refuses);
//   - the engine's keys sign nothing but what the engine builds
//     (sign-self-issued takes CA certificates only), and the Certificate
//     Issuance External Policy Service, which lets an outside service give
//     the whole template, is in Vault Enterprise only.
//
// # What this package does instead
//
// The issuer builds the certificate, and Vault holds everything secret or
// shared: each issuing CA's key is a non-exportable Vault Transit key
// (package hsm/vault makes it and signs with it), and the certificates of
// the hierarchy, the revocations and the CRL numbers are in Vault's KV
// engine ([Store], with check-and-set so that replicas share it). [CA] is
// ca.Local over those: the same checks (ca.Check) and profiles
// (ca.Checked.Template) as the local backend, so all three profiles are
// issued exactly as specified, and CRLs carry reason codes (which Vault's
// PKI engine does not record either: its revoke takes no reason).
//
// Setting up (the ceremony, once): create a transit key per issuing CA
// (vault.KMS.CreateKey), have the offline root sign its certificate
// (ca.NewIntermediate with the transit key's public key), and record the
// root and each issuing CA in the store ([Store.PutRoot],
// [Store.PutIssuer]). Then every replica calls [Open].
package vaultpki
