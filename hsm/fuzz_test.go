package hsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseURI: ParseURI never panics; what it refuses wraps ErrBadURI;
// what it accepts prints (String) to a canonical URI that parses back to
// the same value and prints the same again.
// Seeds: the f.Add calls below and testdata/fuzz/FuzzParseURI.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:",
		"pkcs11:token=factory;object=sku-a-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/factory.pin",
		"pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
		"pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23",
		"pkcs11:slot-description=Sun%20Metaslot;slot-manufacturer=x;slot-id=7",
		"pkcs11:token=:[]@!$'()*+,=&?pin-source=vault:a/b?c=:[]@!$'()*+,=/?|&max-sessions=12",
		"pkcs11:object=my-sign-key;type=private?module-name=mypkcs11",
		"pkcs11:token=a?pin-value=1234",
		"pkcs11:token=a;token=b",
		"pkcs11:id=%00%ff;serial=%20;type=secret-key?pin-source=env:PIN",
		"PKCS11:token=%C3%A1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if u != nil || !errors.Is(err, ErrBadURI) {
				t.Fatalf("ParseURI(%q) = %v, %v", s, u, err)
			}
			return
		}
		canon := u.String()
		u2, err := ParseURI(canon)
		if err != nil {
			t.Fatalf("ParseURI(%q).String() = %q does not parse: %v", s, canon, err)
		}
		if !reflect.DeepEqual(u, u2) {
			t.Fatalf("round trip of %q through %q:\n%+v\n%+v", s, canon, u, u2)
		}
		if c2 := u2.String(); c2 != canon {
			t.Fatalf("String not canonical: %q then %q", canon, c2)
		}
	})
}

// FuzzTrimPIN: trimPIN, which reads PIN files and variables, never returns
// a PIN with a line break or NUL, nor an empty or oversized one, and its
// errors are fixed texts that cannot quote the PIN.
func FuzzTrimPIN(f *testing.F) {
	for _, s := range []string{"1234", "1234\n", "1234\r\n", "12\n34", "", "\n", "1234\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pin, err := trimPIN(b)
		if err != nil {
			switch {
			case strings.HasPrefix(err.Error(), "the PIN is empty"),
				strings.HasPrefix(err.Error(), "the PIN is longer than"),
				strings.HasPrefix(err.Error(), "the PIN holds a line break or NUL"):
			default:
				t.Fatalf("unexpected error text %q", err)
			}
			return
		}
		if len(pin) == 0 || len(pin) > maxPINLen || strings.ContainsAny(string(pin), "\r\n\x00") {
			t.Fatalf("trimPIN(%q) = %q", b, pin)
		}
	})
}
