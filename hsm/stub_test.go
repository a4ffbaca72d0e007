//go:build !cgo || nopkcs11

package hsm

import (
	"errors"
	"testing"
)

func TestStubUnsupported(t *testing.T) {
	if _, err := Open(t.Context(), "pkcs11:token=factory?pin-source=env:PIN", nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Open: %v, want ErrUnsupported", err)
	}
	if _, err := Open(t.Context(), "pkcs11:token=a?pin-value=1", nil); !errors.Is(err, ErrBadURI) {
		t.Fatalf("Open of a bad URI: %v, want ErrBadURI", err)
	}
	if _, err := InitToken(t.Context(), &InitTokenRequest{Label: "x"}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("InitToken: %v, want ErrUnsupported", err)
	}
}
