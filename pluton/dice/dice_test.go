package dice

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rootline/rootline/pluton"
)

func TestDeriveErrors(t *testing.T) {
	cdi := make([]byte, CDISize)
	tests := []struct {
		name         string
		attest, seal []byte
		in           *InputValues
	}{
		{"nil attest", nil, cdi, &InputValues{}},
		{"short attest", cdi[:31], cdi, &InputValues{}},
		{"long attest", make([]byte, 33), cdi, &InputValues{}},
		{"64-byte UDS", make([]byte, 64), make([]byte, 64), &InputValues{}},
		{"short seal", cdi, cdi[:1], &InputValues{}},
		{"nil input", cdi, cdi, nil},
		{"config type -1", cdi, cdi, &InputValues{ConfigType: -1}},
		{"config type 2", cdi, cdi, &InputValues{ConfigType: 2}},
		{"config type 55", cdi, cdi, &InputValues{ConfigType: 55}}, // open-dice's InvalidConfigType test
		{"nil config descriptor", cdi, cdi, &InputValues{ConfigType: ConfigDescriptor}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, s, err := Derive(tt.attest, tt.seal, tt.in)
			if !errors.Is(err, pluton.ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			if a != nil || s != nil {
				t.Error("outputs on error")
			}
		})
	}
}

// TestDeriveInputs checks which inputs each CDI depends on ("CDI Values"):
// CDI_Attest on all five inputs, CDI_Seal on authority, mode and hidden
// only, and neither on the code and authority descriptors, which are for
// certificates only.
func TestDeriveInputs(t *testing.T) {
	attestIn := bytes.Repeat([]byte{0xa5}, CDISize)
	sealIn := bytes.Repeat([]byte{0x5a}, CDISize)
	base := InputValues{Mode: ModeNormal}
	baseAttest, baseSeal, err := Derive(attestIn, sealIn, &base)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name                   string
		change                 func(*InputValues)
		changesAttest, changes bool
	}{
		{"code hash", func(in *InputValues) { in.CodeHash[63] = 1 }, true, false},
		{"code descriptor", func(in *InputValues) { in.CodeDescriptor = []byte("code") }, false, false},
		{"config value", func(in *InputValues) { in.ConfigValue[0] = 1 }, true, false},
		{"config descriptor, inline type", func(in *InputValues) { in.ConfigDescriptor = []byte("config") }, false, false},
		{"config type descriptor", func(in *InputValues) { in.ConfigType = ConfigDescriptor; in.ConfigDescriptor = []byte{} }, true, false},
		{"authority hash", func(in *InputValues) { in.AuthorityHash[10] = 1 }, true, true},
		{"authority descriptor", func(in *InputValues) { in.AuthorityDescriptor = []byte("authority") }, false, false},
		{"mode", func(in *InputValues) { in.Mode = ModeDebug }, true, true},
		{"undefined mode", func(in *InputValues) { in.Mode = 0xff }, true, true},
		{"hidden", func(in *InputValues) { in.Hidden[32] = 1 }, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			tt.change(&in)
			attest, seal, err := Derive(attestIn, sealIn, &in)
			if err != nil {
				t.Fatal(err)
			}
			if got := !bytes.Equal(attest, baseAttest); got != tt.changesAttest {
				t.Errorf("CDI_Attest changed: %v, want %v", got, tt.changesAttest)
			}
			if got := !bytes.Equal(seal, baseSeal); got != tt.changes {
				t.Errorf("CDI_Seal changed: %v, want %v", got, tt.changes)
			}
		})
	}
}

// TestDeriveLayers runs a few layers and checks that each output is fresh
// memory, that attest and seal chains stay apart and that the inputs are
// not modified.
func TestDeriveLayers(t *testing.T) {
	uds := bytes.Repeat([]byte{0x11}, CDISize)
	udsCopy := bytes.Clone(uds)
	attest, seal := uds, uds
	seen := map[string]bool{string(uds): true}
	for layer := range 4 {
		in := &InputValues{Mode: ModeNormal}
		in.CodeHash[0] = byte(layer)
		a, s, err := Derive(attest, seal, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != CDISize || len(s) != CDISize {
			t.Fatalf("layer %d: sizes %d, %d", layer, len(a), len(s))
		}
		if &a[0] == &attest[0] || &s[0] == &seal[0] || &a[0] == &s[0] {
			t.Fatalf("layer %d: outputs alias inputs", layer)
		}
		for _, v := range [][]byte{a, s} {
			if seen[string(v)] {
				t.Fatalf("layer %d: repeated CDI %x", layer, v)
			}
			seen[string(v)] = true
		}
		attest, seal = a, s
	}
	if !bytes.Equal(uds, udsCopy) {
		t.Error("Derive modified the UDS")
	}
}

func TestStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{ConfigInline.String(), "inline"},
		{ConfigDescriptor.String(), "descriptor"},
		{ConfigType(7).String(), "ConfigType(7)"},
		{ModeNotInitialized.String(), "not-initialized"},
		{ModeNormal.String(), "normal"},
		{ModeDebug.String(), "debug"},
		{ModeMaintenance.String(), "maintenance"},
		{Mode(9).String(), "Mode(9)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
