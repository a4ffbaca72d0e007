package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
)

// MaxSealSize is the largest secret [TPM.Seal] takes: the data of a sealed
// object is a TPM2B_SENSITIVE_DATA of at most MAX_SYM_DATA bytes, 128
// (TPM 2.0 Part 2 §11.1.14, Part 2 Annex A).
const MaxSealSize = 128

// sealMagic and sealVersion start every sealed blob.
const (
	sealMagic   = "rootline tpm sealed"
	sealVersion = 1
	maxSealBlob = len(sealMagic) + 1 + 3*(2+maxBlob)
)

// SealRequest says which PCRs a secret is sealed to.
type SealRequest struct {
	// Bank is the PCR bank: crypto.SHA1, SHA256, SHA384 or SHA512.
	Bank crypto.Hash
	// PCRs are the PCR indexes (0 to 23 on a PC Client TPM), at least one.
	PCRs []int
	// Values, if not nil, are the PCR values to seal to, one per index of
	// PCRs, each of Bank's size: for example the values the PCRs will hold
	// after an update. If nil, the values the PCRs hold now.
	Values map[int][]byte
}

// Seal seals secret (1 to [MaxSealSize] bytes) to PCR values: it creates a
// sealed data object (TPM2_Create, TPM 2.0 Part 3 §12.1, a keyedHash
// object with the secret as its sensitive data) under the SRK whose
// authPolicy is a TPM2_PolicyPCR over req's PCRs and values, and no
// userWithAuth, so only a policy session in which the PCRs hold those
// values can read it back (Part 1 §19.7.8, "Sealed Data Objects"). The
// object is fixedTPM and fixedParent: the blob unseals only on this TPM,
// while its owner seed is unchanged.
//
// The result is a versioned blob for [TPM.Unseal]: "rootline tpm sealed",
// version 1, then the TPML_PCR_SELECTION, the TPM2B_PUBLIC and the
// TPM2B_PRIVATE, each preceded by its length (2 bytes, big-endian). The
// blob is not secret (the private part is encrypted under the SRK) but it
// is bound to the policy, not to a compartment: anyone who can send
// commands to this TPM while the PCRs hold the values can unseal it.
//
// The secret crosses the wire to the TPM encrypted: the TPM2_Create runs
// with an HMAC session salted to the SRK that encrypts its first parameter
// (AES-128-CFB, Part 1 §21.2).
func (t *TPM) Seal(ctx context.Context, secret []byte, req *SealRequest) ([]byte, error) {
	if len(secret) == 0 || len(secret) > MaxSealSize {
		return nil, fmt.Errorf("tpm: seal: %w: secret of %d bytes (1 to %d)", pluton.ErrInvalidArgument, len(secret), MaxSealSize)
	}
	if req == nil || len(req.PCRs) == 0 {
		return nil, fmt.Errorf("tpm: seal: %w: no PCR", pluton.ErrInvalidArgument)
	}
	alg, err := tpmAlg(req.Bank)
	if err != nil {
		return nil, err
	}
	idx := slices.Clone(req.PCRs)
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		if err := checkIndex(i); err != nil {
			return nil, err
		}
	}
	if req.Values != nil {
		if len(req.Values) != len(idx) {
			return nil, fmt.Errorf("tpm: seal: %w: %d values for %d PCRs", pluton.ErrInvalidArgument, len(req.Values), len(idx))
		}
		for _, i := range idx {
			if v, ok := req.Values[i]; !ok || len(v) != req.Bank.Size() {
				return nil, fmt.Errorf("tpm: seal: %w: no %v value of PCR %d", pluton.ErrInvalidArgument, req.Bank, i)
			}
		}
	}
	sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{selection(alg, idx)}}
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	vals := req.Values
	if vals == nil {
		// readPCRs consumes its slice.
		if vals, err = t.readPCRs(req.Bank, alg, slices.Clone(idx)); err != nil {
			return nil, err
		}
	}
	policy := pcrPolicy(sel, idx, vals)
	sess, closeSess, err := tpm2.HMACSession(t.tpm, tpm2.TPMAlgSHA256, 16,
		tpm2.AESEncryption(128, tpm2.EncryptIn), tpm2.Salted(t.srk.Handle, t.srkPub))
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCStartAuthSession, err)
	}
	defer closeSess()
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: t.srk.Handle, Name: t.srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InSensitive:  tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret})}},
		InPublic:     tpm2.New2B(sealTemplate(policy)),
	}.Execute(t.tpm, sess)
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCCreate, err)
	}
	var b []byte
	b = append(b, sealMagic...)
	b = append(b, sealVersion)
	for _, part := range [][]byte{tpm2.Marshal(sel), tpm2.Marshal(rsp.OutPublic), tpm2.Marshal(rsp.OutPrivate)} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(part)))
		b = append(b, part...)
	}
	t.log.Info("tpm secret sealed", "bank", req.Bank.String(), "pcrs", idx)
	return b, nil
}

// sealTemplate is a sealed data object (TPM 2.0 Part 1 §27.2.5): a
// keyedHash object with a NULL scheme, fixedTPM and fixedParent, without
// sensitiveDataOrigin (the caller gives the data), without userWithAuth
// and with adminWithPolicy (only the policy authorizes it), noDA.
func sealTemplate(policy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, AdminWithPolicy: true, NoDA: true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
}

// pcrPolicy computes the policy digest of one TPM2_PolicyPCR in a SHA-256
// policy session (TPM 2.0 Part 3 §23.7.1): pcrDigest = SHA-256 of the PCR
// values concatenated in selection order (lowest index first), then
// policyDigest_new = SHA-256(policyDigest_old || TPM_CC_PolicyPCR ||
// pcrs || pcrDigest), from policyDigest_old = 32 zero bytes.
func pcrPolicy(sel tpm2.TPMLPCRSelection, idx []int, vals map[int][]byte) []byte {
	h := sha256.New()
	for _, i := range idx {
		h.Write(vals[i])
	}
	pcrDigest := h.Sum(nil)
	h.Reset()
	h.Write(make([]byte, sha256.Size))
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMCCPolicyPCR)))
	h.Write(tpm2.Marshal(sel))
	h.Write(pcrDigest)
	return h.Sum(nil)
}

// sealedBlob is a parsed sealed blob.
type sealedBlob struct {
	sel     tpm2.TPMLPCRSelection
	public  tpm2.TPM2BPublic
	private tpm2.TPM2BPrivate
}

// parseSealed parses an untrusted sealed blob. Errors wrap ErrSealedBlob.
func parseSealed(b []byte) (*sealedBlob, error) {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrSealedBlob}, a...)...) }
	if len(b) > maxSealBlob {
		return nil, bad("%d bytes (at most %d)", len(b), maxSealBlob)
	}
	rest, ok := bytes.CutPrefix(b, []byte(sealMagic))
	if !ok || len(rest) == 0 {
		return nil, bad("not a sealed blob")
	}
	if rest[0] != sealVersion {
		return nil, bad("version %d (want %d)", rest[0], sealVersion)
	}
	rest = rest[1:]
	var parts [3][]byte
	for i := range parts {
		if len(rest) < 2 {
			return nil, bad("truncated")
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n == 0 || n > maxBlob || len(rest) < 2+n {
			return nil, bad("part %d of %d bytes", i, n)
		}
		parts[i], rest = rest[2:2+n], rest[2+n:]
	}
	if len(rest) != 0 {
		return nil, bad("trailing data")
	}
	var s sealedBlob
	sel, err := tpm2.Unmarshal[tpm2.TPMLPCRSelection](parts[0])
	if err != nil || !bytes.Equal(tpm2.Marshal(sel), parts[0]) {
		return nil, bad("TPML_PCR_SELECTION does not parse")
	}
	if len(sel.PCRSelections) != 1 || len(sel.PCRSelections[0].PCRSelect) == 0 || len(sel.PCRSelections[0].PCRSelect) > (maxPCR+1)/8 {
		return nil, bad("PCR selection of %d banks", len(sel.PCRSelections))
	}
	if !slices.ContainsFunc(sel.PCRSelections[0].PCRSelect, func(b byte) bool { return b != 0 }) {
		return nil, bad("no PCR selected")
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](parts[1])
	if err != nil || !bytes.Equal(tpm2.Marshal(pub), parts[1]) {
		return nil, bad("TPM2B_PUBLIC does not parse")
	}
	area, err := pub.Contents()
	if err != nil || area.Type != tpm2.TPMAlgKeyedHash || area.ObjectAttributes.UserWithAuth || len(area.AuthPolicy.Buffer) == 0 {
		return nil, bad("not a sealed data object with a policy")
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](parts[2])
	if err != nil || !bytes.Equal(tpm2.Marshal(priv), parts[2]) {
		return nil, bad("TPM2B_PRIVATE does not parse")
	}
	s.sel, s.public, s.private = *sel, *pub, *priv
	return &s, nil
}

// Unseal returns the secret of a blob made by [TPM.Seal] on this TPM, if
// the PCRs hold the values it was sealed to. It loads the sealed object
// under the SRK (TPM2_Load), starts a policy session salted to the SRK
// whose responses are encrypted (the secret does not cross the wire in
// clear), runs TPM2_PolicyPCR over the blob's PCR selection, in which the
// TPM hashes the PCRs' current values into the session's policy digest,
// and TPM2_Unseal (Part 3 §12.7), which the TPM refuses with
// TPM_RC_POLICY_FAIL unless that digest is the object's authPolicy.
//
// blob is untrusted: a malformed one fails with [ErrSealedBlob] before
// reaching the TPM. PCRs that moved fail with an error wrapping
// [ErrPolicy] that is also a *[CommandError] of TPM2_Unseal (errors.Is(err,
// tpm2.TPMRCPolicyFail)). The caller wipes the secret (clear) when done.
func (t *TPM) Unseal(ctx context.Context, blob []byte) ([]byte, error) {
	s, err := parseSealed(blob)
	if err != nil {
		return nil, err
	}
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	if err := t.unload(); err != nil {
		return nil, err
	}
	lrsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: t.srk.Handle, Name: t.srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    s.private,
		InPublic:     s.public,
	}.Execute(t.tpm)
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCLoad, err)
	}
	defer t.flush(lrsp.ObjectHandle)
	sess, closeSess, err := tpm2.PolicySession(t.tpm, tpm2.TPMAlgSHA256, 16,
		tpm2.AESEncryption(128, tpm2.EncryptOut), tpm2.Salted(t.srk.Handle, t.srkPub))
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCStartAuthSession, err)
	}
	defer closeSess()
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: s.sel}).Execute(t.tpm); err != nil {
		return nil, cmdErr(tpm2.TPMCCPolicyPCR, err)
	}
	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: lrsp.ObjectHandle, Name: lrsp.Name, Auth: sess},
	}.Execute(t.tpm)
	if errors.Is(err, tpm2.TPMRCPolicyFail) {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, cmdErr(tpm2.TPMCCUnseal, err))
	}
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCUnseal, err)
	}
	return rsp.OutData.Buffer, nil
}
