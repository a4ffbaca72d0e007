package translog_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rootline/rootline/provision/translog"
)

func TestHandler(t *testing.T) {
	s := newSigner(t, "log")
	l, _ := translog.New(translog.NewMemStore(), s)
	heads := grow(t, l, 7, leaf)
	srv := httptest.NewServer(translog.Handler(l, nil))
	defer srv.Close()
	get := func(path string, wantCode int) []byte {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantCode {
			t.Fatalf("GET %s: %d %s, want %d", path, resp.StatusCode, b, wantCode)
		}
		return b
	}
	head := get("/v1/log/head", 200)
	if !bytes.Equal(head, heads[7]) {
		t.Fatalf("head %s", head)
	}
	p, err := translog.ParseProof(get("/v1/log/proof/inclusion?index=4&size=7", 200))
	if err != nil {
		t.Fatal(err)
	}
	cert := get("/v1/log/leaf?index=4", 200)
	if _, err := translog.VerifyInclusion(s.VerifierKey(), head, cert, 4, p); err != nil {
		t.Fatal(err)
	}
	cp, err := translog.ParseProof(get("/v1/log/proof/consistency?old=3&new=7", 200))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := translog.VerifyConsistency(s.VerifierKey(), heads[3], head, cp); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"/v1/log/head?x=1",
		"/v1/log/proof/inclusion?index=4",
		"/v1/log/proof/inclusion?index=4&size=7&size=7",
		"/v1/log/proof/inclusion?index=-1&size=7",
		"/v1/log/proof/inclusion?index=04&size=7",
		"/v1/log/proof/inclusion?index=%zz&size=7",
		"/v1/log/proof/inclusion?index=4&size=99999999999999999999",
		"/v1/log/proof/consistency?old=1&new=2&x=3",
		"/v1/log/leaf?index=" + strings.Repeat("1", 300),
	} {
		get(bad, 400)
	}
	for _, missing := range []string{
		"/v1/log/proof/inclusion?index=7&size=7",
		"/v1/log/proof/inclusion?index=0&size=8",
		"/v1/log/proof/consistency?old=8&new=9",
		"/v1/log/proof/consistency?old=5&new=4",
		"/v1/log/leaf?index=7",
		"/v1/log/nothing",
	} {
		get(missing, 404)
	}
	resp, err := http.Post(srv.URL+"/v1/log/head", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

func TestParseQuery(t *testing.T) {
	q, err := translog.ParseQuery("size=10&index=3", "index", "size")
	if err != nil || q["index"] != 3 || q["size"] != 10 {
		t.Fatal(q, err)
	}
	for _, bad := range []string{"", "index=3", "index=3&size=+1", "index=3&size=1e3", "index=3&size=0x10", "index=3;size=1", "index=&size=1"} {
		if _, err := translog.ParseQuery(bad, "index", "size"); !errors.Is(err, translog.ErrBadQuery) {
			t.Errorf("ParseQuery(%q): %v", bad, err)
		}
	}
}
