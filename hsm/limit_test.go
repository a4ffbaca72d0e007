//go:build cgo && !nopkcs11

package hsm

import (
	"runtime"
	"testing"

	"github.com/miekg/pkcs11"
)

func TestSessionLimit(t *testing.T) {
	def := 2 * runtime.NumCPU()
	for _, tc := range []struct {
		opt, uri int
		token    uint
		want     int
	}{
		{0, 0, pkcs11.CK_EFFECTIVELY_INFINITE, def},
		{0, 0, pkcs11.CK_UNAVAILABLE_INFORMATION, def},
		{0, 0, 1, 1},
		{0, 3, pkcs11.CK_EFFECTIVELY_INFINITE, 3},
		{5, 3, pkcs11.CK_EFFECTIVELY_INFINITE, 5},
		{5, 3, 4, 4},
		{1000, 0, pkcs11.CK_EFFECTIVELY_INFINITE, 1000},
	} {
		if got := sessionLimit(tc.opt, tc.uri, tc.token); got != tc.want {
			t.Errorf("sessionLimit(%d, %d, %d) = %d, want %d", tc.opt, tc.uri, tc.token, got, tc.want)
		}
	}
}
