package translog

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// algEd25519 is the note format's algorithm byte for Ed25519.
const algEd25519 = 1

// Signer is a note.Signer over a crypto.Signer holding an Ed25519 key, such
// as an HSM key (hsm.Module.Signer): the private key never leaves it.
type Signer struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
	key  crypto.Signer
}

var _ note.Signer = (*Signer)(nil)

// NewSigner returns a note signer named name (the log's name: non-empty
// UTF-8 without spaces or '+') over key, whose public key must be Ed25519.
func NewSigner(name string, key crypto.Signer) (*Signer, error) {
	if !validName(name) {
		return nil, fmt.Errorf("translog: invalid log name %q (non-empty, no spaces, no '+')", name)
	}
	if key == nil {
		return nil, errors.New("translog: nil key")
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("translog: key is %T, want an Ed25519 key", key.Public())
	}
	return &Signer{name: name, hash: keyHash(name, pub), pub: pub, key: key}, nil
}

func validName(name string) bool {
	return name != "" && len(name) <= 256 && utf8.ValidString(name) &&
		strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// keyHash is the note format's key hash: the first 4 bytes, big-endian,
// of SHA-256(name || "\n" || 0x01 || public key).
func keyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write([]byte{algEd25519})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// Name returns the log's name.
func (s *Signer) Name() string { return s.name }

// KeyHash returns the note key hash.
func (s *Signer) KeyHash() uint32 { return s.hash }

// Sign signs msg with pure Ed25519 (RFC 8032, section 5.1.6; no pre-hash)
// and checks the signature before returning it, so that a faulty token
// never yields a tree head nobody can verify.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	sig, err := s.key.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("translog: signing: %w", err)
	}
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, errors.New("translog: signer returned an invalid Ed25519 signature")
	}
	return sig, nil
}

// VerifierKey returns the verifier key string anyone can use with
// note.NewVerifier / note.Open and this package's Verify functions.
func (s *Signer) VerifierKey() string {
	k, err := note.NewEd25519VerifierKey(s.name, s.pub)
	if err != nil {
		panic("translog: " + err.Error()) // name and key were checked in NewSigner
	}
	return k
}
