package hsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func uintp(n uint) *uint { return &n }

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  URI
		canon string // String() of the result; "" means in
	}{
		// Shaped after the examples of RFC 7512, section 3.
		{in: "pkcs11:", want: URI{}},
		{in: "pkcs11:object=my-pubkey;type=public", want: URI{Object: "my-pubkey", Type: "public"}},
		{in: "pkcs11:object=my-key;type=private?pin-source=file:/etc/token",
			want: URI{Object: "my-key", Type: "private", PINSource: "file:/etc/token"}},
		{in: "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
			want: URI{Token: "The Software PKCS#11 Softtoken", Manufacturer: "Snake Oil, Inc.", Model: "1.0",
				Object: "my-certificate", Type: "cert", ID: []byte{0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91}, PINSource: "file:/etc/token_pin"},
			canon: "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91?pin-source=file:/etc/token_pin"},
		{in: "pkcs11:object=my-sign-key;type=private?module-name=mypkcs11",
			want: URI{Object: "my-sign-key", Type: "private", ModuleName: "mypkcs11"}},
		{in: "pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1",
			want: URI{Object: "my-sign-key", Type: "private", ModulePath: "/mnt/libmypkcs11.so.1"}},
		{in: "pkcs11:slot-description=Sun%20Metaslot", want: URI{SlotDescription: "Sun Metaslot"}},
		{in: "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23",
			want: URI{LibraryManufacturer: "Snake Oil, Inc.", LibraryDescription: "Soft Token Library", LibraryVersion: &Version{1, 23}}},
		{in: "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
			want:  URI{Token: "My token% created by Joe", LibraryVersion: &Version{3, 0}, ID: []byte{1, 2, 3, 0xba, 0xdd, 0xca, 0xfe, 4, 5, 6}},
			canon: "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3.0;id=%01%02%03%BA%DD%CA%FE%04%05%06"},
		{in: "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
			want: URI{Token: "A name with a substring %;", Object: "my-certificate", Type: "cert"}},
		{in: "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert",
			want: URI{Token: "Name with a small A with acute: á", Object: "my-certificate", Type: "cert"}},
		{in: "pkcs11:slot-manufacturer=Snake%20Oil,%20Inc.;slot-id=1",
			want: URI{SlotManufacturer: "Snake Oil, Inc.", SlotID: uintp(1)}},
		// This package's own forms.
		{in: "pkcs11:token=factory;object=sku-a-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/factory.pin&max-sessions=4",
			want:  URI{Token: "factory", Object: "sku-a-ca", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/run/factory.pin", MaxSessions: 4},
			canon: "pkcs11:token=factory;object=sku-a-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/factory.pin&max-sessions=4"},
		{in: "PKCS11:token=a?pin-source=env:FACTORY_PIN", want: URI{Token: "a", PINSource: "env:FACTORY_PIN"}, canon: "pkcs11:token=a?pin-source=env:FACTORY_PIN"},
		{in: "pkcs11:token=:[]@!$'()*+,=&?pin-source=vault:a/b?c=:[]@!$'()*+,=/?|",
			want: URI{Token: ":[]@!$'()*+,=&", PINSource: "vault:a/b?c=:[]@!$'()*+,=/?|"}},
		{in: "pkcs11:object=a%2Fb%3Fc%26d%3Be", want: URI{Object: "a/b?c&d;e"}, canon: "pkcs11:object=a%2Fb%3Fc&d%3Be"},
		{in: "pkcs11:token=a?", want: URI{Token: "a"}, canon: "pkcs11:token=a"},
		{in: "pkcs11:id=%00", want: URI{ID: []byte{0}}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseURI(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*u, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", *u, tc.want)
			}
			canon := tc.canon
			if canon == "" {
				canon = tc.in
			}
			if s := u.String(); s != canon {
				t.Fatalf("String() = %s\nwant       %s", s, canon)
			}
			if c := u.Clone(); !reflect.DeepEqual(c, u) {
				t.Fatal("Clone differs")
			}
		})
	}
}

func TestParseURIRefuses(t *testing.T) {
	for _, tc := range []struct{ in, why string }{
		{"", "does not start"},
		{"pkcs12:token=a", "does not start"},
		{"pkcs11:token=a;token=b", "given twice"},
		{"pkcs11:token=a?module-path=/a&module-path=/b", "given twice"},
		{"pkcs11:token", "not name=value"},
		{"pkcs11:=a", "not name=value"},
		{"pkcs11:token=a;", "not name=value"},
		{"pkcs11:token=a?&", "not name=value"},
		{"pkcs11:token=a b", "must be percent-encoded"},
		{"pkcs11:token=a/b", "must be percent-encoded"},
		{"pkcs11:token=a%2", "percent-encoding"},
		{"pkcs11:token=a%zz", "percent-encoding"},
		{"pkcs11:token=a#frag", "must be percent-encoded"},
		{"pkcs11:object=a?pin-source=a&b", "not file:/PATH"},
		{"pkcs11:token=a?pin-value=1234", "pin-value is refused"},
		{"pkcs11:pin-value=1234", "pin-value is refused"},
		{"pkcs11:token=a;vendor-aaa=value-a", "unknown path attribute"},
		{"pkcs11:token=a?x-vendor=b", "unknown query attribute"},
		{"pkcs11:Token=a", "unknown path attribute"},
		{"pkcs11:module-name=a", "belongs in the query"},
		{"pkcs11:?token=a", "belongs in the path"},
		{"pkcs11:type=key", "is not public"},
		{"pkcs11:library-version=a", "library-version"},
		{"pkcs11:library-version=1.", "library-version"},
		{"pkcs11:library-version=256", "library-version"},
		{"pkcs11:library-version=1.2.3", "library-version"},
		{"pkcs11:slot-id=-1", "slot-id"},
		{"pkcs11:slot-id=", "slot-id"},
		{"pkcs11:slot-id=99999999999999999999", "slot-id"},
		{"pkcs11:token=" + strings.Repeat("a", 257), "longer than 256"},
		{"pkcs11:id=" + strings.Repeat("%00", 257), "longer than 256"},
		{"pkcs11:token=%FF", "UTF-8"},
		{"pkcs11:object=a%00b", "NUL"},
		{"pkcs11:token=a?module-path=lib.so", "not an absolute path"},
		{"pkcs11:token=a?module-path=", "not an absolute path"},
		{"pkcs11:token=a?module-name=/usr/lib/x", "without directory"},
		{"pkcs11:token=a?pin-source=relative.pin", "not file:/PATH"},
		{"pkcs11:token=a?pin-source=file:relative.pin", "not an absolute path"},
		{"pkcs11:token=a?pin-source=file://host/pin", "remote host"},
		{"pkcs11:token=a?pin-source=env:1BAD", "not an environment variable name"},
		{"pkcs11:token=a?pin-source=VAULT:x", "not file:/PATH"},
		{"pkcs11:token=a?max-sessions=0", "max-sessions"},
		{"pkcs11:token=a?max-sessions=1025", "max-sessions"},
		{"pkcs11:token=a?max-sessions=+1", "max-sessions"},
		{"pkcs11:" + strings.Repeat("a", maxURILen), "longer than"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseURI(tc.in)
			if !errors.Is(err, ErrBadURI) || u != nil {
				t.Fatalf("ParseURI = %v, %v; want ErrBadURI", u, err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("error %q does not say %q", err, tc.why)
			}
		})
	}
}

// The error for a refused pin-value never quotes the PIN.
func TestParseURIPINValueNotEchoed(t *testing.T) {
	_, err := ParseURI("pkcs11:token=a?pin-value=s3cr3t-771")
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("error %v", err)
	}
}
