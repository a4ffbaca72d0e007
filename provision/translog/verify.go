package translog

import (
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxHeadSize bounds a signed tree head.
const MaxHeadSize = 8 << 10

// OpenTreeHead checks the untrusted signed tree head against verifierKey
// and returns the tree it describes.
func OpenTreeHead(verifierKey string, signedHead []byte) (tlog.Tree, error) {
	if len(verifierKey) > 1024 {
		return tlog.Tree{}, ErrBadVerifierKey
	}
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("%w: %v", ErrBadVerifierKey, err)
	}
	if len(signedHead) > MaxHeadSize {
		return tlog.Tree{}, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedHead, len(signedHead), MaxHeadSize)
	}
	n, err := note.Open(signedHead, note.VerifierList(v))
	if err != nil {
		var unv *note.UnverifiedNoteError
		var bad *note.InvalidSignatureError
		switch {
		case errors.As(err, &unv):
			return tlog.Tree{}, fmt.Errorf("%w (want %s+%08x)", ErrWrongKey, v.Name(), v.KeyHash())
		case errors.As(err, &bad):
			return tlog.Tree{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return tlog.Tree{}, fmt.Errorf("%w: %v", ErrMalformedHead, err)
	}
	t, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("%w: %v", ErrMalformedHead, err)
	}
	return t, nil
}

// VerifyInclusion checks that leaf (a certificate's DER) is the record at
// index in the tree that the untrusted signedHead, signed by verifierKey,
// describes, using the untrusted proof. It returns that tree.
func VerifyInclusion(verifierKey string, signedHead, leaf []byte, index int64, proof tlog.RecordProof) (tlog.Tree, error) {
	t, err := OpenTreeHead(verifierKey, signedHead)
	if err != nil {
		return tlog.Tree{}, err
	}
	if index < 0 || index >= t.N {
		return tlog.Tree{}, fmt.Errorf("%w: index %d not below tree size %d", ErrNotIncluded, index, t.N)
	}
	if len(proof) > MaxProofHashes {
		return tlog.Tree{}, ErrMalformedProof
	}
	if err := tlog.CheckRecord(proof, t.N, t.Hash, index, tlog.RecordHash(leaf)); err != nil {
		return tlog.Tree{}, fmt.Errorf("%w: %v", ErrNotIncluded, err)
	}
	return t, nil
}

// VerifyConsistency checks that the tree of the untrusted newHead extends
// the tree of the untrusted oldHead (both signed by verifierKey), using
// the untrusted proof: every record in the old tree is, unchanged, in the
// new one. Equal sizes need equal hashes and an empty proof.
func VerifyConsistency(verifierKey string, oldHead, newHead []byte, proof tlog.TreeProof) (old, new tlog.Tree, err error) {
	if old, err = OpenTreeHead(verifierKey, oldHead); err != nil {
		return tlog.Tree{}, tlog.Tree{}, fmt.Errorf("old head: %w", err)
	}
	if new, err = OpenTreeHead(verifierKey, newHead); err != nil {
		return tlog.Tree{}, tlog.Tree{}, fmt.Errorf("new head: %w", err)
	}
	if len(proof) > MaxProofHashes {
		return tlog.Tree{}, tlog.Tree{}, ErrMalformedProof
	}
	switch {
	case old.N > new.N:
		return tlog.Tree{}, tlog.Tree{}, fmt.Errorf("%w: old size %d above new size %d", ErrInconsistent, old.N, new.N)
	case old.N == 0:
		// The empty tree is a prefix of every tree.
		if len(proof) != 0 {
			return tlog.Tree{}, tlog.Tree{}, fmt.Errorf("%w: non-empty proof from the empty tree", ErrInconsistent)
		}
		return old, new, nil
	case old.N == new.N:
		if old.Hash != new.Hash || len(proof) != 0 {
			return tlog.Tree{}, tlog.Tree{}, fmt.Errorf("%w: two different trees of size %d", ErrInconsistent, old.N)
		}
		return old, new, nil
	}
	if err := tlog.CheckTree(proof, new.N, new.Hash, old.N, old.Hash); err != nil {
		return tlog.Tree{}, tlog.Tree{}, fmt.Errorf("%w: %v", ErrInconsistent, err)
	}
	return old, new, nil
}

// MaxProofHashes bounds a proof: an inclusion proof has at most 63 hashes
// and a consistency proof at most about twice that in a tree of 2^63
// leaves.
const MaxProofHashes = 130

// MarshalProof encodes a proof (tlog.RecordProof or tlog.TreeProof) as its
// hashes concatenated, 32 bytes each.
func MarshalProof(p []tlog.Hash) []byte {
	b := make([]byte, 0, len(p)*tlog.HashSize)
	for _, h := range p {
		b = append(b, h[:]...)
	}
	return b
}

// ParseProof decodes an untrusted proof encoded by [MarshalProof].
func ParseProof(b []byte) ([]tlog.Hash, error) {
	if len(b)%tlog.HashSize != 0 || len(b) > MaxProofHashes*tlog.HashSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformedProof, len(b))
	}
	p := make([]tlog.Hash, len(b)/tlog.HashSize)
	for i := range p {
		copy(p[i][:], b[i*tlog.HashSize:])
	}
	return p, nil
}
