package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/pluton"
)

// NV indexes used for counters: a block of the owner range 0x01000000–
// 0x013FFFFF (TCG "Registry of Reserved TPM 2.0 Handles and Localities"
// §2.2: TPM owner indexes).
const (
	nvFirst = 0x01526C00
	nvLast  = nvFirst + 0x3FF
)

// MaxAdvance is the largest step [TPM.AdvanceCounter] takes: an NV counter
// moves by one TPM2_NV_Increment at a time, and every increment wears the
// TPM's NV memory.
const MaxAdvance = 1024

// maxRandom is the largest TPM2_GetRandom request: the TPM returns at most
// the size of its largest digest (TPM 2.0 Part 3 §16.1), 32 bytes for a
// SHA-256 TPM.
const maxRandom = 32

// Options configure [Open]. Exactly one of Transport, Address and Device
// is set.
type Options struct {
	// Transport is an open TPM connection; Close does not close it.
	Transport transport.TPM
	// Address is "host:port" of a TPM taking raw commands over TCP
	// (swtpm's command port); see [DialTCP].
	Address string
	// Device is a TPM character device, normally "/dev/tpmrm0" (the
	// kernel resource manager).
	Device string
	// StatePath is the file holding the wrapped key blobs and the
	// compartments of keys and counters. Empty: kept in memory only, lost
	// at Close (tests).
	StatePath string
	// Logger receives key and counter events (never secrets). Default:
	// discard.
	Logger *slog.Logger
}

// TPM is a TPM 2.0 as a [pluton.Subsystem]. What a TPM does:
//
//   - Random: TPM2_GetRandom.
//   - Keys: ECDSA P-256 and P-384 keys created by TPM2_Create under the
//     TCG reference ECC P-256 storage root key (SRK) of the owner
//     hierarchy, which TPM2_CreatePrimary re-derives from the owner seed.
//     UsageSign keys are unrestricted signing keys; UsageAttest keys are
//     restricted signing keys (they sign only TPM-generated structures:
//     quotes). The wrapped blobs live in the state file; a key is loaded
//     on use and at most one is kept loaded (swtpm has no resource
//     manager and holds three transient objects).
//   - Counters: NV indexes of type counter (TPM2_NV_DefineSpace,
//     TPM2_NV_Increment, TPM2_NV_Read).
//   - PCRs: [TPM.ExtendPCR], [TPM.ReadPCRs], [TPM.Quote],
//     [TPM.QuoteClaims]; sealing to PCR values: [TPM.Seal], [TPM.Unseal].
//   - Identity: the IAK and the IDevID, [TPM.IdentityKeys].
//
// What it does not: fuses (FuseIdentity, FuseRootKeyHash, RootKeyHash) and
// the DICE lifecycle (Lifecycle, Transition) fail with [ErrNotSupported].
// Identity is an attestation key (IAK) of the endorsement hierarchy; see
// [TPM.Identity].
// Ed25519 and ML-DSA-65 fail with pluton.ErrUnsupportedAlgorithm (TPM 2.0
// has neither).
//
// Authorization uses the empty password of the owner hierarchy and of the
// objects (password sessions, TPM 2.0 Part 1 §19.8.4): this package assumes
// a TPM whose owner hierarchy is not locked with a password.
type TPM struct {
	tpm     transport.TPM
	closer  io.Closer // nil when the caller owns the transport
	path    string
	log     *slog.Logger
	srk     tpm2.NamedHandle
	srkPub  tpm2.TPMTPublic // salts the sessions of Seal and Unseal
	mu      sync.Mutex      // serializes TPM commands and state changes
	closed  bool
	st      *state
	loaded  pluton.KeyHandle // key currently loaded, or 0
	loadedH tpm2.NamedHandle
	iakPub  *ecdsa.PublicKey // cached by iak
}

var _ pluton.Subsystem = (*TPM)(nil)

// Open connects to the TPM, creates the storage primary key and reads the
// state file (creating it empty if it does not exist).
func Open(ctx context.Context, o *Options) (*TPM, error) {
	if o == nil {
		return nil, fmt.Errorf("tpm: %w: nil options", pluton.ErrInvalidArgument)
	}
	set := 0
	for _, b := range []bool{o.Transport != nil, o.Address != "", o.Device != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("tpm: %w: set exactly one of Transport, Address and Device", pluton.ErrInvalidArgument)
	}
	t := &TPM{tpm: o.Transport, path: o.StatePath, log: o.Logger}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	st := newState()
	if o.StatePath != "" {
		b, err := os.ReadFile(o.StatePath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("tpm: %w", err)
		default:
			if st, err = parseState(b); err != nil {
				return nil, fmt.Errorf("%w (%s)", err, o.StatePath)
			}
		}
	}
	t.st = st
	switch {
	case o.Address != "":
		c, err := DialTCP(ctx, o.Address)
		if err != nil {
			return nil, err
		}
		t.tpm, t.closer = c, c
	case o.Device != "":
		c, err := openDevice(o.Device)
		if err != nil {
			return nil, fmt.Errorf("tpm: open %s: %w", o.Device, err)
		}
		t.tpm, t.closer = c, c
	}
	t.tpm = retryTPM{tpm: t.tpm}
	if err := t.createSRK(); err != nil {
		t.closeTransport()
		return nil, err
	}
	if o.StatePath != "" {
		if err := t.save(st); err != nil {
			t.flush(t.srk.Handle)
			t.closeTransport()
			return nil, err
		}
	}
	return t, nil
}

// createSRK runs TPM2_CreatePrimary with the TCG reference ECC P-256 SRK
// template (TCG TPM v2.0 Provisioning Guidance §7.5.1): the same owner
// seed gives the same key every time, so key blobs wrapped under it load
// after a restart.
func (t *TPM) createSRK() error {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t.tpm)
	if err != nil {
		return cmdErr(tpm2.TPMCCCreatePrimary, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.flush(rsp.ObjectHandle)
		return fmt.Errorf("tpm: SRK: %w", err)
	}
	t.srk, t.srkPub = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, *pub
	return nil
}

func (t *TPM) flush(h tpm2.TPMHandle) error {
	_, err := tpm2.FlushContext{FlushHandle: h}.Execute(t.tpm)
	return cmdErr(tpm2.TPMCCFlushContext, err)
}

func (t *TPM) closeTransport() {
	if t.closer != nil {
		t.closer.Close()
	}
}

// Close flushes the objects this TPM loaded and closes the connection it
// opened.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("tpm: %w", pluton.ErrClosed)
	}
	t.closed = true
	var errs []error
	if t.loaded != 0 {
		errs = append(errs, t.flush(t.loadedH.Handle))
		t.loaded = 0
	}
	errs = append(errs, t.flush(t.srk.Handle))
	if t.closer != nil {
		errs = append(errs, t.closer.Close())
	}
	return errors.Join(errs...)
}

// lock takes the mutex and checks the TPM is open and ctx is live.
func (t *TPM) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("tpm: %w", pluton.ErrClosed)
	}
	return nil
}

// save writes s to the state file and makes it current.
func (t *TPM) save(s *state) error {
	if t.path != "" {
		b, err := s.marshal()
		if err != nil {
			return fmt.Errorf("tpm: %w", err)
		}
		if err := atomicfile.Write(t.path, b, 0o600); err != nil {
			return fmt.Errorf("tpm: writing state: %w", err)
		}
	}
	t.st = s
	return nil
}

// Random fills p with TPM2_GetRandom output, at most maxRandom bytes per
// command (TPM 2.0 Part 3 §16.1).
func (t *TPM) Random(ctx context.Context, p []byte) error {
	if err := t.lock(ctx); err != nil {
		return err
	}
	defer t.mu.Unlock()
	for len(p) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		rsp, err := tpm2.GetRandom{BytesRequested: uint16(min(len(p), maxRandom))}.Execute(t.tpm)
		if err != nil {
			return cmdErr(tpm2.TPMCCGetRandom, err)
		}
		if len(rsp.RandomBytes.Buffer) == 0 {
			return fmt.Errorf("tpm: TPM2_GetRandom returned no bytes")
		}
		n := copy(p, rsp.RandomBytes.Buffer)
		p = p[n:]
	}
	return nil
}

// FuseIdentity fails with [ErrNotSupported]: a TPM has no write-once
// fuses. Its identity is the endorsement seed, set by its manufacturer.
func (t *TPM) FuseIdentity(context.Context) error { return notSupported("FuseIdentity") }

// FuseRootKeyHash fails with [ErrNotSupported]: a TPM does not verify the
// boot image; the platform's firmware does, and measures into PCRs.
func (t *TPM) FuseRootKeyHash(context.Context, []byte) error {
	return notSupported("FuseRootKeyHash")
}

// RootKeyHash fails with [ErrNotSupported].
func (t *TPM) RootKeyHash(context.Context) ([]byte, error) {
	return nil, notSupported("RootKeyHash")
}

// Identity returns the TPM's identity. A TPM has no DICE DeviceID; its
// place is taken by an attestation identity key (IAK) after TCG "TPM 2.0
// Keys for Device Identity and Attestation": a restricted ECDSA P-256
// signing key, primary in the endorsement hierarchy, so the same after
// every restart (see iakTemplate in the source for how it differs from
// the TCG template). It is also key [pluton.DeviceIDHandle] of the
// SecurityMonitor compartment, with UsageAttest (not UsageSign as in
// pluton/soft: a restricted key signs only quotes, [TPM.Quote]). The UEID
// is derived from the IAK public key. The IDevID and the IAK's
// certification of it are [TPM.IdentityKeys]. Not done: the
// manufacturer's IAK and IDevID certificates (read from the TPM's NV or
// the platform).
func (t *TPM) Identity(ctx context.Context) (*pluton.Identity, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	pub, err := t.iak()
	if err != nil {
		return nil, err
	}
	id, err := ueid(pub)
	if err != nil {
		return nil, err
	}
	return &pluton.Identity{UEID: id, Algorithm: pluton.ECDSAP256, DeviceID: pub}, nil
}

// Lifecycle fails with [ErrNotSupported]: a TPM has no DICE lifecycle.
func (t *TPM) Lifecycle(context.Context) (pluton.Lifecycle, error) {
	return 0, notSupported("Lifecycle")
}

// Transition fails with [ErrNotSupported].
func (t *TPM) Transition(context.Context, pluton.Lifecycle) error {
	return notSupported("Transition")
}

func notSupported(op string) error { return fmt.Errorf("%w: %s", ErrNotSupported, op) }

// keyTemplate is an ECC signing key: fixedTPM and fixedParent (it never
// leaves this TPM), sensitiveDataOrigin (the TPM drew the private key),
// userWithAuth with an empty password, noDA; restricted for attestation
// keys (TPM 2.0 Part 1 §25.2: a restricted signing key signs only digests
// that the TPM computed, so it cannot sign a forged TPMS_ATTEST).
func keyTemplate(alg pluton.Algorithm, usage pluton.Usage) (tpm2.TPMTPublic, error) {
	var curve tpm2.TPMECCCurve
	var hash tpm2.TPMIAlgHash
	switch alg {
	case pluton.ECDSAP256:
		curve, hash = tpm2.TPMECCNistP256, tpm2.TPMAlgSHA256
	case pluton.ECDSAP384:
		curve, hash = tpm2.TPMECCNistP384, tpm2.TPMAlgSHA384
	default:
		return tpm2.TPMTPublic{}, fmt.Errorf("tpm: %w: %v (a TPM 2.0 has ECDSA P-256 and P-384)", pluton.ErrUnsupportedAlgorithm, alg)
	}
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, NoDA: true, SignEncrypt: true,
			Restricted: usage == pluton.UsageAttest,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: hash}),
			},
			CurveID: curve,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}, nil
}

// publicKeyOf decodes an untrusted TPM2B_PUBLIC and checks it is an ECC key
// of alg.
func publicKeyOf(b []byte, alg pluton.Algorithm) (*ecdsa.PublicKey, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](b)
	if err != nil {
		return nil, fmt.Errorf("TPM2B_PUBLIC: %v", err)
	}
	pt, err := pub.Contents()
	if err != nil {
		return nil, fmt.Errorf("TPMT_PUBLIC: %v", err)
	}
	if pt.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("key type %v is not ECC", pt.Type)
	}
	parms, err := pt.Parameters.ECCDetail()
	if err != nil {
		return nil, err
	}
	point, err := pt.Unique.ECC()
	if err != nil {
		return nil, err
	}
	k, err := tpm2.ECDSAPub(parms, point)
	if err != nil {
		return nil, err
	}
	if _, err := k.ECDH(); err != nil { // checks the point is on the curve
		return nil, fmt.Errorf("ECC point: %v", err)
	}
	if got, err := pluton.AlgorithmOf(k); err != nil || got != alg {
		return nil, fmt.Errorf("key is not %v", alg)
	}
	return k, nil
}

func (k *keyEntry) info() (*pluton.KeyInfo, error) {
	alg, _ := pluton.ParseAlgorithm(k.Algorithm)
	usage, _ := pluton.ParseUsage(k.Usage)
	pub, err := publicKeyOf(k.Public, alg)
	if err != nil {
		return nil, fmt.Errorf("tpm: %v: %w", k.Handle, err)
	}
	return &pluton.KeyInfo{Handle: k.Handle, Compartment: k.Compartment, Algorithm: alg,
		Usage: usage, Label: k.Label, Public: pub}, nil
}

// GenerateKey creates an ECDSA key with TPM2_Create under the SRK, runs a
// pairwise-consistency test (a TPM2_Sign verified in software) and records
// the wrapped blobs in the state file.
func (t *TPM) GenerateKey(ctx context.Context, req *pluton.KeyRequest) (*pluton.KeyInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("tpm: generate key: %w", err)
	}
	tmpl, err := keyTemplate(req.Algorithm, req.Usage)
	if err != nil {
		return nil, err
	}
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	if len(t.st.Keys) >= maxKeys {
		return nil, fmt.Errorf("tpm: generate key: %w (%d keys)", pluton.ErrSlotsFull, maxKeys)
	}
	if t.st.NextHandle == 1<<32-1 {
		return nil, fmt.Errorf("tpm: generate key: %w (handles exhausted)", pluton.ErrSlotsFull)
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: t.srk.Handle, Name: t.srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     tpm2.New2B(tmpl),
	}.Execute(t.tpm)
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCCreate, err)
	}
	k := keyEntry{Handle: pluton.KeyHandle(t.st.NextHandle), Compartment: req.Compartment,
		Algorithm: req.Algorithm.String(), Usage: req.Usage.String(), Label: req.Label,
		Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate)}
	info, err := k.info()
	if err != nil {
		return nil, err
	}
	if err := t.pairwiseTest(&k, info); err != nil {
		return nil, err
	}
	s := t.st.clone()
	s.NextHandle++
	s.Keys = append(s.Keys, k)
	if err := t.save(s); err != nil {
		// The key stays loaded under a handle number that the next
		// GenerateKey hands out again: flush it.
		return nil, errors.Join(err, t.unload())
	}
	t.log.Info("tpm key generated", "handle", uint32(info.Handle), "compartment", string(info.Compartment), "alg", info.Algorithm, "usage", info.Usage)
	return info, nil
}

// pairwiseTest signs a random digest with the new key and verifies it
// (FIPS 140-3 IG 10.3.A). A restricted key cannot sign an outside digest;
// it is tested by loading it and comparing the public key the TPM reports.
func (t *TPM) pairwiseTest(k *keyEntry, info *pluton.KeyInfo) error {
	h, err := t.load(k)
	if err != nil {
		return err
	}
	if info.Usage == pluton.UsageAttest {
		return nil
	}
	digest := make([]byte, info.Algorithm.Hash().Size())
	rand.Read(digest)
	sig, err := t.sign(h, info.Algorithm, digest)
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(info.Public.(*ecdsa.PublicKey), digest, sig) {
		return fmt.Errorf("tpm: generate key: %w: pairwise-consistency test", pluton.ErrSelfTest)
	}
	return nil
}

// load makes k the loaded key, flushing the one loaded before (so that
// with the SRK at most two of our transient objects are in the TPM).
func (t *TPM) load(k *keyEntry) (tpm2.NamedHandle, error) {
	if t.loaded != 0 && t.loaded == k.Handle {
		return t.loadedH, nil
	}
	if err := t.unload(); err != nil {
		return tpm2.NamedHandle{}, err
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](k.Public)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("tpm: %v: %w", k.Handle, err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](k.Private)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("tpm: %v: %w", k.Handle, err)
	}
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: t.srk.Handle, Name: t.srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(t.tpm)
	if err != nil {
		return tpm2.NamedHandle{}, cmdErr(tpm2.TPMCCLoad, err)
	}
	t.loaded, t.loadedH = k.Handle, tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	return t.loadedH, nil
}

func (t *TPM) unload() error {
	if t.loaded == 0 {
		return nil
	}
	t.loaded = 0
	return t.flush(t.loadedH.Handle)
}

func tpmHash(alg pluton.Algorithm) tpm2.TPMIAlgHash {
	if alg == pluton.ECDSAP384 {
		return tpm2.TPMAlgSHA384
	}
	return tpm2.TPMAlgSHA256
}

// sign runs TPM2_Sign (TPM 2.0 Part 3 §20.2) with the ECDSA scheme and a
// NULL hashcheck ticket (allowed for an unrestricted key), and encodes r
// and s as an ASN.1 DER ECDSA-Sig-Value.
func (t *TPM) sign(h tpm2.NamedHandle, alg pluton.Algorithm, digest []byte) ([]byte, error) {
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpmHash(alg)}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(t.tpm)
	if err != nil {
		return nil, cmdErr(tpm2.TPMCCSign, err)
	}
	return ecdsaDER(alg, &rsp.Signature)
}

func ecdsaDER(alg pluton.Algorithm, sig *tpm2.TPMTSignature) ([]byte, error) {
	e, err := sig.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpm: signature: %w", err)
	}
	n := (alg.Hash().Size()) // 32 for P-256, 48 for P-384: the scalar size
	r, s := e.SignatureR.Buffer, e.SignatureS.Buffer
	if len(r) > n || len(s) > n {
		return nil, fmt.Errorf("tpm: signature: r or s longer than %d bytes", n)
	}
	raw := make([]byte, 2*n)
	copy(raw[n-len(r):n], r)
	copy(raw[2*n-len(s):], s)
	return pluton.ECDSASignatureFromP1363(alg, raw)
}

// entry finds key h for compartment cm.
func (t *TPM) entry(cm pluton.Compartment, h pluton.KeyHandle) (*keyEntry, error) {
	if err := cm.Validate(); err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	i := slices.IndexFunc(t.st.Keys, func(k keyEntry) bool { return k.Handle == h })
	if i < 0 {
		return nil, fmt.Errorf("tpm: %v: %w", h, pluton.ErrNoSuchKey)
	}
	k := &t.st.Keys[i]
	if k.Compartment != cm {
		return nil, &pluton.CompartmentError{Caller: cm, Owner: k.Compartment, Object: h.String()}
	}
	return k, nil
}

// Key describes key h of compartment cm.
func (t *TPM) Key(ctx context.Context, cm pluton.Compartment, h pluton.KeyHandle) (*pluton.KeyInfo, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	if h == pluton.DeviceIDHandle {
		if err := iakOwner(cm); err != nil {
			return nil, err
		}
		pub, err := t.iak()
		if err != nil {
			return nil, err
		}
		return iakInfo(pub), nil
	}
	k, err := t.entry(cm, h)
	if err != nil {
		return nil, err
	}
	return k.info()
}

// iakOwner checks that cm may use the IAK (key [pluton.DeviceIDHandle]).
func iakOwner(cm pluton.Compartment) error {
	if err := cm.Validate(); err != nil {
		return fmt.Errorf("tpm: %w", err)
	}
	if cm != pluton.SecurityMonitor {
		return &pluton.CompartmentError{Caller: cm, Owner: pluton.SecurityMonitor, Object: "the identity key (IAK)"}
	}
	return nil
}

// Keys lists the keys of compartment cm.
func (t *TPM) Keys(ctx context.Context, cm pluton.Compartment) ([]*pluton.KeyInfo, error) {
	if err := cm.Validate(); err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	var out []*pluton.KeyInfo
	if cm == pluton.SecurityMonitor {
		pub, err := t.iak()
		if err != nil {
			return nil, err
		}
		out = append(out, iakInfo(pub))
	}
	for i := range t.st.Keys {
		if t.st.Keys[i].Compartment != cm {
			continue
		}
		info, err := t.st.Keys[i].info()
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Signer returns a crypto.Signer whose Sign runs TPM2_Sign. Only UsageSign
// keys have one (attestation keys are restricted: [TPM.Quote]).
func (t *TPM) Signer(ctx context.Context, cm pluton.Compartment, h pluton.KeyHandle) (crypto.Signer, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	if h == pluton.DeviceIDHandle {
		if err := iakOwner(cm); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("tpm: the identity key (IAK) is restricted and signs only quotes: %w", pluton.ErrUsage)
	}
	k, err := t.entry(cm, h)
	if err != nil {
		return nil, err
	}
	info, err := k.info()
	if err != nil {
		return nil, err
	}
	if info.Usage != pluton.UsageSign {
		return nil, fmt.Errorf("tpm: %v has usage %v: %w", h, info.Usage, pluton.ErrUsage)
	}
	return &signer{t: t, compartment: cm, info: info}, nil
}

// DestroyKey forgets key h: its wrapped blob is removed from the state
// file and the key flushed if loaded. A TPM cannot revoke a wrapped blob:
// a copy of the old state file still loads under the same SRK until the
// owner hierarchy is cleared (TPM2_Clear changes the owner seed).
func (t *TPM) DestroyKey(ctx context.Context, cm pluton.Compartment, h pluton.KeyHandle) error {
	if err := t.lock(ctx); err != nil {
		return err
	}
	defer t.mu.Unlock()
	if h == pluton.DeviceIDHandle {
		return fmt.Errorf("tpm: %w: the identity key (IAK) derives from the endorsement seed and cannot be destroyed", pluton.ErrInvalidArgument)
	}
	if _, err := t.entry(cm, h); err != nil {
		return err
	}
	if t.loaded == h {
		if err := t.unload(); err != nil {
			return err
		}
	}
	s := t.st.clone()
	s.Keys = slices.DeleteFunc(s.Keys, func(k keyEntry) bool { return k.Handle == h })
	if err := t.save(s); err != nil {
		return err
	}
	t.log.Info("tpm key destroyed", "handle", uint32(h), "compartment", string(cm))
	return nil
}

type signer struct {
	t           *TPM
	compartment pluton.Compartment
	info        *pluton.KeyInfo
}

func (s *signer) Public() crypto.PublicKey { return s.info.Public }

// Sign signs digest (the hash of the algorithm's hash function) with
// TPM2_Sign, after checking again that the key exists and belongs to the
// signer's compartment. The signature is ASN.1 DER.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg := s.info.Algorithm
	if opts == nil || opts.HashFunc() != alg.Hash() {
		return nil, fmt.Errorf("tpm: %w: %v signs %v digests", pluton.ErrInvalidArgument, alg, alg.Hash())
	}
	if len(digest) != alg.Hash().Size() {
		return nil, fmt.Errorf("tpm: %w: digest is %d bytes, want %d", pluton.ErrInvalidArgument, len(digest), alg.Hash().Size())
	}
	t := s.t
	if err := t.lock(context.Background()); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	k, err := t.entry(s.compartment, s.info.Handle)
	if err != nil {
		return nil, err
	}
	h, err := t.load(k)
	if err != nil {
		return nil, err
	}
	return t.sign(h, alg, digest)
}
