package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
)

// ParseIAKPublic parses an untrusted TPMT_PUBLIC that claims to be an IAK
// ([IdentityKeys].IAKPublic) and returns its public key. It checks what a
// verifier can check from the public area alone (TPM 2.0 Part 2 §12.2.4,
// TCG "TPM 2.0 Keys for Device Identity and Attestation" §7.3.4): an ECC
// P-256 or P-384 key, of the ECDSA scheme, whose attributes say fixedTPM,
// fixedParent and sensitiveDataOrigin (created in, and never leaving, its
// TPM), restricted and sign, not decrypt (a restricted signing key signs
// only TPM-generated structures), its point on the curve, and b the exact
// marshalling of what it parses to.
//
// It does not make the key trustworthy: attributes are claims of whoever
// made the bytes, until a certificate of the key (the TPM manufacturer's,
// or an EK-based credential activation) or an enrolment record vouches for
// it. Every failure is a *[CertifyError] wrapping [ErrCertifyMalformed] or
// [ErrCertifyAttributes].
func ParseIAKPublic(b []byte) (*ecdsa.PublicKey, error) {
	fail := func(reason error, f string, a ...any) (*ecdsa.PublicKey, error) {
		return nil, &CertifyError{Reason: reason, Detail: "IAK: " + fmt.Sprintf(f, a...)}
	}
	if len(b) == 0 || len(b) > maxPublic {
		return fail(ErrCertifyMalformed, "public area of %d bytes", len(b))
	}
	area, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil || !bytes.Equal(tpm2.Marshal(area), b) {
		return fail(ErrCertifyMalformed, "TPMT_PUBLIC does not parse")
	}
	if _, ok := nameHash(area.NameAlg); !ok {
		return fail(ErrCertifyAttributes, "nameAlg %v", area.NameAlg)
	}
	a := area.ObjectAttributes
	switch {
	case area.Type != tpm2.TPMAlgECC:
		return fail(ErrCertifyAttributes, "key type %v, want ECC", area.Type)
	case !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin:
		return fail(ErrCertifyAttributes, "not fixedTPM, fixedParent and sensitiveDataOrigin")
	case !a.SignEncrypt || a.Decrypt || !a.Restricted:
		return fail(ErrCertifyAttributes, "not a restricted signing key")
	}
	parms, err := area.Parameters.ECCDetail()
	if err != nil {
		return fail(ErrCertifyMalformed, "ECC parameters: %v", err)
	}
	if parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
		return fail(ErrCertifyAttributes, "scheme %v, want ECDSA", parms.Scheme.Scheme)
	}
	b2 := tpm2.Marshal(tpm2.New2B(*area))
	key, err := publicKeyOf(b2, pluton.ECDSAP256)
	if err != nil {
		if key, err = publicKeyOf(b2, pluton.ECDSAP384); err != nil {
			return fail(ErrCertifyAttributes, "%v", err)
		}
	}
	return key, nil
}

// UEID returns the UEID a TPM whose IAK is iak reports ([TPM.Identity]):
// type 0x01 (RAND, RFC 9711 §4.2.1) and the first 16 bytes of
// SHA-256("rootline tpm ueid" || SubjectPublicKeyInfo of the IAK). A
// verifier holding the IAK recomputes it, so a UEID claim cannot name
// another TPM's IAK.
func UEID(iak *ecdsa.PublicKey) ([]byte, error) {
	if iak == nil {
		return nil, fmt.Errorf("tpm: %w: no IAK", pluton.ErrInvalidKey)
	}
	return ueid(iak)
}
