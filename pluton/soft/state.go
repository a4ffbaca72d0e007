package soft

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"

	"github.com/rootline/rootline/internal/strictcbor"
	"github.com/rootline/rootline/pluton"
)

// The state file is the emulated chip's silicon: its fuses and key slots.
//
//	offset  size  field
//	0       8     magic "RLCHIP\x00\x01"
//	8       2     format version, big endian: 1, or 2 for a state with
//	              injected secrets or injection records (the lowest that
//	              can hold the state, so older files are unchanged)
//	10      4     payload length N, big endian (at most maxPayload)
//	14      N     payload: deterministic CBOR (RFC 8949 §4.2.1) of chipState
//	14+N    32    SHA-256 of bytes [0, 14+N)
//
// A file that is shorter or longer than its header says, whose digest does
// not match, whose version is unknown, or whose payload fails validation is
// refused as a whole: it is never half-loaded.

const (
	stateVersion = 2 // the newest version this build reads; see chipState.version
	headerLen    = 14
	digestLen    = sha256.Size
	maxPayload   = 1 << 20

	udsLen  = 32
	ueidLen = 17 // RFC 9711 §4.2.1: type byte 0x01 (RAND) + 16 random bytes

	maxKeySlots = 64
	maxCounters = 32
	maxCounter  = 1<<32 - 1
)

var stateMagic = [8]byte{'R', 'L', 'C', 'H', 'I', 'P', 0, 1}

// Errors about the state file. They are wrapped in a *StateError that names
// the file.
var (
	// ErrStateCorrupt: the file is truncated, altered or malformed.
	ErrStateCorrupt = errors.New("soft: chip state is corrupt")
	// ErrStateVersion: the file was written by a newer (or unknown) version.
	ErrStateVersion = errors.New("soft: chip state has an unsupported format version")
	// ErrNoChip: there is no chip state at the path.
	ErrNoChip = errors.New("soft: no chip state here")
	// ErrChipExists: Create found a chip already.
	ErrChipExists = errors.New("soft: a chip already exists here")
	// ErrChipInUse: another process has the chip open.
	ErrChipInUse = errors.New("soft: chip state is in use by another process")
)

// StateError reports a state file that cannot be loaded.
type StateError struct {
	Path   string
	Reason string
	Err    error // ErrStateCorrupt or ErrStateVersion, possibly wrapping more
}

func (e *StateError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%v: %s", e.Err, e.Reason)
	}
	return fmt.Sprintf("%v: %s: %s", e.Err, e.Path, e.Reason)
}

func (e *StateError) Unwrap() error { return e.Err }

// chipState is everything the fuses and slots hold. CBOR integer keys keep
// the file small and its decoding strict.
type chipState struct {
	Lifecycle    pluton.Lifecycle `cbor:"1,keyasint"`
	UDS          []byte           `cbor:"2,keyasint,omitempty"`
	UEID         []byte           `cbor:"3,keyasint,omitempty"`
	DeviceIDAlg  pluton.Algorithm `cbor:"4,keyasint,omitempty"`
	DeviceIDPub  []byte           `cbor:"5,keyasint,omitempty"` // SubjectPublicKeyInfo, kept after UDS erasure
	RootKeyHash  []byte           `cbor:"6,keyasint,omitempty"`
	NextHandle   uint32           `cbor:"7,keyasint"`
	Keys         []keySlot        `cbor:"8,keyasint,omitempty"`
	Counters     []counterFuse    `cbor:"9,keyasint,omitempty"`
	ProductID    string           `cbor:"10,keyasint,omitempty"`
	UDSDestroyed bool             `cbor:"11,keyasint,omitempty"`
	// Format version 2 adds injected secrets and the record of injected
	// blobs (inject.go). A state without them is still written as version
	// 1, byte for byte as before.
	Secrets  []secretSlot `cbor:"12,keyasint,omitempty"`
	Injected []injection  `cbor:"13,keyasint,omitempty"`
	// FactoryRootHash (version 2 too) is the hash of the factory CA
	// root's key, against which the chip checks the IDevID chain a
	// station writes into it.
	FactoryRootHash []byte `cbor:"14,keyasint,omitempty"`
}

// version is the format version s needs: 2 if it uses a field of version
// 2, else 1.
func (s *chipState) version() uint16 {
	if len(s.Secrets) != 0 || len(s.Injected) != 0 || len(s.FactoryRootHash) != 0 {
		return 2
	}
	return 1
}

type keySlot struct {
	Handle      pluton.KeyHandle   `cbor:"1,keyasint"`
	Compartment pluton.Compartment `cbor:"2,keyasint"`
	Algorithm   pluton.Algorithm   `cbor:"3,keyasint"`
	Usage       pluton.Usage       `cbor:"4,keyasint"`
	Label       string             `cbor:"5,keyasint,omitempty"`
	Private     []byte             `cbor:"6,keyasint"` // compact private form, see internal/keys
}

type counterFuse struct {
	Name        string             `cbor:"1,keyasint"`
	Compartment pluton.Compartment `cbor:"2,keyasint"`
	Value       uint64             `cbor:"3,keyasint"`
}

func (s *chipState) clone() *chipState {
	c := *s
	c.UDS = bytes.Clone(s.UDS)
	c.UEID = bytes.Clone(s.UEID)
	c.DeviceIDPub = bytes.Clone(s.DeviceIDPub)
	c.RootKeyHash = bytes.Clone(s.RootKeyHash)
	c.FactoryRootHash = bytes.Clone(s.FactoryRootHash)
	c.Keys = make([]keySlot, len(s.Keys))
	for i, k := range s.Keys {
		k.Private = bytes.Clone(k.Private)
		c.Keys[i] = k
	}
	c.Counters = append([]counterFuse(nil), s.Counters...)
	c.Secrets = make([]secretSlot, len(s.Secrets))
	for i, k := range s.Secrets {
		k.Value = bytes.Clone(k.Value)
		c.Secrets[i] = k
	}
	c.Injected = make([]injection, len(s.Injected))
	for i, r := range s.Injected {
		r.Digest = bytes.Clone(r.Digest)
		c.Injected[i] = r
	}
	if len(c.Secrets) == 0 {
		c.Secrets = nil
	}
	if len(c.Injected) == 0 {
		c.Injected = nil
	}
	return &c
}

// wipe clears the secrets held by s.
func (s *chipState) wipe() {
	clear(s.UDS)
	for i := range s.Keys {
		clear(s.Keys[i].Private)
	}
	for i := range s.Secrets {
		clear(s.Secrets[i].Value)
	}
}

var (
	encMode = strictcbor.EncMode()
	decMode = strictcbor.DecMode(strictcbor.Limits{MaxNestedLevels: 8, MaxArrayElements: 256, MaxMapPairs: 64})
)

// marshalState encodes and validates s. It refuses to write a state it
// would refuse to read.
func marshalState(s *chipState) ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("soft: refusing to write invalid state: %w", err)
	}
	payload, err := encMode.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("soft: encoding state: %w", err)
	}
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("soft: state too large (%d bytes)", len(payload))
	}
	out := make([]byte, 0, headerLen+len(payload)+digestLen)
	out = append(out, stateMagic[:]...)
	out = binary.BigEndian.AppendUint16(out, s.version())
	out = binary.BigEndian.AppendUint32(out, uint32(len(payload)))
	out = append(out, payload...)
	sum := sha256.Sum256(out)
	clear(payload)
	return append(out, sum[:]...), nil
}

// unmarshalState decodes an untrusted state file.
func unmarshalState(b []byte) (*chipState, error) {
	corrupt := func(format string, a ...any) error {
		return &StateError{Reason: fmt.Sprintf(format, a...), Err: ErrStateCorrupt}
	}
	if len(b) < headerLen+digestLen {
		return nil, corrupt("truncated: %d bytes", len(b))
	}
	if !bytes.Equal(b[:8], stateMagic[:]) {
		return nil, corrupt("not a rootline chip state (bad magic)")
	}
	v := binary.BigEndian.Uint16(b[8:10])
	if v < 1 || v > stateVersion {
		return nil, &StateError{Reason: fmt.Sprintf("format version %d, this build reads 1 to %d", v, stateVersion), Err: ErrStateVersion}
	}
	n := binary.BigEndian.Uint32(b[10:14])
	if n > maxPayload {
		return nil, corrupt("payload length %d over the %d limit", n, maxPayload)
	}
	if want := headerLen + int(n) + digestLen; len(b) != want {
		return nil, corrupt("length %d, header says %d (truncated or trailing data)", len(b), want)
	}
	body := b[:headerLen+int(n)]
	sum := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(sum[:], b[headerLen+int(n):]) != 1 {
		return nil, corrupt("checksum mismatch")
	}
	s, err := decodePayload(body[headerLen:])
	if err != nil {
		return nil, err
	}
	// One state, one file: a version-2 header on a state that needs only
	// version 1 (or the reverse) is refused.
	if s.version() != v {
		s.wipe()
		return nil, corrupt("format version %d for a state of version %d", v, s.version())
	}
	return s, nil
}

// decodePayload decodes the CBOR payload strictly: no duplicate or unknown
// keys, no tags or indefinite lengths, every invariant checked, and only the
// deterministic encoding accepted, so that a state has exactly one form.
func decodePayload(payload []byte) (*chipState, error) {
	s := new(chipState)
	if err := decMode.Unmarshal(payload, s); err != nil {
		s.wipe()
		return nil, &StateError{Reason: fmt.Sprintf("decoding: %v", err), Err: ErrStateCorrupt}
	}
	if err := s.validate(); err != nil {
		s.wipe()
		return nil, &StateError{Reason: err.Error(), Err: ErrStateCorrupt}
	}
	again, err := encMode.Marshal(s)
	canonical := err == nil && bytes.Equal(again, payload)
	clear(again)
	if !canonical {
		s.wipe()
		return nil, &StateError{Reason: "payload is not in deterministic CBOR encoding", Err: ErrStateCorrupt}
	}
	return s, nil
}

var (
	counterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9/._-]{0,63}$`)
	productIDRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

func validCounterName(name string) error {
	if !counterNameRE.MatchString(name) {
		return fmt.Errorf("%w: counter name %q (1-64 of [a-z0-9/._-])", pluton.ErrInvalidArgument, name)
	}
	return nil
}

func validProductID(id string) error {
	if !productIDRE.MatchString(id) {
		return fmt.Errorf("%w: product id %q (1-64 of [A-Za-z0-9._-])", pluton.ErrInvalidArgument, id)
	}
	return nil
}

// validate checks every invariant the rest of the package relies on.
func (s *chipState) validate() error {
	if !s.Lifecycle.Valid() {
		return fmt.Errorf("lifecycle %d unknown", s.Lifecycle)
	}
	fused := s.Lifecycle != pluton.Blank
	switch {
	case !fused:
		if len(s.UDS) != 0 || len(s.UEID) != 0 || len(s.Keys) != 0 || len(s.Counters) != 0 ||
			len(s.RootKeyHash) != 0 || s.DeviceIDAlg != 0 || len(s.DeviceIDPub) != 0 || s.UDSDestroyed ||
			len(s.Secrets) != 0 || len(s.Injected) != 0 || len(s.FactoryRootHash) != 0 {
			return errors.New("blank chip with written fuses")
		}
		if s.ProductID != "" {
			if err := validProductID(s.ProductID); err != nil {
				return err
			}
		}
		return nil
	case len(s.UEID) != ueidLen || s.UEID[0] != 0x01:
		return fmt.Errorf("UEID must be %d bytes of type RAND", ueidLen)
	case !s.DeviceIDAlg.Valid():
		return fmt.Errorf("DeviceID algorithm %d unknown", s.DeviceIDAlg)
	case len(s.DeviceIDPub) == 0 || len(s.DeviceIDPub) > 4096:
		return errors.New("DeviceID public key missing")
	}
	if s.UDSDestroyed {
		if len(s.UDS) != 0 || s.Lifecycle != pluton.Decommissioned {
			return errors.New("UDS erased but chip not decommissioned")
		}
	} else if len(s.UDS) != udsLen {
		return fmt.Errorf("UDS must be %d bytes", udsLen)
	}
	if s.ProductID != "" {
		if err := validProductID(s.ProductID); err != nil {
			return err
		}
	}
	if n := len(s.RootKeyHash); n != 0 && n != 32 && n != 48 {
		return fmt.Errorf("root key hash of %d bytes", n)
	}
	if n := len(s.FactoryRootHash); n != 0 && n != 32 && n != 48 {
		return fmt.Errorf("factory root hash of %d bytes", n)
	}
	if len(s.Keys) > maxKeySlots {
		return fmt.Errorf("%d key slots, at most %d", len(s.Keys), maxKeySlots)
	}
	seen := make(map[pluton.KeyHandle]bool, len(s.Keys))
	for _, k := range s.Keys {
		switch {
		case k.Handle <= pluton.DeviceIDHandle || uint32(k.Handle) >= s.NextHandle:
			return fmt.Errorf("key handle %d out of range", k.Handle)
		case seen[k.Handle]:
			return fmt.Errorf("key handle %d used twice", k.Handle)
		case k.Compartment.Validate() != nil:
			return fmt.Errorf("key %d: bad compartment", k.Handle)
		case !k.Algorithm.Valid():
			return fmt.Errorf("key %d: algorithm %d unknown", k.Handle, k.Algorithm)
		case !k.Usage.Valid():
			return fmt.Errorf("key %d: usage %d unknown", k.Handle, k.Usage)
		case len(k.Label) > 64:
			return fmt.Errorf("key %d: label too long", k.Handle)
		case len(k.Private) != privateLen(k.Algorithm):
			return fmt.Errorf("key %d: private key of %d bytes", k.Handle, len(k.Private))
		}
		seen[k.Handle] = true
	}
	if len(s.Counters) > maxCounters {
		return fmt.Errorf("%d counters, at most %d", len(s.Counters), maxCounters)
	}
	names := make(map[string]bool, len(s.Counters))
	for _, c := range s.Counters {
		switch {
		case validCounterName(c.Name) != nil:
			return fmt.Errorf("counter name %q invalid", c.Name)
		case names[c.Name]:
			return fmt.Errorf("counter %q twice", c.Name)
		case c.Compartment.Validate() != nil:
			return fmt.Errorf("counter %q: bad compartment", c.Name)
		case c.Value > maxCounter:
			return fmt.Errorf("counter %q over its maximum", c.Name)
		}
		names[c.Name] = true
	}
	if s.UDSDestroyed && len(s.Secrets) != 0 {
		return errors.New("secrets kept after the UDS was erased")
	}
	if len(s.Secrets) > maxSecrets {
		return fmt.Errorf("%d secrets, at most %d", len(s.Secrets), maxSecrets)
	}
	type slotName struct {
		cm   pluton.Compartment
		name string
	}
	secrets := make(map[slotName]bool, len(s.Secrets))
	for _, k := range s.Secrets {
		n := slotName{k.Compartment, k.Name}
		switch {
		case !injectNameRE.MatchString(k.Name):
			return fmt.Errorf("secret name %q invalid", k.Name)
		case k.Compartment.Validate() != nil:
			return fmt.Errorf("secret %q: bad compartment", k.Name)
		case secrets[n]:
			return fmt.Errorf("secret %q twice", k.Name)
		case len(k.Value) < minSecret || len(k.Value) > maxSecret:
			return fmt.Errorf("secret %q of %d bytes", k.Name, len(k.Value))
		}
		secrets[n] = true
	}
	if len(s.Injected) > maxInjected {
		return fmt.Errorf("%d injection records, at most %d", len(s.Injected), maxInjected)
	}
	type recName struct {
		kind BlobKind
		slotName
	}
	recs := make(map[recName]bool, len(s.Injected))
	for _, r := range s.Injected {
		n := recName{r.Kind, slotName{r.Compartment, r.Name}}
		switch {
		case r.Kind != BlobKey && r.Kind != BlobSecret:
			return fmt.Errorf("injection record of kind %d", r.Kind)
		case !injectNameRE.MatchString(r.Name) || r.Compartment.Validate() != nil:
			return fmt.Errorf("injection record %q invalid", r.Name)
		case len(r.Digest) != sha256.Size:
			return fmt.Errorf("injection record %q: digest of %d bytes", r.Name, len(r.Digest))
		case recs[n]:
			return fmt.Errorf("injection record %q twice", r.Name)
		case r.Kind == BlobKey && (r.Handle <= pluton.DeviceIDHandle || uint32(r.Handle) >= s.NextHandle):
			return fmt.Errorf("injection record %q: handle %d out of range", r.Name, r.Handle)
		case r.Kind == BlobSecret && r.Handle != 0:
			return fmt.Errorf("injection record %q: secret with a handle", r.Name)
		}
		recs[n] = true
	}
	return nil
}

// privateLen is the length of the compact private form of each algorithm:
// the ECDSA scalar, or the 32-byte seed of Ed25519 and ML-DSA-65.
func privateLen(a pluton.Algorithm) int {
	switch a {
	case pluton.ECDSAP256:
		return 32
	case pluton.ECDSAP384:
		return 48
	case pluton.Ed25519, pluton.MLDSA65:
		return 32
	}
	return -1
}
