package hsm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFilePIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string // "" means an error wrapping ErrPINSource
		warn          bool
	}{
		{"plain", "1234", 0o600, "1234", false},
		{"newline", "1234\n", 0o400, "1234", false},
		{"crlf", "1234\r\n", 0o600, "1234", false},
		{"spaces kept", " 12 34 ", 0o600, " 12 34 ", false},
		{"two newlines", "1234\n\n", 0o600, "", false},
		{"two lines", "1234\n5678\n", 0o600, "", false},
		{"empty", "", 0o600, "", false},
		{"only newline", "\n", 0o600, "", false},
		{"nul", "12\x0034", 0o600, "", false},
		{"too long", strings.Repeat("1", maxPINLen+1), 0o600, "", false},
		{"longest", strings.Repeat("1", maxPINLen) + "\n", 0o600, strings.Repeat("1", maxPINLen), false},
		{"group readable", "1234", 0o640, "1234", true},
		{"world readable", "1234", 0o644, "1234", true},
		{"world writable", "1234", 0o602, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			src := &FilePIN{Path: write(tc.name, tc.content, tc.mode), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			pin, err := src.PIN(t.Context())
			if tc.want == "" {
				if !errors.Is(err, ErrPINSource) {
					t.Fatalf("PIN = %q, %v; want ErrPINSource", pin, err)
				}
				if c := strings.TrimSpace(tc.content); c != "" && strings.Contains(err.Error(), c) {
					t.Fatalf("error %q quotes the file", err)
				}
				return
			}
			if err != nil || string(pin) != tc.want {
				t.Fatalf("PIN = %q, %v; want %q", pin, err, tc.want)
			}
			if warned := strings.Contains(logs.String(), "chmod 600"); warned != tc.warn {
				t.Fatalf("warned %v, want %v: %s", warned, tc.warn, logs.String())
			}
			if strings.Contains(logs.String(), "1234") {
				t.Fatal("the PIN is in the log")
			}
		})
	}
	if _, err := (&FilePIN{Path: filepath.Join(dir, "absent")}).PIN(t.Context()); !errors.Is(err, ErrPINSource) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := (&FilePIN{Path: dir}).PIN(t.Context()); !errors.Is(err, ErrPINSource) {
		t.Errorf("directory: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := (&FilePIN{Path: filepath.Join(dir, "plain")}).PIN(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestEnvPIN(t *testing.T) {
	env := map[string]string{"GOOD": "1234\n", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	pin, err := (&EnvPIN{Name: "GOOD", LookupEnv: lookup}).PIN(t.Context())
	if err != nil || string(pin) != "1234" {
		t.Fatalf("PIN = %q, %v", pin, err)
	}
	for _, name := range []string{"EMPTY", "UNSET"} {
		if _, err := (&EnvPIN{Name: name, LookupEnv: lookup}).PIN(t.Context()); !errors.Is(err, ErrPINSource) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

type constPIN string

func (c constPIN) PIN(context.Context) ([]byte, error) { return []byte(c), nil }

func TestResolvePINSource(t *testing.T) {
	opts := &Options{PINSources: map[string]PINSourceFunc{
		"vault": func(ref string) (PINSource, error) {
			if ref == "bad" {
				return nil, errors.New("no such secret")
			}
			return constPIN("from-vault:" + ref), nil
		},
	}}
	for _, tc := range []struct {
		in   string
		want PINSource // nil means an error wrapping ErrPINSource
	}{
		{"file:/run/factory.pin", &FilePIN{Path: "/run/factory.pin"}},
		{"file:///run/factory.pin", &FilePIN{Path: "/run/factory.pin"}},
		{"/run/./factory.pin", &FilePIN{Path: "/run/factory.pin"}},
		{"env:FACTORY_PIN", &EnvPIN{Name: "FACTORY_PIN"}},
		{"vault:secret/data/factory#pin", constPIN("from-vault:secret/data/factory#pin")},
		{"vault:bad", nil},
		{"kms:x", nil},
		{"file:run/pin", nil},
		{"env:", nil},
		{"env:A-B", nil},
		{"pin", nil},
		{":x", nil},
	} {
		got, err := ResolvePINSource(tc.in, opts)
		if tc.want == nil {
			if !errors.Is(err, ErrPINSource) {
				t.Errorf("%s: %v, %v; want ErrPINSource", tc.in, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		switch w := tc.want.(type) {
		case *FilePIN:
			if g, ok := got.(*FilePIN); !ok || g.Path != w.Path {
				t.Errorf("%s: %#v", tc.in, got)
			}
		case *EnvPIN:
			if g, ok := got.(*EnvPIN); !ok || g.Name != w.Name {
				t.Errorf("%s: %#v", tc.in, got)
			}
		default:
			if got != tc.want {
				t.Errorf("%s: %#v", tc.in, got)
			}
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	f := func(string) (PINSource, error) { return constPIN("x"), nil }
	for _, tc := range []struct {
		o  *Options
		ok bool
	}{
		{nil, true},
		{&Options{}, true},
		{&Options{MaxSessions: 8, PINSources: map[string]PINSourceFunc{"vault": f}}, true},
		{&Options{MaxSessions: -1}, false},
		{&Options{MaxSessions: maxMaxSessions + 1}, false},
		{&Options{PINSources: map[string]PINSourceFunc{"file": f}}, false},
		{&Options{PINSources: map[string]PINSourceFunc{"env": f}}, false},
		{&Options{PINSources: map[string]PINSourceFunc{"Vault": f}}, false},
		{&Options{PINSources: map[string]PINSourceFunc{"vault": nil}}, false},
	} {
		if err := tc.o.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v", tc.o, err)
		}
	}
}

func TestAlgorithm(t *testing.T) {
	for _, a := range []Algorithm{P256, P384, Ed25519} {
		if b, err := ParseAlgorithm(a.String()); err != nil || b != a {
			t.Errorf("%v: %v, %v", a, b, err)
		}
	}
	if _, err := ParseAlgorithm("rsa2048"); err == nil {
		t.Error("rsa2048 parsed")
	}
}

func TestErrorIs(t *testing.T) {
	for _, tc := range []struct {
		code uint
		want error
		name string
	}{
		{0xA0, ErrPINIncorrect, "CKR_PIN_INCORRECT"},
		{0xA4, ErrPINLocked, "CKR_PIN_LOCKED"},
		{0xE0, ErrTokenNotFound, "CKR_TOKEN_NOT_PRESENT"},
		{0x82, ErrKeyNotFound, "CKR_OBJECT_HANDLE_INVALID"},
		{0x60, ErrKeyNotFound, "CKR_KEY_HANDLE_INVALID"},
		{0x70, ErrMechanismUnsupported, "CKR_MECHANISM_INVALID"},
		{0x140, ErrMechanismUnsupported, "CKR_CURVE_NOT_SUPPORTED"},
		{0x80000001, nil, "CKR_0x80000001"},
	} {
		err := error(&Error{Op: "C_Test", Code: tc.code, Token: "factory"})
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%#x is not %v", tc.code, tc.want)
		}
		if errors.Is(err, ErrPINIncorrect) != (tc.want == ErrPINIncorrect) {
			t.Errorf("%#x: Is(ErrPINIncorrect) wrong", tc.code)
		}
		want := `hsm: token "factory": C_Test: ` + tc.name
		if err.Error() != want {
			t.Errorf("Error() = %q, want %q", err, want)
		}
		var e *Error
		if !errors.As(errors.Join(errors.New("context"), err), &e) || e.Code != tc.code {
			t.Errorf("errors.As lost the code")
		}
	}
}
