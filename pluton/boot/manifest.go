package boot

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/rootline/rootline/internal/strictcbor"
)

// Layer names a stage of the boot chain. Each stage verifies the next
// before running it: the boot ROM the bootloader, the bootloader the OS,
// the OS the application.
type Layer string

// The layers, in boot order.
const (
	Bootloader Layer = "bootloader"
	OS         Layer = "os"
	App        Layer = "app"
)

// Layers returns the layers in boot order.
func Layers() []Layer { return []Layer{Bootloader, OS, App} }

// Valid reports whether l is one of the defined layers.
func (l Layer) Valid() bool { return l == Bootloader || l == OS || l == App }

// ParseLayer parses "bootloader", "os" or "app".
func ParseLayer(s string) (Layer, error) {
	if l := Layer(s); l.Valid() {
		return l, nil
	}
	return "", fmt.Errorf("boot: unknown layer %q (want bootloader, os or app)", s)
}

// Limits of the image format.
const (
	// MaxManifestSize bounds the encoded manifest.
	MaxManifestSize = 4 << 10
	// MaxPayloadSize bounds an image's payload: 256 MiB.
	MaxPayloadSize = 256 << 20
	// MaxSVN is the largest security version number: the chip's counters
	// are 32 bits wide.
	MaxSVN = 1<<32 - 1
	// MaxProductLen and MaxVersionLen bound the text fields.
	MaxProductLen = 64
	MaxVersionLen = 64

	manifestFormat = 1
)

// COSE hash algorithm identifiers (RFC 9054, §2, IANA "COSE Algorithms")
// of the payload digest.
const (
	hashSHA256 = -16
	hashSHA384 = -43
)

// Manifest describes a payload and says which layer, product and version
// it is. It is the signed part of an image.
//
// The encoding is a CBOR map with small integer keys (format version 1):
//
//	1: format version (1)       6: digest algorithm (COSE id: -16 SHA-256, -43 SHA-384)
//	2: layer (text)             7: digest (32 or 48 bytes)
//	3: product (text)           8: payload size (uint)
//	4: version (SemVer 2.0.0)   9: signer key ids ([+ bstr .size 32])
//	5: svn (uint < 2^32)       10: creation time (uint, Unix seconds; optional)
//
// in Core Deterministic Encoding (RFC 8949, §4.2.1). A manifest that is
// not in that exact encoding is refused, so each manifest has one
// encoding.
type Manifest struct {
	Layer   Layer
	Product string // [A-Za-z0-9][A-Za-z0-9._-]*, at most 64 bytes
	Version string // Semantic Versioning 2.0.0, at most 64 bytes
	// SVN is the security version number: anti-rollback compares it, not
	// Version. At most MaxSVN.
	SVN uint64
	// DigestAlg is crypto.SHA256 or crypto.SHA384; SignImage defaults it
	// to SHA-256.
	DigestAlg   crypto.Hash
	Digest      []byte // set by SignImage
	PayloadSize uint64 // set by SignImage
	// SignerKeyIDs are the [KeyID]s of the keys that sign the image (one,
	// or two for a hybrid image); set by SignImage.
	SignerKeyIDs [][]byte
	// Created is optional (the zero Time when absent); whole seconds.
	Created time.Time
}

type manifestWire struct {
	Format      uint64   `cbor:"1,keyasint"`
	Layer       string   `cbor:"2,keyasint"`
	Product     string   `cbor:"3,keyasint"`
	Version     string   `cbor:"4,keyasint"`
	SVN         uint64   `cbor:"5,keyasint"`
	DigestAlg   int64    `cbor:"6,keyasint"`
	Digest      []byte   `cbor:"7,keyasint"`
	PayloadSize uint64   `cbor:"8,keyasint"`
	Signers     [][]byte `cbor:"9,keyasint"`
	Created     uint64   `cbor:"10,keyasint,omitempty"`
}

var (
	// semverRE is the regular expression of Semantic Versioning 2.0.0
	// (semver.org, "Is there a suggested regular expression (RegEx) to
	// check a SemVer string?").
	semverRE  = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
	productRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// fieldError is a validation failure: ErrTooLarge or ErrMalformed and why.
type fieldError struct {
	sentinel error
	reason   string
}

func (e *fieldError) Error() string { return e.reason }

func badField(format string, args ...any) error {
	return &fieldError{sentinel: ErrMalformed, reason: fmt.Sprintf(format, args...)}
}

func bigField(format string, args ...any) error {
	return &fieldError{sentinel: ErrTooLarge, reason: fmt.Sprintf(format, args...)}
}

// asRefusal turns a validation error into a *VerifyError.
func asRefusal(layer Layer, what string, err error) error {
	var fe *fieldError
	if errors.As(err, &fe) {
		return refuse(layer, fe.sentinel, what+": "+fe.reason, nil)
	}
	return refuse(layer, ErrMalformed, what, err)
}

func checkProduct(p string) error {
	switch {
	case len(p) > MaxProductLen:
		return bigField("product longer than %d bytes", MaxProductLen)
	case !productRE.MatchString(p):
		return badField("product %q is not [A-Za-z0-9][A-Za-z0-9._-]*", p)
	}
	return nil
}

// CheckVersion reports whether v is a valid Semantic Versioning 2.0.0
// version of at most MaxVersionLen bytes.
func CheckVersion(v string) error {
	switch {
	case len(v) > MaxVersionLen:
		return bigField("version longer than %d bytes", MaxVersionLen)
	case !semverRE.MatchString(v):
		return badField("version %q is not a semantic version (SemVer 2.0.0)", v)
	}
	return nil
}

func digestSize(h crypto.Hash) int {
	switch h {
	case crypto.SHA256:
		return sha256.Size
	case crypto.SHA384:
		return sha512.Size384
	}
	return 0
}

// validate checks every field of a manifest.
func (m *Manifest) validate() error {
	if !m.Layer.Valid() {
		return badField("unknown layer %q", m.Layer)
	}
	if err := checkProduct(m.Product); err != nil {
		return err
	}
	if err := CheckVersion(m.Version); err != nil {
		return err
	}
	if m.SVN > MaxSVN {
		return bigField("svn %d larger than %d", m.SVN, uint64(MaxSVN))
	}
	n := digestSize(m.DigestAlg)
	if n == 0 {
		return badField("digest algorithm %v (want SHA-256 or SHA-384)", m.DigestAlg)
	}
	if len(m.Digest) != n {
		return badField("%v digest of %d bytes", m.DigestAlg, len(m.Digest))
	}
	if m.PayloadSize > MaxPayloadSize {
		return bigField("payload of %d bytes (at most %d)", m.PayloadSize, MaxPayloadSize)
	}
	switch len(m.SignerKeyIDs) {
	case 1:
	case 2:
		if bytes.Equal(m.SignerKeyIDs[0], m.SignerKeyIDs[1]) {
			return badField("the same signer twice")
		}
	default:
		return badField("%d signer key ids (want 1, or 2 for a hybrid image)", len(m.SignerKeyIDs))
	}
	for _, id := range m.SignerKeyIDs {
		if len(id) != keyIDSize {
			return badField("signer key id of %d bytes (want %d)", len(id), keyIDSize)
		}
	}
	if !m.Created.IsZero() && (m.Created.Unix() < 0 || m.Created.Nanosecond() != 0) {
		return badField("creation time before 1970 or not in whole seconds")
	}
	return nil
}

// marshal validates and encodes m.
func (m *Manifest) marshal() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	w := manifestWire{
		Format:      manifestFormat,
		Layer:       string(m.Layer),
		Product:     m.Product,
		Version:     m.Version,
		SVN:         m.SVN,
		Digest:      m.Digest,
		PayloadSize: m.PayloadSize,
		Signers:     m.SignerKeyIDs,
	}
	w.DigestAlg = hashSHA256
	if m.DigestAlg == crypto.SHA384 {
		w.DigestAlg = hashSHA384
	}
	if !m.Created.IsZero() {
		w.Created = uint64(m.Created.Unix())
	}
	b, err := encMode.Marshal(&w)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxManifestSize {
		return nil, bigField("manifest of %d bytes (at most %d)", len(b), MaxManifestSize)
	}
	return b, nil
}

// parseManifest decodes an untrusted manifest strictly: canonical encoding,
// no unknown keys, every field valid.
func parseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, bigField("manifest of %d bytes (at most %d)", len(b), MaxManifestSize)
	}
	var w manifestWire
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, badField("manifest is not valid CBOR of the expected shape: %v", err)
	}
	if w.Format != manifestFormat {
		return nil, badField("unsupported manifest format version %d", w.Format)
	}
	if again, err := encMode.Marshal(&w); err != nil || !bytes.Equal(again, b) {
		return nil, badField("manifest is not in deterministic encoding, or lacks a field")
	}
	m := &Manifest{
		Layer:        Layer(w.Layer),
		Product:      w.Product,
		Version:      w.Version,
		SVN:          w.SVN,
		Digest:       w.Digest,
		PayloadSize:  w.PayloadSize,
		SignerKeyIDs: w.Signers,
	}
	switch w.DigestAlg {
	case hashSHA256:
		m.DigestAlg = crypto.SHA256
	case hashSHA384:
		m.DigestAlg = crypto.SHA384
	default:
		return nil, badField("digest algorithm %d (want -16 SHA-256 or -43 SHA-384)", w.DigestAlg)
	}
	if w.Created != 0 {
		if w.Created > 1<<40 {
			return nil, badField("creation time out of range")
		}
		m.Created = time.Unix(int64(w.Created), 0).UTC()
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// CBOR modes for manifests and policies: deterministic encoding, strict
// bounded decoding.
var (
	encMode = strictcbor.EncMode()
	decMode = strictcbor.DecMode(strictcbor.Limits{MaxNestedLevels: 6, MaxArrayElements: maxRevoked, MaxMapPairs: 16})
)

// ParseManifest decodes a manifest encoding (Image.RawManifest) strictly,
// without any signature check: use it only on a manifest whose image was
// verified, such as one a device recorded at boot.
func ParseManifest(b []byte) (*Manifest, error) {
	m, err := parseManifest(b)
	if err != nil {
		return nil, asRefusal("", "manifest", err)
	}
	return m, nil
}
