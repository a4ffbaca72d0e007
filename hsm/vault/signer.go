package vault

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/vault/api"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/rootline/rootline/hsm"
)

var _ hsm.ContextSigner = (*signer)(nil)

// signer signs with one version of a transit key.
type signer struct {
	k       *KMS
	alg     hsm.Algorithm
	pub     crypto.PublicKey
	path    string // "transit/sign/NAME"
	version int
	prefix  string // "vault:vN:"
	// checked is the state of the pairwise-consistency test of the first
	// signature: 0 not yet passed, 1 passed, 2 failed (for good).
	checked atomic.Int32
}

const (
	selfTestPending = iota
	selfTestPassed
	selfTestFailed
)

func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign implements crypto.Signer; see [KMS.Signer]. rand is not used: Vault
// draws the randomness.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext asks Vault to sign (transit/sign/:name) within ctx.
func (s *signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.checked.Load() == selfTestFailed {
		return nil, fmt.Errorf("%w: %s version %d gave a signature that does not verify; it signs no more", ErrSelfTest, s.path, s.version)
	}
	body, err := s.request(digest, opts)
	if err != nil {
		return nil, err
	}
	sig, err := s.sign(ctx, body)
	if err != nil {
		return nil, err
	}
	if s.checked.Load() == selfTestPending {
		if err := s.verify(digest, opts, sig); err != nil {
			s.checked.Store(selfTestFailed)
			return nil, err
		}
		s.checked.CompareAndSwap(selfTestPending, selfTestPassed)
	}
	return sig, nil
}

// request builds the body of a transit sign request (Vault's transit API,
// "Sign Data"), after holding the caller to the crypto.Signer contract of
// each algorithm: ECDSA signs a digest of opts.HashFunc(), passed as is
// (prehashed); Ed25519 signs the message itself (no Ed25519ph, no
// Ed25519ctx).
func (s *signer) request(digest []byte, opts crypto.SignerOpts) (map[string]any, error) {
	if opts == nil {
		return nil, errors.New("vault: nil SignerOpts")
	}
	body := map[string]any{
		"input":       base64.StdEncoding.EncodeToString(digest),
		"key_version": s.version,
	}
	if s.alg == hsm.Ed25519 {
		if opts.HashFunc() != crypto.Hash(0) {
			return nil, fmt.Errorf("%w: Ed25519ph (pre-hashed Ed25519)", ErrUnsupported)
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return nil, fmt.Errorf("%w: Ed25519ctx (Ed25519 with a context)", ErrUnsupported)
		}
		if len(digest) > maxMessage {
			return nil, fmt.Errorf("vault: Ed25519 message of %d bytes; at most %d", len(digest), maxMessage)
		}
		return body, nil
	}
	h := opts.HashFunc()
	name, ok := hashNames[h]
	if !ok {
		return nil, fmt.Errorf("%w: ECDSA over %v (Vault names SHA-2 and SHA-3 of 224 to 512 bits)", ErrUnsupported, h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("vault: digest of %d bytes for %v, want %d", len(digest), h, h.Size())
	}
	body["prehashed"] = true
	body["hash_algorithm"] = name
	body["marshaling_algorithm"] = "asn1"
	return body, nil
}

// hashNames are Vault's names of the digests an ECDSA signer takes.
var hashNames = map[crypto.Hash]string{
	crypto.SHA224:   "sha2-224",
	crypto.SHA256:   "sha2-256",
	crypto.SHA384:   "sha2-384",
	crypto.SHA512:   "sha2-512",
	crypto.SHA3_224: "sha3-224",
	crypto.SHA3_256: "sha3-256",
	crypto.SHA3_384: "sha3-384",
	crypto.SHA3_512: "sha3-512",
}

func (s *signer) sign(ctx context.Context, body map[string]any) ([]byte, error) {
	sec, err := s.k.write(ctx, "sign", s.path, body)
	if err != nil {
		return nil, err
	}
	return s.parseResponse(sec)
}

func (s *signer) parseResponse(sec *api.Secret) ([]byte, error) {
	if sec == nil || sec.Data == nil {
		return nil, badResponse(s.path, "empty answer")
	}
	text, _ := sec.Data["signature"].(string)
	sig, err := parseSignature(text, s.version)
	if err != nil {
		return nil, badResponse(s.path, "%v", err)
	}
	if err := checkEncoding(s.alg, sig); err != nil {
		return nil, badResponse(s.path, "%v", err)
	}
	return sig, nil
}

// parseSignature decodes an untrusted transit signature,
// "vault:v<version>:<base64>" (Vault's transit API, "Sign Data": the key
// version, then the signature in standard base64 with padding), and checks
// that it was made by the version asked for.
func parseSignature(text string, version int) ([]byte, error) {
	if text == "" {
		return nil, errors.New("no signature")
	}
	if len(text) > maxSignature {
		return nil, fmt.Errorf("signature of %d bytes", len(text))
	}
	rest, ok := strings.CutPrefix(text, "vault:v")
	if !ok {
		return nil, errors.New("signature does not start with \"vault:v\"")
	}
	vtext, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, errors.New("signature has no version separator")
	}
	// A decimal version without sign or leading zero.
	if vtext == "" || len(vtext) > 10 || vtext[0] == '0' || strings.Trim(vtext, "0123456789") != "" {
		return nil, fmt.Errorf("signature version %q is not a number", clip(vtext))
	}
	v, err := strconv.Atoi(vtext)
	if err != nil {
		return nil, fmt.Errorf("signature version %q: %v", clip(vtext), err)
	}
	if version != 0 && v != version {
		return nil, fmt.Errorf("signature by key version %d, want %d", v, version)
	}
	// encoding/base64 skips CR and LF even in strict mode; Vault sends
	// neither.
	if strings.ContainsAny(b64, "\r\n") {
		return nil, errors.New("signature holds a line break")
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("signature: %v", err)
	}
	if len(sig) == 0 {
		return nil, errors.New("empty signature")
	}
	return sig, nil
}

// checkEncoding checks the form of a signature: 64 bytes for Ed25519 (RFC
// 8032, 5.1.6); for ECDSA the DER of Ecdsa-Sig-Value ::= SEQUENCE { r
// INTEGER, s INTEGER } (RFC 3279, 2.2.3; SEC 1 v2, C.8), with positive
// minimal integers no longer than the group order, and nothing after.
func checkEncoding(alg hsm.Algorithm, sig []byte) error {
	if alg == hsm.Ed25519 {
		if len(sig) != ed25519.SignatureSize {
			return fmt.Errorf("Ed25519 signature of %d bytes", len(sig))
		}
		return nil
	}
	size := 32
	if alg == hsm.P384 {
		size = 48
	}
	in := cryptobyte.String(sig)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return errors.New("ECDSA signature is not one DER SEQUENCE")
	}
	for range 2 {
		var n cryptobyte.String
		if !seq.ReadASN1(&n, cbasn1.INTEGER) {
			return errors.New("ECDSA signature: r or s is not an INTEGER")
		}
		// Minimal, positive, nonzero (X.690, 8.3.2; FIPS 186-5, 6.4.1).
		switch {
		case len(n) == 0, n[0]&0x80 != 0:
			return errors.New("ECDSA signature: r or s is not positive")
		case len(n) > 1 && n[0] == 0 && n[1]&0x80 == 0:
			return errors.New("ECDSA signature: r or s is not minimally encoded")
		case len(n) == 1 && n[0] == 0:
			return errors.New("ECDSA signature: r or s is zero")
		case len(n) > size+1 || len(n) == size+1 && n[0] != 0:
			return errors.New("ECDSA signature: r or s is longer than the group order")
		}
	}
	if !seq.Empty() {
		return errors.New("ECDSA signature: data after s")
	}
	return nil
}

// verify checks a signature under the signer's public key.
func (s *signer) verify(digest []byte, opts crypto.SignerOpts, sig []byte) error {
	var ok bool
	switch pub := s.pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, digest, sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, digest, sig)
	}
	if !ok {
		s.k.log.Error("vault: pairwise-consistency test failed", "path", s.path, "version", s.version)
		return fmt.Errorf("%w: %s version %d: the signature does not verify under the key's public key", ErrSelfTest, s.path, s.version)
	}
	return nil
}

// selfTestMessage is what CreateKey's pairwise-consistency test signs.
var selfTestMessage = []byte("rootline hsm/vault pairwise-consistency test")

// selfTest signs a fixed message and verifies the signature, whatever the
// state of the first-signature test.
func (s *signer) selfTest(ctx context.Context) error {
	msg, opts := selfTestMessage, crypto.SignerOpts(crypto.Hash(0))
	if s.alg != hsm.Ed25519 {
		d := sha256.Sum256(selfTestMessage)
		msg, opts = d[:], crypto.SHA256
	}
	body, err := s.request(msg, opts)
	if err != nil {
		return err
	}
	sig, err := s.sign(ctx, body)
	if err != nil {
		return err
	}
	if err := s.verify(msg, opts, sig); err != nil {
		s.checked.Store(selfTestFailed)
		return err
	}
	s.checked.CompareAndSwap(selfTestPending, selfTestPassed)
	return nil
}
