//go:build cgo && !nopkcs11

package vault_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
	"github.com/rootline/rootline/hsm/vault"
	"github.com/rootline/rootline/internal/vaulttest"
)

// TestKVPINOpensSoftHSM: a SoftHSM2 token opened with its user PIN read
// from Vault KV (pin-source=vault:...), and refused with a wrong one.
func TestKVPINOpensSoftHSM(t *testing.T) {
	uri, pinFile := hsmtest.NewSoftHSM(t)
	pin, err := os.ReadFile(pinFile)
	if err != nil {
		t.Fatal(err)
	}
	pin = bytes.TrimSpace(pin)
	srv := vaulttest.Start(t)
	srv.PutKV(t, "factory", map[string]any{"pin": string(pin), "wrong": "00000000"})
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k, err := vault.Open(t.Context(), &vault.Config{Address: srv.Addr, Token: srv.RootToken, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	opts := &hsm.Options{Logger: logger, PINSources: map[string]hsm.PINSourceFunc{"vault": k.PINSourceFunc()}}

	u, err := hsm.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	u.PINSource = "vault:secret/data/factory#pin"
	if s := u.String(); !strings.Contains(s, "pin-source=vault:secret/data/factory%23pin") {
		t.Fatalf("URI %s", s)
	}
	m, err := hsm.Open(t.Context(), u.String(), opts)
	if err != nil {
		t.Fatalf("opening the token with the PIN from Vault: %v", err)
	}
	if _, _, err := m.CreateKey(t.Context(), &hsm.CreateKeyRequest{Label: "k", Algorithm: hsm.P256}); err != nil {
		t.Fatal(err)
	}
	m.Close()

	u.PINSource = "vault:secret/data/factory#wrong"
	if m, err := hsm.Open(t.Context(), u.String(), opts); !errors.Is(err, hsm.ErrPINIncorrect) {
		if m != nil {
			m.Close()
		}
		t.Fatalf("a wrong PIN from Vault: %v", err)
	}
	if strings.Contains(logs.String(), string(pin)) {
		t.Fatal("the PIN appears in the log")
	}
}
