package soft

// Injected identity (DESIGN.md, "The factory flow"): the chip shows an ECDH
// transport key, proved by its DeviceID; the factory HSM wraps a device key
// or a per-device secret to it; the chip unwraps and installs it.
//
// The transport key. For each curve, the private key is derived from the
// UDS under its own label, and is used for nothing but unwrapping:
//
//	seed = HMAC-SHA-256(UDS, "rootline/pluton transport-key v1" || 0x00 || alg)
//	key  = dice.KeyPair(seed, ECDSA P-256 or P-384)   (used as an ECDH key)
//
// The label differs from every other UDS derivation (the DICE CDIs use
// HKDF and the Open DICE labels), so the transport key is independent of
// the DeviceID and of every sealing key. It is not in a key slot, cannot
// sign, and is recomputed when needed, never stored.
//
// The transport statement, signed by the DeviceID key (its algorithm's
// digest and signature, as [pluton.Verify] checks), is this deterministic
// CBOR map (RFC 8949, §4.2.1):
//
//	{ 1: "rootline/pluton transport-key v1",  ; context
//	  2: alg,                                  ; 1 = ECDH P-256, 2 = ECDH P-384
//	  3: bstr,                                 ; the public key, SEC 1 uncompressed point
//	  4: bstr,                                 ; the service's nonce, 8 to 64 bytes
//	  5: bstr }                                ; the chip's UEID
//
// The wrapped blob ([WrappedBlob]) is a deterministic CBOR map too:
//
//	{ 1: 1,        ; format version
//	  2: kind,     ; 1 = signing key, 2 = secret
//	  3: alg,      ; transport curve, as above
//	  4: kdf,      ; 1 = KDFECDHAESECB (below)
//	  5: bstr,     ; UEID of the chip it is for
//	  6: tstr,     ; name: the key's label or the secret's name, 1-64 of [a-z0-9._-]
//	  ? 7: uint,   ; key algorithm (kind 1): 1 = ECDSA P-256, 2 = ECDSA P-384
//	  8: bstr,     ; the HSM's ephemeral public key, SEC 1 uncompressed point
//	  9: bstr }    ; the wrapped key, RFC 5649
//
// KDF 1 (KDFECDHAESECB) is what the HSM can do inside the token when it
// offers only raw ECDH (SoftHSM2: CKM_ECDH1_DERIVE with CKD_NULL only),
// see the hsm package documentation:
//
//	Z    = ECDH(transport, ephemeral): the x-coordinate, SEC 1, 3.3.1
//	KZ   = the last 32 bytes of Z, as an AES-256 key
//	info = "rootline/inject v1" || 0x00 || kdf || kind || alg || keyalg
//	       || len16(UEID) || UEID || len16(name) || name
//	       || len16(ephemeral) || ephemeral || len16(transport) || transport
//	KEK  = AES-256-ECB(KZ, SHA-256(info))     (CKM_AES_ECB_ENCRYPT_DATA)
//	key  = RFC 5649 unwrap of the wrapped bytes under KEK
//
// (one-byte fields; len16 is a big-endian uint16; keyalg is 0 for a
// secret). The chip builds info from its own UEID and transport key, so a
// blob wrapped for another chip, or altered anywhere, fails the RFC 5649
// integrity check. A key unwraps to its PKCS#8 PrivateKeyInfo (RFC 5208),
// as PKCS#11 tokens wrap private keys; a secret to its bytes.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/rootline/rootline/internal/strictcbor"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/internal/keys"
	"github.com/rootline/rootline/pluton/internal/keywrap"
)

// Errors of identity injection. They come wrapped in an *[InjectError].
var (
	// ErrBlobMalformed: the blob or statement does not parse, or names
	// something this chip does not support.
	ErrBlobMalformed = errors.New("soft: malformed injection blob")
	// ErrWrongChip: the blob was made for another chip (its UEID, or its
	// binding to this chip's transport key, does not match).
	ErrWrongChip = errors.New("soft: blob is for another chip")
	// ErrUnwrap: the wrapped key fails its integrity check: altered, or
	// wrapped to another transport key.
	ErrUnwrap = errors.New("soft: wrapped key does not unwrap")
	// ErrKeyMismatch: the unwrapped key is not the one expected (its
	// public key differs from the certificate's), or not of the algorithm
	// the blob names.
	ErrKeyMismatch = errors.New("soft: installed key is not the expected key")
	// ErrAlreadyInjected: a different blob was already installed under
	// this name and compartment.
	ErrAlreadyInjected = errors.New("soft: another key or secret was already injected here")
	// ErrStatement: a transport statement does not verify.
	ErrStatement = errors.New("soft: transport statement does not verify")
	// ErrNoSuchSecret: no secret slot has this name.
	ErrNoSuchSecret = errors.New("soft: no such secret")
)

// InjectError says why an injection blob or transport statement was
// refused. Err is one of the sentinels above (or a lifecycle/compartment
// error); nothing was installed.
type InjectError struct {
	Op     string // "install key", "install secret", "verify statement"
	Reason string
	Err    error
}

func (e *InjectError) Error() string {
	return fmt.Sprintf("soft: %s: %v: %s", e.Op, e.Err, e.Reason)
}

func (e *InjectError) Unwrap() error { return e.Err }

// TransportAlgorithm names the curve of a transport key.
type TransportAlgorithm uint8

const (
	TransportP256 TransportAlgorithm = 1 // ECDH over NIST P-256
	TransportP384 TransportAlgorithm = 2 // ECDH over NIST P-384
)

func (a TransportAlgorithm) String() string {
	switch a {
	case TransportP256:
		return "ecdh-p256"
	case TransportP384:
		return "ecdh-p384"
	}
	return fmt.Sprintf("TransportAlgorithm(%d)", uint8(a))
}

func (a TransportAlgorithm) curve() ecdh.Curve {
	switch a {
	case TransportP256:
		return ecdh.P256()
	case TransportP384:
		return ecdh.P384()
	}
	return nil
}

func (a TransportAlgorithm) diceAlg() pluton.Algorithm {
	if a == TransportP384 {
		return pluton.ECDSAP384
	}
	return pluton.ECDSAP256
}

// BlobKind says what a blob carries.
type BlobKind uint8

const (
	BlobKey    BlobKind = 1 // a signing key, installed in a key slot
	BlobSecret BlobKind = 2 // a symmetric secret, installed in a secret slot
)

// KDF names the derivation of the wrapping key.
type KDF uint8

// KDFECDHAESECB is raw ECDH, then AES-256-ECB of SHA-256(info) under the
// last 32 bytes of the shared secret Z:
//
//	KEK = AES-256(Z[len-32:], D[0:16]) || AES-256(Z[len-32:], D[16:32]),  D = SHA-256(info)
//
// where info binds the format, the kind, both curves, the UEID, the name
// and both public keys (the format is specified at the top of inject.go,
// and in the hsm package documentation, which does the HSM's side).
const KDFECDHAESECB KDF = 1

const (
	transportContext = "rootline/pluton transport-key v1"
	transportLabel   = "rootline/pluton transport-key v1"
	infoContext      = "rootline/inject v1"
	blobVersion      = 1

	minNonce, maxNonce = 8, 64
	maxBlob            = 4096
	maxWrapped         = 1024
	minSecret          = 16
	maxSecret          = 64
	maxSecrets         = 32
	maxInjected        = 64
)

var injectNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

var blobDecMode = strictcbor.DecMode(strictcbor.Limits{MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16})

// TransportKey is a chip's transport public key with its proof.
type TransportKey struct {
	Algorithm TransportAlgorithm
	Public    *ecdh.PublicKey
	// Statement is the deterministic CBOR statement the DeviceID key
	// signed, and Signature that signature (ASN.1 DER for ECDSA).
	Statement []byte
	Signature []byte
}

type transportStatement struct {
	Context   string             `cbor:"1,keyasint"`
	Algorithm TransportAlgorithm `cbor:"2,keyasint"`
	Public    []byte             `cbor:"3,keyasint"`
	Nonce     []byte             `cbor:"4,keyasint"`
	UEID      []byte             `cbor:"5,keyasint"`
}

// transportPrivate derives the transport private key of alg from the UDS.
func transportPrivate(uds []byte, alg TransportAlgorithm) (*ecdh.PrivateKey, error) {
	if alg.curve() == nil {
		return nil, fmt.Errorf("soft: transport key: %w: %v", pluton.ErrUnsupportedAlgorithm, alg)
	}
	if len(uds) != udsLen {
		return nil, fmt.Errorf("soft: transport key: %w", pluton.ErrFuseNotWritten)
	}
	mac := hmac.New(sha256.New, uds)
	mac.Write([]byte(transportLabel))
	mac.Write([]byte{0, byte(alg)})
	seed := mac.Sum(nil)
	defer clear(seed)
	s, err := dice.KeyPair(seed, alg.diceAlg())
	if err != nil {
		return nil, fmt.Errorf("soft: transport key: %w", err)
	}
	k, ok := s.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("soft: transport key: unexpected key type")
	}
	return k.ECDH()
}

// TransportKey returns the chip's transport public key for alg and a
// statement over it and nonce (8 to 64 bytes, the service's), signed by
// the DeviceID key. The key is the same on every call; the chip must be
// in a lifecycle state where keys are usable.
func (c *Chip) TransportKey(ctx context.Context, alg TransportAlgorithm, nonce []byte) (*TransportKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(nonce) < minNonce || len(nonce) > maxNonce {
		return nil, fmt.Errorf("soft: transport key: %w: nonce of %d bytes (want %d to %d)", pluton.ErrInvalidArgument, len(nonce), minNonce, maxNonce)
	}
	if alg.curve() == nil {
		return nil, fmt.Errorf("soft: transport key: %w: %v", pluton.ErrUnsupportedAlgorithm, alg)
	}
	var (
		pub    *ecdh.PublicKey
		ueid   []byte
		signer crypto.Signer
		idAlg  pluton.Algorithm
	)
	err := c.read(func(s *chipState) error {
		if err := usable("transport key", s); err != nil {
			return err
		}
		priv, err := transportPrivate(s.UDS, alg)
		if err != nil {
			return err
		}
		pub = priv.PublicKey()
		ueid = bytes.Clone(s.UEID)
		signer, idAlg = c.signers[pluton.DeviceIDHandle], s.DeviceIDAlg
		if signer == nil {
			return fmt.Errorf("soft: transport key: DeviceID: %w", pluton.ErrFuseNotWritten)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	st, err := encMode.Marshal(&transportStatement{Context: transportContext, Algorithm: alg,
		Public: pub.Bytes(), Nonce: bytes.Clone(nonce), UEID: ueid})
	if err != nil {
		return nil, fmt.Errorf("soft: transport key: %w", err)
	}
	sig, err := signer.Sign(rand.Reader, idAlg.Digest(st), idAlg.SignerOpts())
	if err != nil {
		return nil, fmt.Errorf("soft: transport key: signing: %w", err)
	}
	return &TransportKey{Algorithm: alg, Public: pub, Statement: st, Signature: sig}, nil
}

// VerifiedTransportKey is what [VerifyTransportKey] returns.
type VerifiedTransportKey struct {
	Algorithm TransportAlgorithm
	Public    *ecdh.PublicKey
	UEID      []byte
}

// VerifyTransportKey checks an untrusted transport statement and its
// signature against deviceID, the DeviceID public key (from the chip's
// DeviceID certificate), and that it carries nonce. Any failure is an
// *[InjectError] wrapping [ErrStatement] or [ErrBlobMalformed]. The caller
// must still check that the returned UEID is the one the certificate (or
// the registry) holds for that DeviceID, before wrapping anything for it.
func VerifyTransportKey(statement, signature []byte, deviceID crypto.PublicKey, nonce []byte) (*VerifiedTransportKey, error) {
	fail := func(err error, format string, a ...any) error {
		return &InjectError{Op: "verify transport statement", Reason: fmt.Sprintf(format, a...), Err: err}
	}
	if len(statement) > maxBlob {
		return nil, fail(ErrBlobMalformed, "%d bytes", len(statement))
	}
	idAlg, err := pluton.AlgorithmOf(deviceID)
	if err != nil {
		return nil, fail(ErrStatement, "DeviceID key: %v", err)
	}
	if err := pluton.Verify(deviceID, idAlg, statement, signature); err != nil {
		return nil, fail(ErrStatement, "signature: %v", err)
	}
	var st transportStatement
	if err := blobDecMode.Unmarshal(statement, &st); err != nil {
		return nil, fail(ErrBlobMalformed, "decoding: %v", err)
	}
	if again, err := encMode.Marshal(&st); err != nil || !bytes.Equal(again, statement) {
		return nil, fail(ErrBlobMalformed, "not in deterministic CBOR encoding")
	}
	if st.Context != transportContext {
		return nil, fail(ErrBlobMalformed, "context %q", st.Context)
	}
	curve := st.Algorithm.curve()
	if curve == nil {
		return nil, fail(ErrBlobMalformed, "transport algorithm %d", st.Algorithm)
	}
	pub, err := curve.NewPublicKey(st.Public)
	if err != nil {
		return nil, fail(ErrBlobMalformed, "transport key: %v", err)
	}
	if subtle.ConstantTimeCompare(st.Nonce, nonce) != 1 {
		return nil, fail(ErrStatement, "nonce mismatch")
	}
	if len(st.UEID) == 0 || len(st.UEID) > dice.MaxUEIDSize {
		return nil, fail(ErrBlobMalformed, "UEID of %d bytes", len(st.UEID))
	}
	return &VerifiedTransportKey{Algorithm: st.Algorithm, Public: pub, UEID: st.UEID}, nil
}

// WrappedBlob is the wire form of a wrapped key or secret. Build it from
// what the HSM returns and [WrappedBlob.Marshal] it; the chip parses it
// with [ParseWrappedBlob].
type WrappedBlob struct {
	Version      uint8              `cbor:"1,keyasint"`
	Kind         BlobKind           `cbor:"2,keyasint"`
	Transport    TransportAlgorithm `cbor:"3,keyasint"`
	KDF          KDF                `cbor:"4,keyasint"`
	UEID         []byte             `cbor:"5,keyasint"`
	Name         string             `cbor:"6,keyasint"`
	KeyAlgorithm pluton.Algorithm   `cbor:"7,keyasint,omitempty"`
	Ephemeral    []byte             `cbor:"8,keyasint"`
	Wrapped      []byte             `cbor:"9,keyasint"`
}

func (b *WrappedBlob) validate() error {
	switch {
	case b.Version != blobVersion:
		return fmt.Errorf("version %d", b.Version)
	case b.Kind != BlobKey && b.Kind != BlobSecret:
		return fmt.Errorf("kind %d", b.Kind)
	case b.Transport.curve() == nil:
		return fmt.Errorf("transport algorithm %d", b.Transport)
	case b.KDF != KDFECDHAESECB:
		return fmt.Errorf("KDF %d", b.KDF)
	case len(b.UEID) == 0 || len(b.UEID) > dice.MaxUEIDSize:
		return fmt.Errorf("UEID of %d bytes", len(b.UEID))
	case !injectNameRE.MatchString(b.Name):
		return fmt.Errorf("name %q (1-64 of [a-z0-9._-])", b.Name)
	case b.Kind == BlobKey && b.KeyAlgorithm != pluton.ECDSAP256 && b.KeyAlgorithm != pluton.ECDSAP384:
		return fmt.Errorf("key algorithm %d (want ECDSA P-256 or P-384)", b.KeyAlgorithm)
	case b.Kind == BlobSecret && b.KeyAlgorithm != 0:
		return errors.New("secret with a key algorithm")
	case len(b.Wrapped) < 16 || len(b.Wrapped) > maxWrapped || len(b.Wrapped)%8 != 0:
		return fmt.Errorf("wrapped key of %d bytes", len(b.Wrapped))
	}
	if _, err := b.Transport.curve().NewPublicKey(b.Ephemeral); err != nil {
		return fmt.Errorf("ephemeral key: %v", err)
	}
	return nil
}

// Marshal encodes b (Version 0 is taken as the current version).
func (b *WrappedBlob) Marshal() ([]byte, error) {
	c := *b
	if c.Version == 0 {
		c.Version = blobVersion
	}
	if err := c.validate(); err != nil {
		return nil, &InjectError{Op: "marshal blob", Reason: err.Error(), Err: ErrBlobMalformed}
	}
	return encMode.Marshal(&c)
}

// ParseWrappedBlob parses an untrusted blob strictly: at most 4096 bytes,
// deterministic CBOR only, no unknown or duplicate keys, every field
// checked. Failures are *[InjectError] wrapping [ErrBlobMalformed].
func ParseWrappedBlob(data []byte) (*WrappedBlob, error) {
	fail := func(format string, a ...any) error {
		return &InjectError{Op: "parse blob", Reason: fmt.Sprintf(format, a...), Err: ErrBlobMalformed}
	}
	if len(data) == 0 || len(data) > maxBlob {
		return nil, fail("%d bytes (want 1 to %d)", len(data), maxBlob)
	}
	b := new(WrappedBlob)
	if err := blobDecMode.Unmarshal(data, b); err != nil {
		return nil, fail("decoding: %v", err)
	}
	if err := b.validate(); err != nil {
		return nil, fail("%v", err)
	}
	if again, err := encMode.Marshal(b); err != nil || !bytes.Equal(again, data) {
		return nil, fail("not in deterministic CBOR encoding")
	}
	return b, nil
}

// kdfInfo is the KDF's fixed info (see the injection notes above).
func kdfInfo(b *WrappedBlob, ueid, transport []byte) []byte {
	var out []byte
	out = append(out, infoContext...)
	out = append(out, 0, byte(b.KDF), byte(b.Kind), byte(b.Transport), byte(b.KeyAlgorithm))
	for _, f := range [][]byte{ueid, []byte(b.Name), b.Ephemeral, transport} {
		out = binary.BigEndian.AppendUint16(out, uint16(len(f)))
		out = append(out, f...)
	}
	return out
}

// unwrapBlob derives the KEK as KDF 1 says, with this chip's UDS, UEID and
// transport key, and unwraps. Intermediates are wiped.
func unwrapBlob(b *WrappedBlob, uds, ueid []byte) ([]byte, error) {
	priv, err := transportPrivate(uds, b.Transport)
	if err != nil {
		return nil, err
	}
	eph, err := b.Transport.curve().NewPublicKey(b.Ephemeral)
	if err != nil {
		return nil, ErrBlobMalformed
	}
	z, err := priv.ECDH(eph)
	if err != nil {
		return nil, ErrUnwrap
	}
	defer clear(z)
	blk, err := aes.NewCipher(z[len(z)-32:])
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(kdfInfo(b, ueid, priv.PublicKey().Bytes()))
	var kek [32]byte
	defer clear(kek[:])
	blk.Encrypt(kek[:16], d[:16])
	blk.Encrypt(kek[16:], d[16:])
	out, err := keywrap.Unwrap(kek[:], b.Wrapped)
	if err != nil {
		return nil, ErrUnwrap
	}
	return out, nil
}

// injection records what was installed from which blob, so that a retry
// with the same blob is a no-op and a different one is refused.
type injection struct {
	Kind        BlobKind           `cbor:"1,keyasint"`
	Compartment pluton.Compartment `cbor:"2,keyasint"`
	Name        string             `cbor:"3,keyasint"`
	Digest      []byte             `cbor:"4,keyasint"` // SHA-256 of the blob
	Handle      pluton.KeyHandle   `cbor:"5,keyasint,omitempty"`
}

// secretSlot is a named symmetric secret of a compartment.
type secretSlot struct {
	Name        string             `cbor:"1,keyasint"`
	Compartment pluton.Compartment `cbor:"2,keyasint"`
	Value       []byte             `cbor:"3,keyasint"`
}

// errReplay aborts an update when the same blob was installed already.
var errReplay = errors.New("soft: replay")

func findInjection(s *chipState, kind BlobKind, cm pluton.Compartment, name string) *injection {
	for i := range s.Injected {
		r := &s.Injected[i]
		if r.Kind == kind && r.Compartment == cm && r.Name == name {
			return r
		}
	}
	return nil
}

// InstallWrappedKey unwraps an untrusted blob of kind [BlobKey] made for
// this chip, and installs the key in a new signing key slot of compartment
// cm, labelled with the blob's name, after checking that its public key
// is expected (the key the certificate will carry). Allowed in
// Manufacturing only.
//
// Installing the same blob again (a station's retry) returns the slot
// installed the first time, in any lifecycle state, and writes nothing. A
// different blob for the same name and compartment is refused
// ([ErrAlreadyInjected]). Every refusal is an *[InjectError] (or a
// lifecycle or compartment error); nothing is installed and the state file
// is not touched.
func (c *Chip) InstallWrappedKey(ctx context.Context, blob []byte, cm pluton.Compartment, expected crypto.PublicKey) (*pluton.KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	const op = "install key"
	fail := func(err error, format string, a ...any) error {
		return &InjectError{Op: op, Reason: fmt.Sprintf(format, a...), Err: err}
	}
	if err := cm.Validate(); err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	b, err := ParseWrappedBlob(blob)
	if err != nil {
		return nil, err
	}
	if b.Kind != BlobKey {
		return nil, fail(ErrBlobMalformed, "blob carries a secret, not a key")
	}
	wantPub, err := pluton.MarshalPublicKey(expected)
	if err != nil {
		return nil, fail(ErrKeyMismatch, "expected public key: %v", err)
	}
	digest := sha256.Sum256(blob)
	var info *pluton.KeyInfo
	replay := func(s *chipState) (bool, error) {
		r := findInjection(s, BlobKey, cm, b.Name)
		if r == nil {
			return false, nil
		}
		if subtle.ConstantTimeCompare(r.Digest, digest[:]) != 1 {
			return true, fail(ErrAlreadyInjected, "key %q of compartment %q came from another blob", b.Name, cm)
		}
		ki, err := c.slot(s, cm, r.Handle)
		if err != nil {
			return true, fail(ErrAlreadyInjected, "key %q was installed and since destroyed", b.Name)
		}
		info = ki
		return true, nil
	}
	err = c.update(func(s *chipState) error {
		if done, err := replay(s); done {
			if err == nil {
				return errReplay
			}
			return err
		}
		if s.Lifecycle != pluton.Manufacturing {
			return &pluton.LifecycleError{Op: "install wrapped key", Current: s.Lifecycle}
		}
		if subtle.ConstantTimeCompare(b.UEID, s.UEID) != 1 {
			return fail(ErrWrongChip, "blob names another UEID")
		}
		if len(s.Keys) >= maxKeySlots {
			return fmt.Errorf("soft: install key: %w (%d key slots)", pluton.ErrSlotsFull, maxKeySlots)
		}
		if len(s.Injected) >= maxInjected || s.NextHandle == 1<<32-1 {
			return fmt.Errorf("soft: install key: %w", pluton.ErrSlotsFull)
		}
		plain, err := unwrapBlob(b, s.UDS, s.UEID)
		if err != nil {
			return fail(err, "unwrapping")
		}
		defer clear(plain)
		scalar, err := scalarFromPKCS8(plain, b.KeyAlgorithm)
		if err != nil {
			return fail(ErrKeyMismatch, "%v", err)
		}
		signer, err := keys.FromPrivate(b.KeyAlgorithm, scalar)
		if err != nil {
			clear(scalar)
			return fail(ErrKeyMismatch, "%v", err)
		}
		got, err := pluton.MarshalPublicKey(signer.Public())
		if err != nil || !bytes.Equal(got, wantPub) {
			clear(scalar)
			return fail(ErrKeyMismatch, "the unwrapped key's public key is not the expected one")
		}
		if err := keys.PairwiseTest(b.KeyAlgorithm, signer); err != nil {
			clear(scalar)
			return err
		}
		h := pluton.KeyHandle(s.NextHandle)
		s.NextHandle++
		s.Keys = append(s.Keys, keySlot{Handle: h, Compartment: cm, Algorithm: b.KeyAlgorithm,
			Usage: pluton.UsageSign, Label: b.Name, Private: scalar})
		s.Injected = append(s.Injected, injection{Kind: BlobKey, Compartment: cm, Name: b.Name, Digest: digest[:], Handle: h})
		info = &pluton.KeyInfo{Handle: h, Compartment: cm, Algorithm: b.KeyAlgorithm, Usage: pluton.UsageSign,
			Label: b.Name, Public: signer.Public()}
		return nil
	})
	if errors.Is(err, errReplay) {
		return info, nil
	}
	if err != nil {
		return nil, err
	}
	c.log.Info("wrapped key installed", "handle", uint32(info.Handle), "compartment", string(cm), "name", b.Name, "alg", info.Algorithm)
	return info, nil
}

// scalarFromPKCS8 takes the private scalar out of an unwrapped PKCS#8
// PrivateKeyInfo, which must be an ECDSA key on alg's curve.
func scalarFromPKCS8(der []byte, alg pluton.Algorithm) ([]byte, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("unwrapped key: %v", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("unwrapped key is a %T, not ECDSA", k)
	}
	if got, _ := pluton.AlgorithmOf(&ek.PublicKey); got != alg {
		return nil, fmt.Errorf("unwrapped key is %v, blob says %v", got, alg)
	}
	d, err := ek.Bytes()
	if err != nil {
		return nil, fmt.Errorf("unwrapped key: %v", err)
	}
	return d, nil
}

// InstallWrappedSecret unwraps an untrusted blob of kind [BlobSecret] made
// for this chip, and stores the secret (16 to 64 bytes) in the secret slot
// of compartment cm named by the blob. The same rules as
// [Chip.InstallWrappedKey] apply: Manufacturing only, the same blob again
// is a no-op, a different one for the same name is refused, and a refusal
// changes nothing.
func (c *Chip) InstallWrappedSecret(ctx context.Context, blob []byte, cm pluton.Compartment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	const op = "install secret"
	fail := func(err error, format string, a ...any) error {
		return &InjectError{Op: op, Reason: fmt.Sprintf(format, a...), Err: err}
	}
	if err := cm.Validate(); err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	b, err := ParseWrappedBlob(blob)
	if err != nil {
		return err
	}
	if b.Kind != BlobSecret {
		return fail(ErrBlobMalformed, "blob carries a key, not a secret")
	}
	digest := sha256.Sum256(blob)
	err = c.update(func(s *chipState) error {
		if r := findInjection(s, BlobSecret, cm, b.Name); r != nil {
			if subtle.ConstantTimeCompare(r.Digest, digest[:]) != 1 {
				return fail(ErrAlreadyInjected, "secret %q of compartment %q came from another blob", b.Name, cm)
			}
			return errReplay
		}
		if s.Lifecycle != pluton.Manufacturing {
			return &pluton.LifecycleError{Op: "install wrapped secret", Current: s.Lifecycle}
		}
		if subtle.ConstantTimeCompare(b.UEID, s.UEID) != 1 {
			return fail(ErrWrongChip, "blob names another UEID")
		}
		if slices.ContainsFunc(s.Secrets, func(k secretSlot) bool { return k.Name == b.Name && k.Compartment == cm }) {
			return fail(ErrAlreadyInjected, "secret %q exists", b.Name)
		}
		if len(s.Secrets) >= maxSecrets || len(s.Injected) >= maxInjected {
			return fmt.Errorf("soft: install secret: %w", pluton.ErrSlotsFull)
		}
		plain, err := unwrapBlob(b, s.UDS, s.UEID)
		if err != nil {
			return fail(err, "unwrapping")
		}
		if len(plain) < minSecret || len(plain) > maxSecret {
			clear(plain)
			return fail(ErrBlobMalformed, "secret of %d bytes (want %d to %d)", len(plain), minSecret, maxSecret)
		}
		s.Secrets = append(s.Secrets, secretSlot{Name: b.Name, Compartment: cm, Value: plain})
		s.Injected = append(s.Injected, injection{Kind: BlobSecret, Compartment: cm, Name: b.Name, Digest: digest[:]})
		return nil
	})
	if errors.Is(err, errReplay) {
		return nil
	}
	if err == nil {
		c.log.Info("wrapped secret installed", "compartment", string(cm), "name", b.Name)
	}
	return err
}

// Secret returns a copy of the secret name of compartment cm (the caller
// wipes it). Keys must be usable in the current lifecycle state.
func (c *Chip) Secret(ctx context.Context, cm pluton.Compartment, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cm.Validate(); err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	var out []byte
	err := c.read(func(s *chipState) error {
		if err := usable("secret", s); err != nil {
			return err
		}
		for _, k := range s.Secrets {
			if k.Name == name && k.Compartment == cm {
				out = bytes.Clone(k.Value)
				return nil
			}
		}
		return fmt.Errorf("soft: %w: %q", ErrNoSuchSecret, name)
	})
	return out, err
}
