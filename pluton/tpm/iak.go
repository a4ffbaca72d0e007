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
	return eccSigningKey(area, true, "IAK: ")
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
