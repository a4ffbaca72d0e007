// Package export hands the registry to the attestation verifier: every
// provisioned device's UEID, product, state and IDevID chain, and every
// product's reference values, in one versioned JSON document.
//
// # Format, version 2
//
// The document is one JSON object whose members come in this order:
//
//	{"version": 2,
//	 "generated": "2026-11-25T12:00:00Z",                 RFC 3339, UTC
//	 "devices": [
//	   {"ueid": "01ab…",                                  hex, 1 to 64 bytes
//	    "product": "sku-a",
//	    "state": "complete",                              "issued" or "complete"
//	    "chain": ["MIIB…", "MIIB…", "MIIB…"],             base64 DER: IDevID, intermediate(s), root
//	    "issued": "2026-11-25T11:59:00Z",                 RFC 3339, UTC
//	    "kind": "dice",                                   "dice", "injected" or "tpm"
//	    "deviceIDKey": "MFkw…",                           base64 DER SubjectPublicKeyInfo
//	    "iak": "ACMACwAF…"}, …],                          base64 TPMT_PUBLIC, "tpm" only
//	 "products": {
//	   "sku-a": {"referenceValues": {
//	     "bootloader": {"digests": ["ab…"], "minSVN": 1}, …}}}}
//
// "kind" says how the device's identity was made, and so how a verifier
// binds its evidence to its IDevID:
//
//   - "dice": the chip made its DeviceID key and the IDevID certifies it;
//     "deviceIDKey" is the IDevID's key.
//   - "injected": the factory HSM made the key the IDevID certifies
//     (registry.Record.Injected); "deviceIDKey" is the chip's own DeviceID
//     key, which anchors the DICE chain of its evidence and is not the
//     IDevID's key.
//   - "tpm": a chip on a TPM 2.0; "deviceIDKey" is the TPM's IDevID key,
//     the IDevID's, and "iak" the public area of its attestation key as the
//     factory received and checked it (provision.Service.ProvisionTPM),
//     whose quotes the evidence carries; the UEID is derived from it
//     (pluton/tpm.UEID).
//
// # Version 1
//
// Version 1 is version 2 without "kind", "deviceIDKey" and "iak" (which a
// version 1 document must not carry). Write produces version 2 only; Read
// reads both, and a version 1 device has an empty Kind: a verifier treats
// it as "dice", which every device of a version 1 export was.
//
// Devices are in strictly increasing UEID order (bytewise), so a UEID
// appears at most once. "issued" is a device whose IDevID is issued but whose
// station has not confirmed writing it; "complete" a device that holds its
// chain. Devices still ISSUING (no certificate) are never exported.
//
// # Writing
//
// [Write] streams the document page by page through registry.List, so its
// memory does not grow with the registry. [Handler] serves it over HTTP.
//
// # Reading
//
// [Read] is the verifier's side. The document is untrusted: Read is strict
// (members in order, no unknown member, no trailing data), bounded
// ([MaxSize], [MaxDevices], [MaxChainLen], [MaxCertSize], …) and checks
// each device's chain: every certificate is signed by the next, the last is
// self-signed, and the leaf's HardwareModuleName serial number is the
// device's UEID. In version 2 it also checks each device's keys
// (ErrIdentity): "deviceIDKey" parses, and is the leaf's key for "dice" and
// "tpm"; a "tpm" device's "iak" parses as a TPM-resident restricted signing
// key (pluton/tpm.ParseIAKPublic) and the UEID is derived from it. Read does not know the verifier's trust anchors: the caller
// must check that each chain ends with a root it trusts (Device.Root).
// Failures are a *FormatError matching one of the sentinels below.
package export

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/registry"
)

var (
	// ErrFormat: the document is not a version 1 export (bad JSON, a
	// member missing, unknown or out of order, a bad value).
	ErrFormat = errors.New("export: malformed export")
	// ErrVersion: the document's version is not one this package reads.
	ErrVersion = errors.New("export: unsupported version")
	// ErrTooLarge: a bound (MaxSize, MaxDevices, …) is exceeded.
	ErrTooLarge = errors.New("export: export too large")
	// ErrChain: a device's chain does not verify, or its leaf does not
	// name the device's UEID.
	ErrChain = errors.New("export: bad certificate chain")
	// ErrUnknownProduct: a device's product is not among the products
	// (Write: no policy given for it; Read: not in "products").
	ErrUnknownProduct = errors.New("export: unknown product")
	// ErrIdentity: a device's keys do not fit its kind, chain or UEID (a
	// "dice" or "tpm" device whose DeviceID key is not its IDevID's, an
	// IAK that is not one or is not the UEID's).
	ErrIdentity = errors.New("export: device keys do not match")
)

// Version is the format version Write produces. Read accepts it and
// Version1.
const Version = 2

// Version1 is the first version, without the devices' kind and keys.
const Version1 = 1

// Kind says how a device's identity was made (see the package
// documentation). The empty Kind is a device of a version 1 export.
type Kind string

// Kinds of identity.
const (
	KindDICE     Kind = "dice"
	KindInjected Kind = "injected"
	KindTPM      Kind = "tpm"
)

// Bounds on what Read accepts.
const (
	MaxSize        = 1 << 30 // bytes of the whole document
	MaxDevices     = 1 << 20
	MaxProducts    = 1024
	MaxLayers      = 16
	MaxDigests     = 64
	MaxDigestLen   = 64 // bytes
	MaxChainLen    = 4  // certificates, leaf and root included
	MaxCertSize    = registry.MaxCertificateLen
	MaxNameLen     = registry.MaxNameLen
	MaxKeySize     = registry.MaxPublicKeyLen // bytes of "deviceIDKey"
	MaxIAKSize     = registry.MaxTPMPublicLen // bytes of "iak"
	maxLayerName   = 64
	defaultPage    = 500
	stateIssued    = "issued"
	stateComplete  = "complete"
	maxUniqueCerts = 4 * MaxProducts // distinct non-leaf certificates kept
)

// Export is a parsed, checked export.
type Export struct {
	Version   int
	Generated time.Time
	Devices   []*Device
	Products  map[string]*Product
}

// Device is one provisioned device.
type Device struct {
	UEID    []byte
	Product string
	State   registry.State // registry.Issued or registry.Complete
	// Chain is the IDevID, its intermediate(s) and the root: each signed
	// by the next, the root self-signed. Non-leaf certificates are shared
	// between devices; do not modify them.
	Chain  []*x509.Certificate
	Issued time.Time
	// Kind is how the identity was made; "" in a version 1 export.
	Kind Kind
	// DeviceIDKey is the DER SubjectPublicKeyInfo of the device's
	// DeviceID key (for KindTPM the TPM's IDevID key); nil in a version 1
	// export.
	DeviceIDKey []byte
	// IAK is, for KindTPM, the TPMT_PUBLIC area of the TPM's attestation
	// key; nil otherwise.
	IAK []byte
}

// Root is the last certificate of the device's chain. The verifier must
// check that it is a root it trusts.
func (d *Device) Root() *x509.Certificate { return d.Chain[len(d.Chain)-1] }

// Product is what the verifier needs of a product.
type Product struct {
	// ReferenceValues by layer ("bootloader", "os", "app").
	ReferenceValues map[string]provision.LayerReference
}

// FormatError says where Read or Write failed. Err is one of the package's
// sentinels.
type FormatError struct {
	Device int    // index of the device, or -1
	Field  string // the member, e.g. "chain"; "" for the document
	Reason string
	Err    error
}

func (e *FormatError) Error() string {
	s := e.Err.Error()
	if e.Device >= 0 {
		s += fmt.Sprintf(": device %d", e.Device)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

func docErr(err error, field, format string, args ...any) error {
	return &FormatError{Device: -1, Field: field, Reason: fmt.Sprintf(format, args...), Err: err}
}

func devErr(i int, err error, field, format string, args ...any) error {
	return &FormatError{Device: i, Field: field, Reason: fmt.Sprintf(format, args...), Err: err}
}

// The wire format.

type wireDevice struct {
	UEID    string   `json:"ueid"`
	Product string   `json:"product"`
	State   string   `json:"state"`
	Chain   []string `json:"chain"`
	Issued  string   `json:"issued"`
	// Version 2.
	Kind        string `json:"kind,omitempty"`
	DeviceIDKey string `json:"deviceIDKey,omitempty"`
	IAK         string `json:"iak,omitempty"`
}

type wireProduct struct {
	ReferenceValues map[string]wireLayer `json:"referenceValues"`
}

type wireLayer struct {
	Digests []string `json:"digests"`
	MinSVN  uint64   `json:"minSVN"`
}

// Options tunes Write. The zero value exports every ISSUED and COMPLETE
// device of every product.
type Options struct {
	// Product exports only this product's devices and policy.
	Product string
	// CompleteOnly leaves out ISSUED devices.
	CompleteOnly bool
	// PageSize is the number of records read per registry.List call.
	// Default 500; at most 1000.
	PageSize int
	// Now is the clock of "generated". Default time.Now.
	Now func() time.Time
}

// Write streams the export of reg to w. products gives each product's CA
// chain (intermediate first, root last) and reference values; a device of
// a product not in products fails the export with ErrUnknownProduct. Memory
// is bounded by one page of records. On error, what was written is a
// truncated document that Read refuses.
func Write(ctx context.Context, w io.Writer, reg registry.Registry, products map[string]*provision.ProductPolicy, opts *Options) error {
	if opts == nil {
		opts = &Options{}
	}
	now, page := opts.Now, opts.PageSize
	if now == nil {
		now = time.Now
	}
	if page <= 0 || page > 1000 {
		page = defaultPage
	}
	names := slices.Sorted(maps.Keys(products))
	if opts.Product != "" {
		if products[opts.Product] == nil {
			return fmt.Errorf("%w: %q", ErrUnknownProduct, opts.Product)
		}
		names = []string{opts.Product}
	}
	wp := make(map[string]wireProduct, len(names))
	tails := make(map[string][]string, len(names))
	for _, n := range names {
		p := products[n]
		if p == nil || len(p.Chain) == 0 || len(p.Chain)+1 > MaxChainLen {
			return fmt.Errorf("export: product %q: CA chain of %d certificates, want 1 to %d", n, chainLen(p), MaxChainLen-1)
		}
		for _, c := range p.Chain {
			tails[n] = append(tails[n], base64.StdEncoding.EncodeToString(c.Raw))
		}
		if len(p.ReferenceValues) == 0 || len(p.ReferenceValues) > MaxLayers {
			return fmt.Errorf("export: product %q: %d layers of reference values, want 1 to %d", n, len(p.ReferenceValues), MaxLayers)
		}
		rv := make(map[string]wireLayer, len(p.ReferenceValues))
		for l, ref := range p.ReferenceValues {
			wl := wireLayer{MinSVN: ref.MinSVN, Digests: []string{}}
			for _, d := range ref.Digests {
				wl.Digests = append(wl.Digests, hex.EncodeToString(d))
			}
			rv[l] = wl
		}
		wp[n] = wireProduct{ReferenceValues: rv}
	}

	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintf(bw, `{"version":%d,"generated":%q,"devices":[`, Version, now().UTC().Format(time.RFC3339))
	first := true
	req := &registry.ListRequest{Product: opts.Product, Limit: page}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs, err := reg.List(ctx, req)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		for _, r := range recs {
			switch {
			case r.State == registry.Complete:
			case r.State == registry.Issued && !opts.CompleteOnly:
			default:
				continue
			}
			tail, ok := tails[r.Product]
			if !ok {
				return fmt.Errorf("%w: device %x has product %q", ErrUnknownProduct, r.UEID, r.Product)
			}
			if len(r.Certificate) == 0 {
				return fmt.Errorf("export: device %x in state %v has no certificate", r.UEID, r.State)
			}
			d := wireDevice{
				UEID: hex.EncodeToString(r.UEID), Product: r.Product, State: stateIssued,
				Chain:  append([]string{base64.StdEncoding.EncodeToString(r.Certificate)}, tail...),
				Issued: r.IssuedAt.UTC().Format(time.RFC3339),
				Kind:   string(KindDICE), DeviceIDKey: base64.StdEncoding.EncodeToString(r.PublicKey),
			}
			switch {
			case r.Injected != nil:
				d.Kind = string(KindInjected)
			case r.TPMIAK != nil:
				d.Kind = string(KindTPM)
				d.IAK = base64.StdEncoding.EncodeToString(r.TPMIAK)
			}
			if r.State == registry.Complete {
				d.State = stateComplete
			}
			b, err := json.Marshal(d)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if !first {
				bw.WriteByte(',')
			}
			first = false
			if _, err := bw.Write(b); err != nil {
				return fmt.Errorf("export: %w", err)
			}
		}
		if len(recs) < page {
			break
		}
		req.After = recs[len(recs)-1].UEID
	}
	b, err := json.Marshal(wp)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	bw.WriteString(`],"products":`)
	bw.Write(b)
	bw.WriteString("}\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func chainLen(p *provision.ProductPolicy) int {
	if p == nil {
		return 0
	}
	return len(p.Chain)
}

// Read parses and checks an untrusted export (see the package
// documentation for what is checked). It reads at most MaxSize bytes.
func Read(r io.Reader) (*Export, error) {
	lr := &io.LimitedReader{R: r, N: MaxSize + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	tooLarge := func(err error) error {
		if lr.N <= 0 {
			return docErr(ErrTooLarge, "", "more than %d bytes", MaxSize)
		}
		return docErr(ErrFormat, "", "%v", err)
	}
	if err := delim(dec, '{'); err != nil {
		return nil, tooLarge(err)
	}
	e := &Export{}

	// 1. "version", first, so that nothing else is read under another
	// version's rules.
	if err := key(dec, "version"); err != nil {
		return nil, tooLarge(err)
	}
	if err := dec.Decode(&e.Version); err != nil {
		return nil, tooLarge(err)
	}
	if e.Version != Version && e.Version != Version1 {
		return nil, docErr(ErrVersion, "version", "%d, want %d or %d", e.Version, Version1, Version)
	}

	// 2. "generated".
	if err := key(dec, "generated"); err != nil {
		return nil, tooLarge(err)
	}
	var gen string
	if err := dec.Decode(&gen); err != nil {
		return nil, tooLarge(err)
	}
	var err error
	if e.Generated, err = parseTime(gen); err != nil {
		return nil, docErr(ErrFormat, "generated", "%v", err)
	}

	// 3. "devices", one at a time. Non-leaf certificates are parsed once
	// and shared.
	if err := key(dec, "devices"); err != nil {
		return nil, tooLarge(err)
	}
	if err := delim(dec, '['); err != nil {
		return nil, tooLarge(err)
	}
	cache := map[string]*x509.Certificate{}
	for dec.More() {
		i := len(e.Devices)
		if i >= MaxDevices {
			return nil, docErr(ErrTooLarge, "devices", "more than %d", MaxDevices)
		}
		var wd wireDevice
		if err := dec.Decode(&wd); err != nil {
			if lr.N <= 0 {
				return nil, tooLarge(err)
			}
			return nil, devErr(i, ErrFormat, "", "%v", err)
		}
		d, err := parseDevice(i, e.Version, &wd, cache)
		if err != nil {
			return nil, err
		}
		if i > 0 && bytes.Compare(e.Devices[i-1].UEID, d.UEID) >= 0 {
			return nil, devErr(i, ErrFormat, "ueid", "%x not after %x", d.UEID, e.Devices[i-1].UEID)
		}
		e.Devices = append(e.Devices, d)
	}
	if err := delim(dec, ']'); err != nil {
		return nil, tooLarge(err)
	}

	// 4. "products".
	if err := key(dec, "products"); err != nil {
		return nil, tooLarge(err)
	}
	var wp map[string]*wireProduct
	if err := dec.Decode(&wp); err != nil {
		return nil, tooLarge(err)
	}
	if e.Products, err = parseProducts(wp); err != nil {
		return nil, err
	}
	for i, d := range e.Devices {
		if e.Products[d.Product] == nil {
			return nil, devErr(i, ErrUnknownProduct, "product", "%q", d.Product)
		}
	}

	// 5. The end of the object, and of the document.
	if err := delim(dec, '}'); err != nil {
		return nil, tooLarge(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if lr.N <= 0 {
			return nil, docErr(ErrTooLarge, "", "more than %d bytes", MaxSize)
		}
		return nil, docErr(ErrFormat, "", "trailing data")
	}
	return e, nil
}

func delim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("got %v, want %q", t, want)
	}
	return nil
}

func key(dec *json.Decoder, want string) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if s, ok := t.(string); !ok || s != want {
		return fmt.Errorf("got %v, want member %q", t, want)
	}
	return nil
}

func parseTime(s string) (time.Time, error) {
	if len(s) > 64 {
		return time.Time{}, errors.New("too long")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, err
	}
	if t.IsZero() {
		return time.Time{}, errors.New("zero time")
	}
	return t, nil
}

func parseDevice(i, version int, wd *wireDevice, cache map[string]*x509.Certificate) (*Device, error) {
	d := &Device{Product: wd.Product}
	if len(wd.UEID) == 0 || len(wd.UEID) > 2*registry.MaxUEIDLen {
		return nil, devErr(i, ErrFormat, "ueid", "%d hex digits, want 2 to %d", len(wd.UEID), 2*registry.MaxUEIDLen)
	}
	var err error
	if d.UEID, err = hex.DecodeString(wd.UEID); err != nil {
		return nil, devErr(i, ErrFormat, "ueid", "not hex")
	}
	if wd.Product == "" || len(wd.Product) > MaxNameLen {
		return nil, devErr(i, ErrFormat, "product", "%d bytes, want 1 to %d", len(wd.Product), MaxNameLen)
	}
	switch wd.State {
	case stateIssued:
		d.State = registry.Issued
	case stateComplete:
		d.State = registry.Complete
	default:
		return nil, devErr(i, ErrFormat, "state", "%.32q, want %q or %q", wd.State, stateIssued, stateComplete)
	}
	if d.Issued, err = parseTime(wd.Issued); err != nil {
		return nil, devErr(i, ErrFormat, "issued", "%v", err)
	}
	if len(wd.Chain) < 2 || len(wd.Chain) > MaxChainLen {
		return nil, devErr(i, ErrFormat, "chain", "%d certificates, want 2 to %d", len(wd.Chain), MaxChainLen)
	}
	for j, s := range wd.Chain {
		if len(s) > base64.StdEncoding.EncodedLen(MaxCertSize) {
			return nil, devErr(i, ErrTooLarge, "chain", "certificate %d larger than %d bytes", j, MaxCertSize)
		}
		if j > 0 {
			if c, ok := cache[s]; ok {
				d.Chain = append(d.Chain, c)
				continue
			}
		}
		der, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, devErr(i, ErrFormat, "chain", "certificate %d: not base64", j)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, devErr(i, ErrChain, "chain", "certificate %d: %v", j, err)
		}
		if j > 0 {
			if len(cache) >= maxUniqueCerts {
				return nil, devErr(i, ErrTooLarge, "chain", "more than %d distinct CA certificates", maxUniqueCerts)
			}
			cache[s] = c
		}
		d.Chain = append(d.Chain, c)
	}
	// Each certificate is signed by the next (CheckSignatureFrom also
	// requires the next to be a CA), and the last signs itself.
	for j, c := range d.Chain {
		parent := d.Root()
		if j+1 < len(d.Chain) {
			parent = d.Chain[j+1]
		}
		if !bytes.Equal(c.RawIssuer, parent.RawSubject) {
			return nil, devErr(i, ErrChain, "chain", "certificate %d's issuer is not certificate %d's subject", j, min(j+1, len(d.Chain)-1))
		}
		if err := c.CheckSignatureFrom(parent); err != nil {
			return nil, devErr(i, ErrChain, "chain", "certificate %d: %v", j, err)
		}
	}
	leaf := d.Chain[0]
	if leaf.IsCA {
		return nil, devErr(i, ErrChain, "chain", "the leaf is a CA certificate")
	}
	_, sn, err := ca.HardwareModuleName(leaf)
	if err != nil {
		return nil, devErr(i, ErrChain, "chain", "leaf: %v", err)
	}
	if !bytes.Equal(sn, d.UEID) {
		return nil, devErr(i, ErrChain, "chain", "leaf names UEID %x", sn)
	}
	if err := parseKeys(i, version, wd, d); err != nil {
		return nil, err
	}
	return d, nil
}

// parseKeys reads and checks a device's version 2 members: its kind, its
// DeviceID key and, on a TPM, its IAK. A version 1 device has none.
func parseKeys(i, version int, wd *wireDevice, d *Device) error {
	if version == Version1 {
		if wd.Kind != "" || wd.DeviceIDKey != "" || wd.IAK != "" {
			return devErr(i, ErrFormat, "", "a version 1 device has no kind, deviceIDKey or iak")
		}
		return nil
	}
	switch k := Kind(wd.Kind); k {
	case KindDICE, KindInjected, KindTPM:
		d.Kind = k
	default:
		return devErr(i, ErrFormat, "kind", "%.32q, want %q, %q or %q", wd.Kind, KindDICE, KindInjected, KindTPM)
	}
	if wd.DeviceIDKey == "" || len(wd.DeviceIDKey) > base64.StdEncoding.EncodedLen(MaxKeySize) {
		return devErr(i, ErrFormat, "deviceIDKey", "%d characters, want 1 to %d", len(wd.DeviceIDKey), base64.StdEncoding.EncodedLen(MaxKeySize))
	}
	var err error
	if d.DeviceIDKey, err = base64.StdEncoding.Strict().DecodeString(wd.DeviceIDKey); err != nil {
		return devErr(i, ErrFormat, "deviceIDKey", "not base64")
	}
	pub, err := x509.ParsePKIXPublicKey(d.DeviceIDKey)
	if err != nil {
		return devErr(i, ErrIdentity, "deviceIDKey", "%v", err)
	}
	leafKey, ok := d.Chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	same := ok && leafKey.Equal(pub)
	if d.Kind != KindInjected && !same {
		return devErr(i, ErrIdentity, "deviceIDKey", "a %q device's DeviceID key is not its IDevID's", d.Kind)
	}
	if d.Kind != KindTPM {
		if wd.IAK != "" {
			return devErr(i, ErrFormat, "iak", "only a %q device has an IAK", KindTPM)
		}
		return nil
	}
	if wd.IAK == "" || len(wd.IAK) > base64.StdEncoding.EncodedLen(MaxIAKSize) {
		return devErr(i, ErrFormat, "iak", "%d characters, want 1 to %d", len(wd.IAK), base64.StdEncoding.EncodedLen(MaxIAKSize))
	}
	if d.IAK, err = base64.StdEncoding.Strict().DecodeString(wd.IAK); err != nil {
		return devErr(i, ErrFormat, "iak", "not base64")
	}
	iak, err := tpm.ParseIAKPublic(d.IAK)
	if err != nil {
		return devErr(i, ErrIdentity, "iak", "%v", err)
	}
	if u, err := tpm.UEID(iak); err != nil || !bytes.Equal(u, d.UEID) {
		return devErr(i, ErrIdentity, "iak", "the UEID is not the IAK's")
	}
	return nil
}

func parseProducts(wp map[string]*wireProduct) (map[string]*Product, error) {
	if wp == nil {
		return nil, docErr(ErrFormat, "products", "null")
	}
	if len(wp) > MaxProducts {
		return nil, docErr(ErrTooLarge, "products", "%d, at most %d", len(wp), MaxProducts)
	}
	out := make(map[string]*Product, len(wp))
	for name, p := range wp {
		field := "products." + name
		if name == "" || len(name) > MaxNameLen {
			return nil, docErr(ErrFormat, "products", "name of %d bytes, want 1 to %d", len(name), MaxNameLen)
		}
		if p == nil || len(p.ReferenceValues) == 0 {
			return nil, docErr(ErrFormat, field, "no reference values")
		}
		if len(p.ReferenceValues) > MaxLayers {
			return nil, docErr(ErrTooLarge, field, "%d layers, at most %d", len(p.ReferenceValues), MaxLayers)
		}
		rv := make(map[string]provision.LayerReference, len(p.ReferenceValues))
		for l, wl := range p.ReferenceValues {
			if l == "" || len(l) > maxLayerName {
				return nil, docErr(ErrFormat, field, "layer name of %d bytes", len(l))
			}
			if len(wl.Digests) == 0 || len(wl.Digests) > MaxDigests {
				return nil, docErr(ErrFormat, field, "layer %q: %d digests, want 1 to %d", l, len(wl.Digests), MaxDigests)
			}
			ref := provision.LayerReference{MinSVN: wl.MinSVN}
			for _, s := range wl.Digests {
				b, err := hex.DecodeString(s)
				if err != nil || len(b) == 0 || len(b) > MaxDigestLen {
					return nil, docErr(ErrFormat, field, "layer %q: digest is not 1 to %d bytes of hex", l, MaxDigestLen)
				}
				ref.Digests = append(ref.Digests, b)
			}
			rv[l] = ref
		}
		out[name] = &Product{ReferenceValues: rv}
	}
	return out, nil
}
