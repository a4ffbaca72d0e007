package vaultpki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/rootline/rootline/ca"
)

func TestParseState(t *testing.T) {
	good := `{"version":1,"revoked":[{"serial":"1f","reason":1,"time":"2026-01-02T03:04:05Z"}],"crlNumbers":{"sku-a":3}}`
	st, err := parseState(good)
	if err != nil || len(st.Revoked) != 1 || st.CRLNumbers["sku-a"] != 3 {
		t.Fatalf("%+v %v", st, err)
	}
	// marshal then parse gives the same document.
	m, err := st.marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := parseState(m["state"].(string))
	if err != nil || again.Revoked[0] != st.Revoked[0] {
		t.Fatalf("round trip: %+v %v", again, err)
	}
	for name, doc := range map[string]string{
		"version 2":       `{"version":2}`,
		"unknown field":   `{"version":1,"extra":1}`,
		"trailing":        `{"version":1} {}`,
		"serial 0":        `{"version":1,"revoked":[{"serial":"0","reason":0,"time":"2026-01-02T03:04:05Z"}]}`,
		"non-canonical":   `{"version":1,"revoked":[{"serial":"01f","reason":0,"time":"2026-01-02T03:04:05Z"}]}`,
		"upper case":      `{"version":1,"revoked":[{"serial":"1F","reason":0,"time":"2026-01-02T03:04:05Z"}]}`,
		"twice":           `{"version":1,"revoked":[{"serial":"1f","reason":0,"time":"2026-01-02T03:04:05Z"},{"serial":"1f","reason":1,"time":"2026-01-02T03:04:05Z"}]}`,
		"reason 2":        `{"version":1,"revoked":[{"serial":"1f","reason":2,"time":"2026-01-02T03:04:05Z"}]}`,
		"no time":         `{"version":1,"revoked":[{"serial":"1f","reason":0}]}`,
		"CRL number 0":    `{"version":1,"crlNumbers":{"sku-a":0}}`,
		"bad issuer name": `{"version":1,"crlNumbers":{"../x":1}}`,
		"21-octet serial": `{"version":1,"revoked":[{"serial":"` + strings.Repeat("ab", 21) + `","reason":0,"time":"2026-01-02T03:04:05Z"}]}`,
		"not JSON":        `version=1`,
		"empty":           ``,
	} {
		if _, err := parseState(doc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseOID(t *testing.T) {
	for _, s := range []string{"1.3.6.1.4.1.32473.1.1", "2.999.3", "0.39"} {
		o, err := parseOID(s)
		if err != nil || o.String() != s {
			t.Errorf("parseOID(%q) = %v, %v", s, o, err)
		}
	}
	for _, s := range []string{"", "1", "3.1", "1.40", "1..2", "1.02", "1.-2", "1.2.99999999999", strings.Repeat("1.", 40) + "1", "1.2 "} {
		if _, err := parseOID(s); err == nil {
			t.Errorf("parseOID(%q) accepted", s)
		}
	}
}

func TestNames(t *testing.T) {
	for _, ok := range []string{"sku-a", "A1", "a.b_c", ca.StationsIssuer} {
		if err := checkName(ok); err != nil {
			t.Errorf("checkName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "a/b", "a b", "é", strings.Repeat("a", 65)} {
		if checkName(bad) == nil {
			t.Errorf("checkName(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"ca-sku-a", "k", "a.b@c_d"} {
		if err := checkKeyName(ok); err != nil {
			t.Errorf("checkKeyName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-k", "k-", "a/b", "a b", "../k"} {
		if checkKeyName(bad) == nil {
			t.Errorf("checkKeyName(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "a/../b", "a/./b", "a b"} {
		if checkPath("p", bad) == nil {
			t.Errorf("checkPath(%q) accepted", bad)
		}
	}
}

// TestErrorSorting: Vault's 503 and transport failures are
// ca.ErrUnavailable; other refusals ca.ErrRefused.
func TestErrorSorting(t *testing.T) {
	ctx := context.Background()
	dial := &url.Error{Op: "Get", URL: "http://127.0.0.1:1", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{&api.ResponseError{StatusCode: 503, Errors: []string{"Vault is sealed"}}, ca.ErrUnavailable},
		{&api.ResponseError{StatusCode: 500}, ca.ErrUnavailable},
		{dial, ca.ErrUnavailable},
		{&api.ResponseError{StatusCode: 403}, ca.ErrRefused},
		{&api.ResponseError{StatusCode: 400}, ca.ErrRefused},
	} {
		err := vaultError(ctx, "read", "p", tc.err)
		if !errors.Is(err, tc.want) || !errors.Is(err, ca.ErrRevocationStore) || !errors.Is(err, tc.err) {
			t.Errorf("%v: %v", tc.err, err)
		}
		if got := markUnavailable(tc.err); errors.Is(got, ca.ErrUnavailable) != (tc.want == ca.ErrUnavailable) {
			t.Errorf("markUnavailable(%v) = %v", tc.err, got)
		}
	}
	if err := markUnavailable(errors.New("vault: digest of 3 bytes")); errors.Is(err, ca.ErrUnavailable) {
		t.Error("a local error marked unavailable")
	}
}

// failingSigner fails with a given error.
type failingSigner struct {
	pub crypto.PublicKey
	err error
}

func (f failingSigner) Public() crypto.PublicKey { return f.pub }
func (f failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, f.err
}

func TestAvailabilitySigner(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := &availabilitySigner{failingSigner{k.Public(), fmt.Errorf("vault: sign: %w", &api.ResponseError{StatusCode: 503})}}
	if _, err := s.Sign(nil, make([]byte, 32), crypto.SHA256); !errors.Is(err, ca.ErrUnavailable) {
		t.Fatalf("Sign: %v", err)
	}
	if _, err := s.SignContext(context.Background(), make([]byte, 32), crypto.SHA256); !errors.Is(err, ca.ErrUnavailable) {
		t.Fatalf("SignContext without a context signer: %v", err)
	}
	ok := &availabilitySigner{k}
	if _, err := ok.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add(`{"version":1,"revoked":[{"serial":"1f","reason":1,"time":"2026-01-02T03:04:05Z"}],"crlNumbers":{"sku-a":3}}`)
	f.Add(`{"version":1}`)
	f.Add(`{"version":1,"revoked":null,"crlNumbers":null}`)
	f.Fuzz(func(t *testing.T, doc string) {
		st, err := parseState(doc)
		if err != nil {
			return
		}
		// What parses, marshals into a document that parses the same.
		m, err := st.marshal()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := parseState(m["state"].(string))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(again.Revoked) != len(st.Revoked) || len(again.CRLNumbers) != len(st.CRLNumbers) {
			t.Fatalf("round trip changed the document")
		}
		for i := range st.Revoked {
			if again.Revoked[i].Serial != st.Revoked[i].Serial || again.Revoked[i].Reason != st.Revoked[i].Reason {
				t.Fatalf("entry %d changed", i)
			}
		}
	})
}

func FuzzParseOID(f *testing.F) {
	f.Add("1.3.6.1.4.1.32473.1.1")
	f.Add("2.5.29.17")
	f.Add("1.02")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOID(s)
		if err != nil {
			return
		}
		if o.String() != s {
			t.Fatalf("%q → %v", s, o)
		}
		if _, err := asn1.Marshal(o); err != nil {
			t.Fatalf("%q parsed but does not marshal: %v", s, err)
		}
	})
}
