package tpm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
)

// A valid state with one key, as written after a GenerateKey on swtpm.
const seedState = `{"version":1,"next_handle":3,"next_nv_index":22178817,"keys":[{"handle":2,"compartment":"os","algorithm":"p256","usage":"sign","public":"AFgAIwALAAQEcgAAABAAGAALAAMAEAAgzCjk8hdqoysui38cibHNwYRDYyd8CD0qoCTaE7kf8u8AIMiN0xLK3/6lJ15aFfZTof72bURK4ShwEkv4yq1DQ79j","private":"AH4AIBDb1QLODhx2UBV0VbG/FjUQl/uolqOeXYDnFlmtns1ZABAORxxzhg0DydnayBNTp2pW2D5VkjoatdyRljGJJAsLNwsb1VrhEtH/v9k0WYKSbU78Z9fhvjxsLpb47+unG/HfhrpXrqsSDNA2FkwDlD6beP958eWdmgAoc1k="}],"counters":[{"compartment":"os","name":"svn","nv_index":22178816,"base":0}]}`

func TestParseState(t *testing.T) {
	s, err := parseState([]byte(seedState))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Keys) != 1 || len(s.Counters) != 1 {
		t.Fatalf("parsed %+v", s)
	}
	for _, bad := range []string{
		``, `{}`, `{"version":2}`, seedState + `{}`,
		`{"version":1,"next_handle":1,"next_nv_index":22178816}`,
		`{"version":1,"next_handle":2,"next_nv_index":1}`,
		`{"version":1,"next_handle":2,"next_nv_index":22178816,"extra":1}`,
		`{"version":1,"next_handle":3,"next_nv_index":22178816,"keys":[{"handle":2,"compartment":"os","algorithm":"ed25519","usage":"sign","public":"AA==","private":"AA=="}]}`,
		// A point off the curve (the original y with its last byte changed).
		strings.Replace(seedState, "Q79j", "Q79k", 1),
		`{"version":1,"next_handle":2,"next_nv_index":22178817,"counters":[{"compartment":"os","name":"A","nv_index":22178816}]}`,
	} {
		if _, err := parseState([]byte(bad)); !errors.Is(err, ErrState) {
			t.Errorf("parseState(%.60q) = %v, want ErrState", bad, err)
		}
	}
}

func TestOpenBadState(t *testing.T) {
	sw := tpmtest.Start(t)
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte(`{"version":7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), &Options{Address: sw.Addr, StatePath: path}); !errors.Is(err, ErrState) {
		t.Fatalf("Open with a bad state file: %v", err)
	}
	if _, err := Open(t.Context(), &Options{Address: sw.Addr, Device: "/dev/tpmrm0"}); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("two transports: %v", err)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(seedState))
	f.Add([]byte(`{"version":1,"next_handle":2,"next_nv_index":22178816}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseState(b)
		if err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// What parses re-encodes to something that parses the same.
		out, err := s.marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseState(out); err != nil {
			t.Fatalf("re-encoded state does not parse: %v", err)
		}
	})
}
