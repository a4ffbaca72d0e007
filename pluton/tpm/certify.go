package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"io"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
)

// maxPublic bounds an untrusted TPMT_PUBLIC: an ECC key's is about 90–130
// bytes.
const maxPublic = 1024

// idevidUnique is the unique field (x coordinate) of the IDevID template.
// A primary key is derived from the hierarchy seed and the whole template,
// unique field included (TPM 2.0 Part 1 §27.7); this label keeps the
// IDevID apart from any other unrestricted ECC signing primary key that
// other software might create with the same attributes.
var idevidUnique = []byte("rootline IDevID")

// idevidTemplate is the device identity key (IDevID), a primary key of
// the endorsement hierarchy after the IDevID template of TCG "TPM 2.0 Keys
// for Device Identity and Attestation" (v1.0, §7.3.4): an unrestricted
// ECDSA P-256 signing key (it signs any digest: TLS, IEEE 802.1AR), with
// fixedTPM, fixedParent, sensitiveDataOrigin and userWithAuth. Like the
// IAK (iakTemplate) it has no authPolicy, and its unique field is
// idevidUnique. The same template gives the same key until the
// endorsement seed changes.
func idevidTemplate() tpm2.TPMTPublic {
	t := iakTemplate()
	t.ObjectAttributes.Restricted = false
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: idevidUnique}})
	return t
}

// createEKPrimary runs TPM2_CreatePrimary in the endorsement hierarchy and
// returns the key's handle, its public key and its TPMT_PUBLIC as the TPM
// returned it. The caller flushes it.
func (t *TPM) createEKPrimary(what string, tmpl tpm2.TPMTPublic) (tpm2.NamedHandle, *ecdsa.PublicKey, []byte, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t.tpm)
	if err != nil {
		return tpm2.NamedHandle{}, nil, nil, cmdErr(tpm2.TPMCCCreatePrimary, err)
	}
	h := tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	pub, err := publicKeyOf(tpm2.Marshal(rsp.OutPublic), pluton.ECDSAP256)
	if err != nil {
		t.flush(h.Handle)
		return tpm2.NamedHandle{}, nil, nil, fmt.Errorf("tpm: %s: %w", what, err)
	}
	return h, pub, rsp.OutPublic.Bytes(), nil
}

// IdentityKeys are a TPM's two identity keys after TCG "TPM 2.0 Keys for
// Device Identity and Attestation" and the IAK's certification of the
// IDevID, for the factory: with the IAK trusted (its certificate from the
// TPM's manufacturer, or a record of an earlier enrolment), [VerifyCertify]
// proves that the IDevID lives in the same TPM, so that the factory CA can
// issue the IDevID certificate (TCG, §5: "IDevID provisioning by the OEM").
// Everything here is untrusted until VerifyCertify accepts it.
type IdentityKeys struct {
	// IAK is the attestation key (restricted signing): the key of
	// [TPM.Identity] and of quotes by [pluton.DeviceIDHandle].
	IAK *ecdsa.PublicKey
	// IAKPublic is the IAK's TPMT_PUBLIC as the TPM returned it.
	IAKPublic []byte
	// IDevID is the device identity key (unrestricted signing; see
	// [TPM.IDevIDSigner]).
	IDevID *ecdsa.PublicKey
	// IDevIDPublic is the IDevID's TPMT_PUBLIC as the TPM returned it: its
	// Name is what the certification names.
	IDevIDPublic []byte
	// Attest is the TPMS_ATTEST of TPM2_Certify (TPM 2.0 Part 3 §18.2) of
	// the IDevID by the IAK, with the verifier's nonce as qualifyingData.
	Attest []byte
	// Signature is the IAK's TPMT_SIGNATURE over Attest.
	Signature []byte
}

// IdentityKeys creates the IAK and the IDevID in the endorsement hierarchy
// (TPM2_CreatePrimary: both are primary keys, re-created identically from
// the endorsement seed at every call, so nothing is persisted; see
// iakTemplate and idevidTemplate) and has the IAK certify the IDevID with
// TPM2_Certify, nonce (at most [MaxNonce] bytes, from the verifier) as
// qualifyingData. Both keys are flushed before it returns. The compartment
// model does not apply: these are the TPM's identity, which the
// SecurityMonitor's [TPM.Identity] also reveals.
func (t *TPM) IdentityKeys(ctx context.Context, nonce []byte) (*IdentityKeys, error) {
	if len(nonce) > MaxNonce {
		return nil, fmt.Errorf("tpm: %w: nonce of %d bytes (at most %d)", pluton.ErrInvalidArgument, len(nonce), MaxNonce)
	}
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	// SRK, IAK and IDevID: the three transient objects swtpm holds.
	if err := t.unload(); err != nil {
		return nil, err
	}
	iak, iakPub, iakArea, err := t.createEKPrimary("IAK", iakTemplate())
	if err != nil {
		return nil, err
	}
	defer t.flush(iak.Handle)
	t.iakPub = iakPub
	dev, devPub, devArea, err := t.createEKPrimary("IDevID", idevidTemplate())
	if err != nil {
		return nil, err
	}
	defer t.flush(dev.Handle)
	// TPM2_Certify (Part 3 §18.2): objectHandle in the ADMIN role, which
	// for an object without adminWithPolicy is its authValue (empty).
	rsp, err := tpm2.Certify{
		ObjectHandle:   tpm2.AuthHandle{Handle: dev.Handle, Name: dev.Name, Auth: tpm2.PasswordAuth(nil)},
		SignHandle:     tpm2.AuthHandle{Handle: iak.Handle, Name: iak.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
	}.Execute(t.tpm)
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCCertify, err)
	}
	return &IdentityKeys{
		IAK: iakPub, IAKPublic: iakArea,
		IDevID: devPub, IDevIDPublic: devArea,
		Attest: rsp.CertifyInfo.Bytes(), Signature: tpm2.Marshal(rsp.Signature),
	}, nil
}

// IDevIDSigner returns a crypto.Signer of the IDevID key (ECDSA P-256,
// ASN.1 DER signatures). Each Sign re-creates the key with
// TPM2_CreatePrimary, signs with TPM2_Sign and flushes it, so it costs a
// key derivation; it holds the TPM's lock meanwhile.
func (t *TPM) IDevIDSigner(ctx context.Context) (crypto.Signer, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	if err := t.unload(); err != nil {
		return nil, err
	}
	h, pub, _, err := t.createEKPrimary("IDevID", idevidTemplate())
	if err != nil {
		return nil, err
	}
	if err := t.flush(h.Handle); err != nil {
		return nil, err
	}
	return &idevidSigner{t: t, pub: pub}, nil
}

type idevidSigner struct {
	t   *TPM
	pub *ecdsa.PublicKey
}

func (s *idevidSigner) Public() crypto.PublicKey { return s.pub }

// Sign signs a SHA-256 digest with the IDevID.
func (s *idevidSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != sha256.Size {
		return nil, fmt.Errorf("tpm: %w: the IDevID signs SHA-256 digests", pluton.ErrInvalidArgument)
	}
	t := s.t
	if err := t.lock(context.Background()); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	if err := t.unload(); err != nil {
		return nil, err
	}
	h, pub, _, err := t.createEKPrimary("IDevID", idevidTemplate())
	if err != nil {
		return nil, err
	}
	defer t.flush(h.Handle)
	if !pub.Equal(s.pub) {
		return nil, fmt.Errorf("tpm: the IDevID changed (endorsement seed changed?)")
	}
	return t.sign(h, pluton.ECDSAP256, digest)
}

// attestSigError is why attestSignature refused a signature: a malformed
// TPMT_SIGNATURE, or one that does not verify; the caller turns it into
// its own error type.
type attestSigError struct {
	malformed bool
	detail    string
}

// attestSignature checks that pub signed attest: sig is a TPMT_SIGNATURE
// of the ECDSA scheme with pub's hash (SHA-256 for P-256, SHA-384 for
// P-384) over H(attest) (TPM 2.0 Part 3 §18.1).
func attestSignature(pub *ecdsa.PublicKey, alg pluton.Algorithm, attest, sigBytes []byte) *attestSigError {
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](sigBytes)
	if err != nil || !bytes.Equal(tpm2.Marshal(sig), sigBytes) {
		return &attestSigError{true, "TPMT_SIGNATURE does not parse"}
	}
	if sig.SigAlg != tpm2.TPMAlgECDSA {
		return &attestSigError{false, fmt.Sprintf("signature algorithm %v, want ECDSA", sig.SigAlg)}
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		return &attestSigError{true, fmt.Sprintf("ECDSA signature: %v", err)}
	}
	if e.Hash != tpmHash(alg) {
		return &attestSigError{false, fmt.Sprintf("signature hash %v, want %v", e.Hash, tpmHash(alg))}
	}
	der, err := ecdsaDER(alg, &tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, e)})
	if err != nil {
		return &attestSigError{false, err.Error()}
	}
	if !ecdsa.VerifyASN1(pub, alg.Digest(attest), der) {
		return &attestSigError{false, ""}
	}
	return nil
}

// attestKey checks a verifier's attestation key.
func attestKey(pub crypto.PublicKey, what string) (*ecdsa.PublicKey, pluton.Algorithm, error) {
	alg, err := pluton.AlgorithmOf(pub)
	if err != nil || (alg != pluton.ECDSAP256 && alg != pluton.ECDSAP384) {
		return nil, 0, fmt.Errorf("tpm: %s: %w: want an ECDSA P-256 or P-384 key", what, pluton.ErrInvalidKey)
	}
	return pub.(*ecdsa.PublicKey), alg, nil
}

// nameHash returns the hash of a Name's algorithm (TPM 2.0 Part 1 §16).
func nameHash(alg tpm2.TPMIAlgHash) (func() hash.Hash, bool) {
	switch alg {
	case tpm2.TPMAlgSHA256:
		return sha256.New, true
	case tpm2.TPMAlgSHA384:
		return sha512.New384, true
	case tpm2.TPMAlgSHA512:
		return sha512.New, true
	}
	return nil, false
}

// objectName computes the Name of an object from its TPMT_PUBLIC (TPM 2.0
// Part 1 §16, "Names"): nameAlg (2 bytes, big-endian) || H_nameAlg(the
// marshalled TPMT_PUBLIC).
func objectName(nameAlg tpm2.TPMIAlgHash, public []byte) ([]byte, bool) {
	newHash, ok := nameHash(nameAlg)
	if !ok {
		return nil, false
	}
	h := newHash()
	h.Write(public)
	return h.Sum(binary.BigEndian.AppendUint16(nil, uint16(nameAlg))), true
}

// qualifiedName computes the Qualified Name of an object from its
// parent's Qualified Name and its Name (TPM 2.0 Part 1 §16: QN_B =
// nameAlg_B || H_nameAlg_B(QN_A || Name_B)). The Qualified Name of a
// hierarchy is its handle (4 bytes, big-endian).
func qualifiedName(nameAlg tpm2.TPMIAlgHash, parentQN, name []byte) []byte {
	newHash, _ := nameHash(nameAlg)
	h := newHash()
	h.Write(parentQN)
	h.Write(name)
	return h.Sum(binary.BigEndian.AppendUint16(nil, uint16(nameAlg)))
}

// VerifyCertify checks an untrusted TPM2_Certify of the IDevID by the IAK
// ([TPM.IdentityKeys]) and returns the IDevID public key it proves to be
// in the IAK's TPM. iak is the IAK's public key, from a trusted source (the
// TPM manufacturer's IAK certificate, an enrolment record); idevidPublic
// is the IDevID's TPMT_PUBLIC; attest and sig are the TPMS_ATTEST and the
// TPMT_SIGNATURE; nonce is the verifier's. The checks (TPM 2.0 Part 2
// §10.12.3, §10.12.12, Part 3 §18.2):
//
//  1. sig is the IAK's ECDSA signature over H(attest);
//  2. attest is a TPM-generated structure (magic TPM_GENERATED_VALUE) of
//     type TPM_ST_ATTEST_CERTIFY, and its extraData is nonce;
//  3. the certified Name is the Name of idevidPublic (nameAlg ||
//     H_nameAlg(TPMT_PUBLIC)), and the Qualified Name is that of a primary
//     key of the endorsement hierarchy (H(TPM_RH_ENDORSEMENT || Name)), as
//     IdentityKeys makes it;
//  4. idevidPublic is an ECC P-256 or P-384 ECDSA key with fixedTPM,
//     fixedParent and sensitiveDataOrigin (created in, and never leaving,
//     this TPM), sign, and neither decrypt nor restricted (an IDevID signs
//     any digest, TCG "TPM 2.0 Keys for Device Identity and Attestation"
//     §7.3.4), its point on the curve.
//
// Every failure is a *[CertifyError] (or, for a key of the wrong kind in
// iak, an error wrapping pluton.ErrInvalidKey).
func VerifyCertify(iak crypto.PublicKey, idevidPublic, attest, sig, nonce []byte) (*ecdsa.PublicKey, error) {
	fail := func(reason error, f string, a ...any) (*ecdsa.PublicKey, error) {
		return nil, &CertifyError{Reason: reason, Detail: fmt.Sprintf(f, a...)}
	}
	pub, alg, err := attestKey(iak, "certify")
	if err != nil {
		return nil, err
	}
	if len(attest) > maxAttest || len(sig) > maxAttest || len(idevidPublic) > maxPublic {
		return fail(ErrCertifyMalformed, "attestation, signature or public area too long")
	}

	// 1. The signature.
	if e := attestSignature(pub, alg, attest, sig); e != nil {
		if e.malformed {
			return fail(ErrCertifyMalformed, "%s", e.detail)
		}
		return fail(ErrCertifySignature, "%s", e.detail)
	}

	// 2. The attestation structure, now authentic.
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](attest)
	if err != nil || !bytes.Equal(tpm2.Marshal(att), attest) {
		return fail(ErrCertifyMalformed, "TPMS_ATTEST does not parse")
	}
	if att.Magic != tpm2.TPMGeneratedValue || att.Type != tpm2.TPMSTAttestCertify {
		return fail(ErrCertifyMalformed, "not a TPM-generated certification (magic %#x, type %v)", uint32(att.Magic), att.Type)
	}
	if subtle.ConstantTimeCompare(att.ExtraData.Buffer, nonce) != 1 {
		return fail(ErrCertifyNonce, "")
	}
	info, err := att.Attested.Certify()
	if err != nil {
		return fail(ErrCertifyMalformed, "certify info: %v", err)
	}

	// 3. The names.
	area, err := tpm2.Unmarshal[tpm2.TPMTPublic](idevidPublic)
	if err != nil || !bytes.Equal(tpm2.Marshal(area), idevidPublic) {
		return fail(ErrCertifyMalformed, "the IDevID's TPMT_PUBLIC does not parse")
	}
	name, ok := objectName(area.NameAlg, idevidPublic)
	if !ok {
		return fail(ErrCertifyAttributes, "nameAlg %v", area.NameAlg)
	}
	if !bytes.Equal(info.Name.Buffer, name) {
		return fail(ErrCertifyName, "the certified Name is not the IDevID's")
	}
	qn := qualifiedName(area.NameAlg, binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRHEndorsement)), name)
	if !bytes.Equal(info.QualifiedName.Buffer, qn) {
		return fail(ErrCertifyName, "the certified key is not a primary key of the endorsement hierarchy")
	}

	// 4. What kind of key it is.
	return eccSigningKey(area, false, "")
}

// eccSigningKey checks that area is an ECDSA signing key (P-256 or P-384)
// made in the TPM and bound to it (fixedTPM, fixedParent,
// sensitiveDataOrigin), restricted (an attestation key) or not (a key that
// signs outside data), and returns its public key. Failures are
// *CertifyError wrapping ErrCertifyMalformed or ErrCertifyAttributes,
// their detail prefixed by what.
func eccSigningKey(area *tpm2.TPMTPublic, restricted bool, what string) (*ecdsa.PublicKey, error) {
	fail := func(reason error, f string, a ...any) (*ecdsa.PublicKey, error) {
		return nil, &CertifyError{Reason: reason, Detail: what + fmt.Sprintf(f, a...)}
	}
	a := area.ObjectAttributes
	switch {
	case area.Type != tpm2.TPMAlgECC:
		return fail(ErrCertifyAttributes, "key type %v, want ECC", area.Type)
	case !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin:
		return fail(ErrCertifyAttributes, "not fixedTPM, fixedParent and sensitiveDataOrigin")
	case restricted && (!a.SignEncrypt || a.Decrypt || !a.Restricted):
		return fail(ErrCertifyAttributes, "not a restricted signing key")
	case !restricted && (!a.SignEncrypt || a.Decrypt || a.Restricted):
		return fail(ErrCertifyAttributes, "not an unrestricted signing-only key")
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
