package attest

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// EndorsementsVersion is the version of the endorsements format that
// ReadEndorsements reads and Marshal writes.
const EndorsementsVersion = 1

// Bounds of an endorsements document.
const (
	MaxEndorsementsSize = 16 << 20 // bytes of the JSON document
	MaxProducts         = 1024
	MaxReleases         = 4096 // per product
	MaxLayers           = 16   // per release
	MaxDigests          = 8    // per layer
	MaxNameLen          = 64   // product, release and layer names, versions
	MaxVulnerableLen    = 1024 // the vulnerability note
)

// Endorsements are the reference values the appraisal compares
// measurements with: for each product, its releases; for each release,
// the expected measurement of each boot layer. The package documentation
// describes the JSON form.
type Endorsements struct {
	Version  int                   `json:"version"`
	Products []ProductEndorsements `json:"products"`
}

// ProductEndorsements are one product's releases.
type ProductEndorsements struct {
	Product  string    `json:"product"`
	Releases []Release `json:"releases"`
}

// Release is one released combination of boot layers.
type Release struct {
	// Name identifies the release ("2026.11.1"): unique in its product.
	Name string `json:"release"`
	// Layers are the release's layers, each once.
	Layers []LayerReference `json:"layers"`
	// Vulnerable, if not empty, says why the release must no longer be
	// trusted fully: devices running it get a warning, with this text as
	// the reason's detail.
	Vulnerable string `json:"vulnerable,omitempty"`
}

// LayerReference is the expected measurement of one layer.
type LayerReference struct {
	// Layer names the layer as the evidence does ("bootloader", "os", "app").
	Layer string `json:"layer"`
	// Version is the image's Semantic Version, as its manifest says.
	Version string `json:"version"`
	// Digests are the image digests accepted, each with its algorithm:
	// one per build or per hash algorithm.
	Digests []Digest `json:"digests"`
	// MinSVN is the lowest security version number accepted.
	MinSVN uint64 `json:"min_svn"`
	// Signer is the identifier of the key that signs the image
	// (pluton/boot's KeyID: the SHA-256 of its SubjectPublicKeyInfo).
	Signer HexBytes `json:"signer"`
}

// Digest is an image digest and its algorithm.
type Digest struct {
	// Alg is the hash's IANA Named Information name: "sha-256",
	// "sha-384" or "sha-512" (RFC 6920, §9.4).
	Alg   string   `json:"alg"`
	Value HexBytes `json:"value"`
}

// HexBytes is a byte string written as lowercase hex in JSON.
type HexBytes []byte

// MarshalText implements encoding.TextMarshaler.
func (h HexBytes) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(h)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler: lowercase hex only,
// so that each value has one form.
func (h *HexBytes) UnmarshalText(b []byte) error {
	if len(b)%2 != 0 || bytes.ContainsFunc(b, func(r rune) bool { return r >= 'A' && r <= 'F' }) {
		return fmt.Errorf("attest: %q is not lowercase hex", clip(string(b)))
	}
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("attest: %q is not lowercase hex", clip(string(b)))
	}
	*h = v
	return nil
}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	layerRE = regexp.MustCompile(`^[a-z0-9][a-z0-9:._-]*$`)
)

// hashByName maps the Named Information names to hashes.
var hashByName = map[string]crypto.Hash{"sha-256": crypto.SHA256, "sha-384": crypto.SHA384, "sha-512": crypto.SHA512}

// ReadEndorsements reads an untrusted endorsements document: at most
// MaxEndorsementsSize bytes of JSON, one object, no unknown member, and
// every value valid (see Validate). Errors wrap ErrEndorsements.
func ReadEndorsements(r io.Reader) (*Endorsements, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxEndorsementsSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEndorsements, err)
	}
	if len(b) > MaxEndorsementsSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrEndorsements, MaxEndorsementsSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var e Endorsements
	if err := d.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEndorsements, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the document", ErrEndorsements)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// Marshal returns the JSON form of e, which ReadEndorsements reads back.
func (e *Endorsements) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(e, "", "  ")
}

// Validate checks e: its version; at most MaxProducts products, each
// named once; per product at most MaxReleases releases, each named once,
// with 1 to MaxLayers layers, each once; per layer a version, 1 to
// MaxDigests digests of a known algorithm and its size, and a signer
// identifier of 32, 48 or 64 bytes. Names are 1 to MaxNameLen characters.
// Errors wrap ErrEndorsements.
func (e *Endorsements) Validate() error {
	if e.Version != EndorsementsVersion {
		return fmt.Errorf("%w: version %d (want %d)", ErrEndorsements, e.Version, EndorsementsVersion)
	}
	if len(e.Products) > MaxProducts {
		return fmt.Errorf("%w: more than %d products", ErrEndorsements, MaxProducts)
	}
	seen := map[string]bool{}
	for i := range e.Products {
		p := &e.Products[i]
		if err := p.Validate(); err != nil {
			return err
		}
		if seen[p.Product] {
			return fmt.Errorf("%w: product %q listed twice", ErrEndorsements, p.Product)
		}
		seen[p.Product] = true
	}
	return nil
}

// Validate checks one product's endorsements as Endorsements.Validate does.
func (p *ProductEndorsements) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: product %q: %s", ErrEndorsements, clip(p.Product), fmt.Sprintf(format, args...))
	}
	if !validName(p.Product, nameRE) {
		return bad("bad product name")
	}
	if len(p.Releases) > MaxReleases {
		return bad("more than %d releases", MaxReleases)
	}
	releases := map[string]bool{}
	for _, r := range p.Releases {
		if !validName(r.Name, nameRE) {
			return bad("bad release name %q", clip(r.Name))
		}
		if releases[r.Name] {
			return bad("release %q listed twice", r.Name)
		}
		releases[r.Name] = true
		if len(r.Vulnerable) > MaxVulnerableLen {
			return bad("release %q: vulnerability note longer than %d bytes", r.Name, MaxVulnerableLen)
		}
		if len(r.Layers) == 0 || len(r.Layers) > MaxLayers {
			return bad("release %q: %d layers (1 to %d)", r.Name, len(r.Layers), MaxLayers)
		}
		layers := map[string]bool{}
		for _, l := range r.Layers {
			if !validName(l.Layer, layerRE) {
				return bad("release %q: bad layer name %q", r.Name, clip(l.Layer))
			}
			if layers[l.Layer] {
				return bad("release %q: layer %q listed twice", r.Name, l.Layer)
			}
			layers[l.Layer] = true
			if !validName(l.Version, nameRE) {
				return bad("release %q, layer %q: bad version %q", r.Name, l.Layer, clip(l.Version))
			}
			if n := len(l.Signer); n != 32 && n != 48 && n != 64 {
				return bad("release %q, layer %q: signer of %d bytes (32, 48 or 64)", r.Name, l.Layer, n)
			}
			if len(l.Digests) == 0 || len(l.Digests) > MaxDigests {
				return bad("release %q, layer %q: %d digests (1 to %d)", r.Name, l.Layer, len(l.Digests), MaxDigests)
			}
			for _, d := range l.Digests {
				h, ok := hashByName[d.Alg]
				if !ok {
					return bad("release %q, layer %q: unknown digest algorithm %q", r.Name, l.Layer, clip(d.Alg))
				}
				if len(d.Value) != h.Size() {
					return bad("release %q, layer %q: %s digest of %d bytes", r.Name, l.Layer, d.Alg, len(d.Value))
				}
			}
		}
	}
	return nil
}

func validName(s string, re *regexp.Regexp) bool {
	return len(s) > 0 && len(s) <= MaxNameLen && re.MatchString(s)
}

// clip shortens untrusted text quoted in an error.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// clone returns a deep copy of e, so that the caller's later changes do not
// reach the Verifier.
func (e *Endorsements) clone() *Endorsements {
	b, err := json.Marshal(e)
	if err != nil {
		panic(err) // cannot happen: e was validated
	}
	var c Endorsements
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}

// refs is Endorsements compiled for the appraisal.
type refs struct {
	doc      *Endorsements
	products map[string]*productRefs
}

type productRefs struct {
	releases []Release
	// byVersion: layer → version → the references of that layer and
	// version, in any release.
	byVersion map[string]map[string][]*LayerReference
}

func compile(e *Endorsements) *refs {
	r := &refs{doc: e, products: map[string]*productRefs{}}
	for _, p := range e.Products {
		pr := &productRefs{releases: p.Releases, byVersion: map[string]map[string][]*LayerReference{}}
		for ri := range p.Releases {
			for li := range p.Releases[ri].Layers {
				l := &p.Releases[ri].Layers[li]
				m := pr.byVersion[l.Layer]
				if m == nil {
					m = map[string][]*LayerReference{}
					pr.byVersion[l.Layer] = m
				}
				m[l.Version] = append(m[l.Version], l)
			}
		}
		r.products[p.Product] = pr
	}
	return r
}

// matches reports whether a measured digest is one of l's.
func (l *LayerReference) matches(alg crypto.Hash, digest []byte) bool {
	return slices.ContainsFunc(l.Digests, func(d Digest) bool {
		return hashByName[d.Alg] == alg && bytes.Equal(d.Value, digest)
	})
}
