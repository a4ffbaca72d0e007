package drbg

import (
	"errors"
	"strings"
	"testing"

	"github.com/rootline/rootline/pluton"
)

func TestSelfTests(t *testing.T) {
	if err := ctrSelfTest(); err != nil {
		t.Errorf("CTR_DRBG self-test: %v", err)
	}
	if err := hmacSelfTest(); err != nil {
		t.Errorf("HMAC_DRBG self-test: %v", err)
	}
}

// TestSelfTestsFail forces each known-answer test to fail by changing one
// bit of the expected answer.
func TestSelfTestsFail(t *testing.T) {
	flip := func(s string) string {
		c := s[len(s)-1] ^ 1 // a different hex digit
		return s[:len(s)-1] + string(c)
	}
	for _, tt := range []struct {
		name string
		cast func(string) error
		want string
	}{
		{"CTR_DRBG", castCTR, ctrKAT.want},
		{"HMAC_DRBG", castHMAC, hmacKAT.want},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cast(tt.want); err != nil {
				t.Fatalf("with the right answer: %v", err)
			}
			err := tt.cast(flip(tt.want))
			if !errors.Is(err, pluton.ErrSelfTest) {
				t.Fatalf("with a wrong answer: %v, want an error wrapping ErrSelfTest", err)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q does not name %s", err, tt.name)
			}
		})
	}
}
