package tpm

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/rootline/rootline/pluton"
)

// Bounds on the state file. Key blobs are a TPM2B_PUBLIC (an ECC key: about
// 90–130 bytes) and a TPM2B_PRIVATE (under 200 bytes with an AES-128 SRK).
const (
	maxStateSize = 1 << 20
	maxKeys      = 1024
	maxCounters  = 256
	maxBlob      = 1024
	maxNameLen   = 64
)

// state is what the TPM cannot keep itself: the wrapped key blobs and which
// compartment owns which key and NV counter. The private parts of the keys
// are encrypted under the storage primary key and usable only inside the
// TPM that wrapped them (TPM 2.0 Part 1 §23.5, "Protected Storage").
type state struct {
	Version    int            `json:"version"`
	NextHandle uint32         `json:"next_handle"`
	NextIndex  uint32         `json:"next_nv_index"`
	Keys       []keyEntry     `json:"keys"`
	Counters   []counterEntry `json:"counters"`
}

type keyEntry struct {
	Handle      pluton.KeyHandle   `json:"handle"`
	Compartment pluton.Compartment `json:"compartment"`
	Algorithm   string             `json:"algorithm"`
	Usage       string             `json:"usage"`
	Label       string             `json:"label,omitempty"`
	Public      []byte             `json:"public"`  // TPM2B_PUBLIC
	Private     []byte             `json:"private"` // TPM2B_PRIVATE, wrapped by the SRK
}

// counterEntry maps a counter to an NV index of type counter. Base is the
// NV value right before the counter's first increment: a TPM initializes a
// counter index to the highest count any counter of the TPM has had (TPM 2.0
// Part 1 §37.2.3), not to zero, so the value reported is NV value − Base.
type counterEntry struct {
	Compartment pluton.Compartment `json:"compartment"`
	Name        string             `json:"name"`
	Index       uint32             `json:"nv_index"`
	Base        uint64             `json:"base"`
}

const stateVersion = 1

func newState() *state {
	return &state{Version: stateVersion, NextHandle: 2, NextIndex: nvFirst}
}

// parseState decodes and validates an untrusted state file.
func parseState(b []byte) (*state, error) {
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrState, len(b), maxStateSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var s state
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrState)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *state) validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrState}, a...)...) }
	if s.Version != stateVersion {
		return bad("version %d (want %d)", s.Version, stateVersion)
	}
	if len(s.Keys) > maxKeys || len(s.Counters) > maxCounters {
		return bad("too many keys or counters")
	}
	if s.NextHandle <= uint32(pluton.DeviceIDHandle) {
		return bad("next handle %d", s.NextHandle)
	}
	if s.NextIndex < nvFirst || s.NextIndex > nvLast+1 {
		return bad("next NV index %#x outside [%#x, %#x]", s.NextIndex, nvFirst, nvLast+1)
	}
	seen := map[pluton.KeyHandle]bool{}
	for _, k := range s.Keys {
		if k.Handle <= pluton.DeviceIDHandle || uint32(k.Handle) >= s.NextHandle || seen[k.Handle] {
			return bad("%v: bad or duplicate handle", k.Handle)
		}
		seen[k.Handle] = true
		if err := k.Compartment.Validate(); err != nil {
			return bad("%v: %v", k.Handle, err)
		}
		alg, err := pluton.ParseAlgorithm(k.Algorithm)
		if err != nil || alg.String() != k.Algorithm || (alg != pluton.ECDSAP256 && alg != pluton.ECDSAP384) {
			return bad("%v: algorithm %q", k.Handle, k.Algorithm)
		}
		if u, err := pluton.ParseUsage(k.Usage); err != nil || u.String() != k.Usage {
			return bad("%v: usage %q", k.Handle, k.Usage)
		}
		if len(k.Label) > 64 {
			return bad("%v: label too long", k.Handle)
		}
		if len(k.Public) == 0 || len(k.Public) > maxBlob || len(k.Private) == 0 || len(k.Private) > maxBlob {
			return bad("%v: key blob sizes %d, %d", k.Handle, len(k.Public), len(k.Private))
		}
		if _, err := publicKeyOf(k.Public, alg); err != nil {
			return bad("%v: %v", k.Handle, err)
		}
	}
	type cname struct {
		c pluton.Compartment
		n string
	}
	seenC, seenI := map[cname]bool{}, map[uint32]bool{}
	for _, c := range s.Counters {
		if err := c.Compartment.Validate(); err != nil {
			return bad("counter: %v", err)
		}
		if err := validCounterName(c.Name); err != nil {
			return bad("counter: %v", err)
		}
		if c.Index < nvFirst || c.Index >= s.NextIndex || seenI[c.Index] || seenC[cname{c.Compartment, c.Name}] {
			return bad("counter %q: bad or duplicate NV index %#x", c.Name, c.Index)
		}
		seenI[c.Index], seenC[cname{c.Compartment, c.Name}] = true, true
	}
	return nil
}

func validCounterName(name string) error {
	if len(name) == 0 || len(name) > maxNameLen {
		return fmt.Errorf("%w: counter name must be 1–%d bytes", pluton.ErrInvalidArgument, maxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '/') {
			return fmt.Errorf("%w: counter name %q: use [a-z0-9._/-]", pluton.ErrInvalidArgument, name)
		}
	}
	return nil
}

func (s *state) marshal() ([]byte, error) { return json.MarshalIndent(s, "", "\t") }

func (s *state) clone() *state {
	c := *s
	c.Keys = append([]keyEntry(nil), s.Keys...)
	c.Counters = append([]counterEntry(nil), s.Counters...)
	return &c
}
