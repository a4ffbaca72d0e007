package tpm

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
)

// iakTemplate is the attestation identity key, a primary key of the
// endorsement hierarchy: restricted signing (it signs only TPM-generated
// structures: quotes, certifications), ECDSA P-256 with SHA-256, fixedTPM,
// fixedParent, sensitiveDataOrigin and userWithAuth, after the IAK
// template of TCG "TPM 2.0 Keys for Device Identity and Attestation"
// (v1.0, §7.3.4). It differs from that template in having no authPolicy
// (adminWithPolicy clear): the spec's policy guards the key's
// administration, which this package does not use. Because a primary key
// is derived from the hierarchy seed and the template (TPM 2.0 Part 1
// §27.7), the key is the same at every CreatePrimary until the endorsement
// seed changes (TPM2_ChangeEPS), like a DICE DeviceID.
func iakTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// createIAK creates the IAK with TPM2_CreatePrimary in the endorsement
// hierarchy. The caller flushes it. Any other key is flushed first, so
// that SRK, IAK and nothing else are loaded.
func (t *TPM) createIAK() (tpm2.NamedHandle, *ecdsa.PublicKey, error) {
	if err := t.unload(); err != nil {
		return tpm2.NamedHandle{}, nil, err
	}
	h, pub, _, err := t.createEKPrimary("IAK", iakTemplate())
	return h, pub, err
}

// iak returns the IAK's public key, creating (and flushing) it once per
// TPM object.
func (t *TPM) iak() (*ecdsa.PublicKey, error) {
	if t.iakPub != nil {
		return t.iakPub, nil
	}
	h, pub, err := t.createIAK()
	if err != nil {
		return nil, err
	}
	if err := t.flush(h.Handle); err != nil {
		return nil, err
	}
	t.iakPub = pub
	return pub, nil
}

func iakInfo(pub *ecdsa.PublicKey) *pluton.KeyInfo {
	return &pluton.KeyInfo{Handle: pluton.DeviceIDHandle, Compartment: pluton.SecurityMonitor,
		Algorithm: pluton.ECDSAP256, Usage: pluton.UsageAttest, Label: "IAK", Public: pub}
}

// ueid derives the UEID from the IAK: type 0x01 (RAND, RFC 9711 §4.2.1)
// followed by the first 16 bytes of SHA-256("rootline tpm ueid" ||
// SubjectPublicKeyInfo of the IAK). It is not drawn at random and stored,
// as RFC 9711 describes RAND UEIDs, but it is as unpredictable as the
// endorsement seed behind the IAK, and it survives the loss of the state
// file.
func ueid(pub *ecdsa.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tpm: IAK: %w", err)
	}
	h := sha256.New()
	h.Write([]byte("rootline tpm ueid"))
	h.Write(spki)
	return append([]byte{0x01}, h.Sum(nil)[:16]...), nil
}
