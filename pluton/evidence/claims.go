package evidence

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/rootline/rootline/internal/strictcbor"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/measure"
)

// The wire form of the claims set: see the claim key table in the package
// documentation. Struct tags carry the claim keys.
type claimsWire struct {
	Nonce     []byte                      `cbor:"10,keyasint"`            // eat_nonce
	UEID      []byte                      `cbor:"256,keyasint"`           // ueid
	DbgStat   *uint64                     `cbor:"263,keyasint"`           // dbgstat
	Profile   string                      `cbor:"265,keyasint"`           // eat_profile
	Submods   map[string]submodWire       `cbor:"266,keyasint,omitempty"` // submods
	Lifecycle string                      `cbor:"-65537,keyasint"`        // rootline lifecycle
	Product   string                      `cbor:"-65538,keyasint,omitempty"`
	Counters  map[string]uint64           `cbor:"-65539,keyasint,omitempty"`
	Registers map[int64]map[uint64][]byte `cbor:"-65540,keyasint,omitempty"`
	EventLog  []byte                      `cbor:"-65541,keyasint,omitempty"`
	TPMQuote  *tpmQuoteWire               `cbor:"-65544,keyasint,omitempty"`
}

// tpmQuoteWire is the rootline-tpm-quote claim: { 1 => attest, 2 =>
// signature, 3 => bank, 4 => [ + pcr ] }.
type tpmQuoteWire struct {
	Attest    []byte   `cbor:"1,keyasint"`
	Signature []byte   `cbor:"2,keyasint"`
	Bank      *int64   `cbor:"3,keyasint"`
	PCRs      []uint64 `cbor:"4,keyasint"`
}

// submodWire is the Claims-Set of one layer's submodule (RFC 9711,
// §4.2.18.1).
type submodWire struct {
	SwName     string          `cbor:"270,keyasint"`  // swname
	SwVersion  *swVersionWire  `cbor:"271,keyasint"`  // swversion
	Components []componentWire `cbor:"2399,keyasint"` // psa-software-components
	SVN        *uint64         `cbor:"-65542,keyasint"`
	BootIndex  *uint64         `cbor:"-65543,keyasint"`
}

// swVersionWire is sw-version-type = [ version: tstr, ? scheme:
// $version-scheme ] (RFC 9711, §4.2.7), always with its scheme here.
type swVersionWire struct {
	_       struct{} `cbor:",toarray"`
	Version string
	Scheme  int64
}

// componentWire is a psa-software-component (RFC 9783, §4.4.1, "Software
// Components") with
// measurement-value (2), signer-id (5) and measurement-desc (6).
type componentWire struct {
	Value  []byte `cbor:"2,keyasint"`
	Signer []byte `cbor:"5,keyasint"`
	Desc   string `cbor:"6,keyasint"`
}

// versionSchemeSemVer is the CoSWID version-scheme "semver" (RFC 9393,
// §4.1; IANA "Software Tag Version Scheme Values").
const versionSchemeSemVer = 16384

// dbgstat values (RFC 9711, §4.2.9).
const (
	dbgEnabled                     = 0
	dbgDisabledSinceBoot           = 2
	dbgDisabledFullyAndPermanently = 4
)

// debugStatus derives the dbgstat claim from the lifecycle. Locked closes
// debug by fuse, but the manufacturer can reopen it by moving the chip to
// RMA: that is "disabled-permanently" (3), which RFC 9711, §4.2.9.4 allows
// only with an oemid claim, which this profile does not have; so Locked
// says "disabled-since-boot" (2), true and weaker.
func debugStatus(l pluton.Lifecycle) uint64 {
	switch l {
	case pluton.Locked:
		return dbgDisabledSinceBoot
	case pluton.Decommissioned:
		return dbgDisabledFullyAndPermanently
	}
	return dbgEnabled
}

// COSE algorithm identifiers of the hash functions (RFC 9054, §2), the
// keys of the registers claim.
const (
	coseSHA256 = -16
	coseSHA384 = -43
)

func bankID(h crypto.Hash) (int64, bool) {
	switch h {
	case crypto.SHA256:
		return coseSHA256, true
	case crypto.SHA384:
		return coseSHA384, true
	}
	return 0, false
}

func bankHash(id int64) (crypto.Hash, bool) {
	switch id {
	case coseSHA256:
		return crypto.SHA256, true
	case coseSHA384:
		return crypto.SHA384, true
	}
	return 0, false
}

// Hash names of the IANA "Named Information Hash Algorithm Registry" (RFC
// 6920, §9.4), as measurement-desc (RFC 9783, §4.4.1) takes them.
var hashNames = map[crypto.Hash]string{
	crypto.SHA256: "sha-256",
	crypto.SHA384: "sha-384",
	crypto.SHA512: "sha-512",
}

func hashByName(name string) (crypto.Hash, bool) {
	for h, n := range hashNames {
		if n == name {
			return h, true
		}
	}
	return 0, false
}

var (
	// semverRE is the regular expression of Semantic Versioning 2.0.0
	// (semver.org, "Is there a suggested regular expression (RegEx) to
	// check a SemVer string?"), as pluton/boot checks manifest versions.
	semverRE  = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
	layerRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9:._-]*$`)
	counterRE = regexp.MustCompile(`^[A-Za-z0-9:/._-]+$`)
	productRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// Decoding and encoding modes of the claims set. Decoding is strict:
// definite lengths only, no tags, no duplicate map keys (RFC 8949, §5.6),
// valid UTF-8, no claim the profile does not define, and bounded nesting,
// array and map sizes. Encoding is Core Deterministic Encoding (RFC 8949,
// §4.2.1), and a claims set must be in it to be accepted.
var (
	claimsDecMode = strictcbor.DecMode(strictcbor.Limits{MaxNestedLevels: 8, MaxArrayElements: measure.NumRegisters, MaxMapPairs: MaxCounters})
	claimsEncMode = strictcbor.EncMode()
)

// check checks c against the profile's rules and limits and returns its
// event log parsed (nil if it has none). Errors are *VerifyError. If
// parsed is not nil the event log is first asked of it: a Log it returns
// that measure.ParseLog made from exactly c.EventLog
// (measure.Log.ParsedFrom) is the Log parsing would give, and is returned
// without parsing again.
func (c *Claims) check(parsed func([]byte) *measure.Log) (*measure.Log, error) {
	if c == nil {
		return nil, malformed("no claims")
	}
	if n := len(c.Nonce); n < MinNonceSize || n > MaxNonceSize {
		return nil, malformed("eat_nonce of %d bytes (want %d to %d, RFC 9711, §4.1)", n, MinNonceSize, MaxNonceSize)
	}
	if n := len(c.UEID); n < MinUEIDSize || n > MaxUEIDSize {
		return nil, malformed("ueid of %d bytes (want %d to %d, RFC 9711, §4.2.1)", n, MinUEIDSize, MaxUEIDSize)
	}
	if !c.Lifecycle.Valid() {
		return nil, malformed("unknown lifecycle %v", c.Lifecycle)
	}
	if c.Product != "" {
		if len(c.Product) > MaxProductLen {
			return nil, tooLarge("product longer than %d bytes", MaxProductLen)
		}
		if !productRE.MatchString(c.Product) {
			return nil, malformed("product %q is not [A-Za-z0-9][A-Za-z0-9._-]*", c.Product)
		}
	}
	if len(c.Counters) > MaxCounters {
		return nil, tooLarge("%d counters (at most %d)", len(c.Counters), MaxCounters)
	}
	for name := range c.Counters {
		if len(name) > MaxCounterNameLen {
			return nil, tooLarge("counter name longer than %d bytes", MaxCounterNameLen)
		}
		if !counterRE.MatchString(name) {
			return nil, malformed("counter name %q is not [A-Za-z0-9:/._-]+", name)
		}
	}
	if err := validateLayers(c.Layers); err != nil {
		return nil, err
	}
	for h, regs := range c.Registers {
		if _, ok := bankID(h); !ok {
			return nil, malformed("register bank %v (want SHA-256 or SHA-384)", h)
		}
		if len(regs) == 0 {
			return nil, malformed("register bank %v without registers", h)
		}
		for i, v := range regs {
			if i < 0 || i >= measure.NumRegisters {
				return nil, malformed("register index %d (want 0 to %d)", i, measure.NumRegisters-1)
			}
			if len(v) != h.Size() {
				return nil, malformed("%v register %d of %d bytes", h, i, len(v))
			}
		}
	}
	if err := c.validateTPMQuote(); err != nil {
		return nil, err
	}
	if len(c.EventLog) == 0 {
		return nil, nil
	}
	if len(c.EventLog) > MaxEventLogSize {
		return nil, tooLarge("event log of %d bytes (at most %d)", len(c.EventLog), MaxEventLogSize)
	}
	if len(c.Registers) == 0 {
		return nil, malformed("event log without register values to replay it against")
	}
	if parsed != nil {
		if l := parsed(c.EventLog); l.ParsedFrom(c.EventLog) {
			return l, nil
		}
	}
	l, err := measure.ParseLog(c.EventLog)
	if err != nil {
		return nil, refuse(ErrMalformed, err, "event log")
	}
	return l, nil
}

// validateTPMQuote checks the form of the TPM quote claim: sizes, bank,
// PCR list, and that Registers hold what it quotes.
func (c *Claims) validateTPMQuote() error {
	q := c.TPMQuote
	if q == nil {
		return nil
	}
	if len(q.Attest) == 0 || len(q.Signature) == 0 {
		return malformed("TPM quote without its attestation structure or signature")
	}
	if len(q.Attest) > MaxTPMQuoteSize || len(q.Signature) > MaxTPMQuoteSize {
		return tooLarge("TPM quote attestation or signature longer than %d bytes", MaxTPMQuoteSize)
	}
	if _, ok := bankID(q.Bank); !ok {
		return malformed("TPM quote of bank %v (want SHA-256 or SHA-384)", q.Bank)
	}
	if len(q.PCRs) == 0 {
		return malformed("TPM quote of no PCR")
	}
	regs := c.Registers[q.Bank]
	for j, i := range q.PCRs {
		if i < 0 || i >= measure.NumRegisters {
			return malformed("TPM quote of PCR %d (want 0 to %d)", i, measure.NumRegisters-1)
		}
		if j > 0 && i <= q.PCRs[j-1] {
			return malformed("TPM quote PCRs not strictly increasing")
		}
		if _, ok := regs[i]; !ok {
			return malformed("TPM quote of %v PCR %d, which the registers claim does not hold", q.Bank, i)
		}
	}
	return nil
}

func validateLayers(layers []Measurement) error {
	if len(layers) > MaxLayers {
		return tooLarge("%d layers (at most %d)", len(layers), MaxLayers)
	}
	for i := range layers {
		m := &layers[i]
		if len(m.Layer) > MaxNameLen {
			return tooLarge("layer name longer than %d bytes", MaxNameLen)
		}
		if !layerRE.MatchString(m.Layer) {
			return malformed("layer name %q is not [a-z0-9][a-z0-9:._-]*", m.Layer)
		}
		if slices.ContainsFunc(layers[:i], func(o Measurement) bool { return o.Layer == m.Layer }) {
			return malformed("layer %q twice", m.Layer)
		}
		if len(m.Version) > MaxVersionLen {
			return tooLarge("layer %q: version longer than %d bytes", m.Layer, MaxVersionLen)
		}
		if !semverRE.MatchString(m.Version) {
			return malformed("layer %q: version %q is not a semantic version (SemVer 2.0.0)", m.Layer, m.Version)
		}
		name, ok := hashNames[m.DigestAlg]
		if !ok {
			return malformed("layer %q: digest algorithm %v (want SHA-256, SHA-384 or SHA-512)", m.Layer, m.DigestAlg)
		}
		if len(m.Digest) != m.DigestAlg.Size() {
			return malformed("layer %q: %s digest of %d bytes", m.Layer, name, len(m.Digest))
		}
		// psa-hash-type = bytes .size 32 / bytes .size 48 / bytes .size 64
		// (RFC 9783, §4.4.1).
		if n := len(m.SignerID); n != 32 && n != 48 && n != 64 {
			return malformed("layer %q: signer id of %d bytes (want 32, 48 or 64)", m.Layer, n)
		}
	}
	return nil
}

// encodeClaims validates c and encodes it as the payload of a token.
func encodeClaims(c *Claims) ([]byte, error) {
	b, _, err := encodeChecked(c, nil)
	return b, err
}

// encodeChecked is encodeClaims, with c.check(parsed) as its validation;
// it also returns the event log parsed.
func encodeChecked(c *Claims, parsed func([]byte) *measure.Log) ([]byte, *measure.Log, error) {
	l, err := c.check(parsed)
	if err != nil {
		return nil, nil, err
	}
	dbg := debugStatus(c.Lifecycle)
	w := claimsWire{
		Nonce:     c.Nonce,
		UEID:      c.UEID,
		DbgStat:   &dbg,
		Profile:   Profile,
		Lifecycle: c.Lifecycle.String(),
		Product:   c.Product,
		Counters:  c.Counters,
		EventLog:  c.EventLog,
	}
	if len(c.Layers) > 0 {
		w.Submods = make(map[string]submodWire, len(c.Layers))
	}
	for i, m := range c.Layers {
		svn, index := m.SVN, uint64(i)
		w.Submods[m.Layer] = submodWire{
			SwName:     m.Layer,
			SwVersion:  &swVersionWire{Version: m.Version, Scheme: versionSchemeSemVer},
			Components: []componentWire{{Value: m.Digest, Signer: m.SignerID, Desc: hashNames[m.DigestAlg]}},
			SVN:        &svn,
			BootIndex:  &index,
		}
	}
	if len(c.Registers) > 0 {
		w.Registers = make(map[int64]map[uint64][]byte, len(c.Registers))
		for h, regs := range c.Registers {
			id, _ := bankID(h)
			bank := make(map[uint64][]byte, len(regs))
			for i, v := range regs {
				bank[uint64(i)] = v
			}
			w.Registers[id] = bank
		}
	}
	if q := c.TPMQuote; q != nil {
		bank, _ := bankID(q.Bank)
		pcrs := make([]uint64, len(q.PCRs))
		for j, i := range q.PCRs {
			pcrs[j] = uint64(i)
		}
		w.TPMQuote = &tpmQuoteWire{Attest: q.Attest, Signature: q.Signature, Bank: &bank, PCRs: pcrs}
	}
	b, err := claimsEncMode.Marshal(&w)
	if err != nil {
		return nil, nil, fmt.Errorf("evidence: encoding claims: %w", err)
	}
	return b, l, nil
}

// decodeClaims decodes and checks an untrusted claims set, its event log
// asked of parsed first (see check; parsed may be nil). Errors are
// *VerifyError.
func decodeClaims(payload []byte, parsed func([]byte) *measure.Log) (*Claims, *measure.Log, error) {
	var w claimsWire
	if err := claimsDecMode.Unmarshal(payload, &w); err != nil {
		return nil, nil, cborError(err)
	}
	switch {
	case w.Nonce == nil:
		return nil, nil, malformed("no eat_nonce claim (10)")
	case w.UEID == nil:
		return nil, nil, malformed("no ueid claim (256)")
	case w.DbgStat == nil:
		return nil, nil, malformed("no dbgstat claim (263)")
	case w.Profile != Profile:
		return nil, nil, malformed("eat_profile %q (want %q)", short(w.Profile), Profile)
	}
	c := &Claims{
		Nonce:    w.Nonce,
		UEID:     w.UEID,
		Product:  w.Product,
		Counters: w.Counters,
		EventLog: w.EventLog,
	}
	var ok bool
	if c.Lifecycle, ok = parseLifecycle(w.Lifecycle); !ok {
		return nil, nil, malformed("lifecycle %q", short(w.Lifecycle))
	}
	if want := debugStatus(c.Lifecycle); *w.DbgStat != want {
		return nil, nil, malformed("dbgstat %d in lifecycle %v (want %d)", *w.DbgStat, c.Lifecycle, want)
	}
	if len(w.Submods) > MaxLayers {
		return nil, nil, tooLarge("%d submodules (at most %d)", len(w.Submods), MaxLayers)
	}
	if len(w.Submods) > 0 {
		c.Layers = make([]Measurement, len(w.Submods))
		for name, s := range w.Submods {
			m, index, err := decodeLayer(name, &s, len(w.Submods))
			if err != nil {
				return nil, nil, err
			}
			if c.Layers[index].Layer != "" {
				return nil, nil, malformed("submodules %q and %q have the same boot index %d", short(c.Layers[index].Layer), short(name), index)
			}
			c.Layers[index] = m
		}
	}
	if len(w.Registers) > 0 {
		c.Registers = make(map[crypto.Hash]map[int][]byte, len(w.Registers))
		for id, regs := range w.Registers {
			h, ok := bankHash(id)
			if !ok {
				return nil, nil, malformed("register bank %d (want %d, SHA-256, or %d, SHA-384)", id, coseSHA256, coseSHA384)
			}
			bank := make(map[int][]byte, len(regs))
			for i, v := range regs {
				if i >= measure.NumRegisters {
					return nil, nil, malformed("register index %d (want 0 to %d)", i, measure.NumRegisters-1)
				}
				bank[int(i)] = v
			}
			c.Registers[h] = bank
		}
	}
	if q := w.TPMQuote; q != nil {
		if q.Attest == nil || q.Signature == nil || q.Bank == nil || q.PCRs == nil {
			return nil, nil, malformed("TPM quote claim (-65544) without attest (1), signature (2), bank (3) or PCRs (4)")
		}
		h, ok := bankHash(*q.Bank)
		if !ok {
			return nil, nil, malformed("TPM quote bank %d (want %d, SHA-256, or %d, SHA-384)", *q.Bank, coseSHA256, coseSHA384)
		}
		pcrs := make([]int, len(q.PCRs))
		for j, i := range q.PCRs {
			if i >= measure.NumRegisters {
				return nil, nil, malformed("TPM quote of PCR %d (want 0 to %d)", i, measure.NumRegisters-1)
			}
			pcrs[j] = int(i)
		}
		c.TPMQuote = &TPMQuote{Attest: q.Attest, Signature: q.Signature, Bank: h, PCRs: pcrs}
	}
	l, err := c.check(parsed)
	if err != nil {
		return nil, nil, err
	}
	// One encoding per claims set: what decodes must encode back to the
	// same bytes. This also refuses what the decoder tolerates in place of
	// the profile's types (an array of small integers or null where a byte
	// string belongs), non-preferred integer encodings and unsorted maps.
	again, err := claimsEncMode.Marshal(&w)
	if err != nil || !bytes.Equal(again, payload) {
		return nil, nil, malformed("claims set is not in the profile's types and deterministic encoding (RFC 8949, §4.2.1)")
	}
	return c, l, nil
}

// decodeLayer checks one submodule and returns its measurement and boot
// index.
func decodeLayer(name string, s *submodWire, n int) (Measurement, int, error) {
	switch {
	case s.SwName != name:
		return Measurement{}, 0, malformed("submodule %q: swname %q is not its name", short(name), short(s.SwName))
	case s.SwVersion == nil:
		return Measurement{}, 0, malformed("submodule %q: no swversion claim (271)", short(name))
	case s.SwVersion.Scheme != versionSchemeSemVer:
		return Measurement{}, 0, malformed("submodule %q: version scheme %d (want semver, %d)", short(name), s.SwVersion.Scheme, versionSchemeSemVer)
	case len(s.Components) != 1:
		return Measurement{}, 0, malformed("submodule %q: %d software components (want 1)", short(name), len(s.Components))
	case s.SVN == nil:
		return Measurement{}, 0, malformed("submodule %q: no svn claim (-65542)", short(name))
	case s.BootIndex == nil:
		return Measurement{}, 0, malformed("submodule %q: no boot index claim (-65543)", short(name))
	case *s.BootIndex >= uint64(n):
		return Measurement{}, 0, malformed("submodule %q: boot index %d of %d layers", short(name), *s.BootIndex, n)
	}
	comp := &s.Components[0]
	h, ok := hashByName(comp.Desc)
	if !ok {
		return Measurement{}, 0, malformed("submodule %q: measurement-desc %q (want sha-256, sha-384 or sha-512)", short(name), short(comp.Desc))
	}
	if comp.Value == nil || comp.Signer == nil {
		return Measurement{}, 0, malformed("submodule %q: software component without measurement-value or signer-id", short(name))
	}
	return Measurement{
		Layer:     name,
		Version:   s.SwVersion.Version,
		SVN:       *s.SVN,
		Digest:    comp.Value,
		DigestAlg: h,
		SignerID:  comp.Signer,
	}, int(*s.BootIndex), nil
}

// parseLifecycle is the exact inverse of pluton.Lifecycle.String for the
// defined states (pluton.ParseLifecycle also ignores case and spaces).
func parseLifecycle(s string) (pluton.Lifecycle, bool) {
	for l := pluton.Lifecycle(0); l.Valid(); l++ {
		if l.String() == s {
			return l, true
		}
	}
	return 0, false
}

// short returns s, cut to 64 bytes (at a UTF-8 boundary) with "…" if it
// is longer: untrusted strings quoted in errors stay short.
func short(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// cborError classifies a decoding error: a structural limit is ErrTooLarge,
// anything else ErrMalformed.
func cborError(err error) error {
	var tooBig *cbor.MaxArrayElementsError
	var tooMany *cbor.MaxMapPairsError
	var tooDeep *cbor.MaxNestedLevelError
	if errors.As(err, &tooBig) || errors.As(err, &tooMany) || errors.As(err, &tooDeep) {
		return refuse(ErrTooLarge, err, "claims set exceeds a structural limit")
	}
	return refuse(ErrMalformed, err, "claims set")
}
