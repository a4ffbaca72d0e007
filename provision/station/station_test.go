package station

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
)

func TestDialRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "http://x", "https://", "https://u:p@x", "https://x?q=1", "https://x#f", "ftp://x"} {
		if _, err := Dial(&Config{URL: u, Transport: http.DefaultTransport}); err == nil {
			t.Errorf("Dial(%q) succeeded", u)
		}
	}
	if _, err := Dial(&Config{URL: "https://x"}); err == nil {
		t.Error("Dial without certificates succeeded")
	}
}

// answer is a transport that answers every request with one status and body.
type answer struct {
	status int
	body   string
}

func (a answer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: a.status, Status: http.StatusText(a.status), Body: io.NopCloser(strings.NewReader(a.body)), Header: http.Header{}, Request: r}, nil
}

func client(t *testing.T, a answer) *Client {
	t.Helper()
	c, err := Dial(&Config{URL: "https://provision.test/base", Transport: a})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUntrustedAnswers(t *testing.T) {
	ctx := t.Context()
	// A refusal is an *api.Error with the server's reason.
	_, err := client(t, answer{403, `{"error":{"reason":"station_not_allowed","message":"m"}}`}).Nonce(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Reason != api.ReasonStationNotAllowed {
		t.Fatalf("refusal: %v", err)
	}
	// A refusal without an error body.
	_, err = client(t, answer{502, `<html>`}).Nonce(ctx)
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Reason != api.ReasonInternal {
		t.Fatalf("bare refusal: %v", err)
	}
	for name, a := range map[string]answer{
		"short nonce":   {200, `{"nonce":"AQID"}`},
		"unknown field": {200, `{"nonce":"AQID","x":1}`},
		"trailing":      {200, `{}{}`},
		"oversized":     {200, `{"nonce":"` + strings.Repeat("A", MaxResponse) + `"}`},
		"not json":      {200, `nonce`},
	} {
		if _, err := client(t, a).Nonce(ctx); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	req := &provision.Request{UEID: []byte{1}, CSR: []byte{1}, Evidence: []byte{1}, Product: "p", Lot: "l"}
	for name, a := range map[string]answer{
		"no chain":   {200, `{"chain":[],"log_index":0}`},
		"one cert":   {200, `{"chain":["AQID"],"log_index":0}`},
		"long chain": {200, `{"chain":["AQ==","AQ==","AQ==","AQ==","AQ==","AQ==","AQ==","AQ==","AQ=="],"log_index":0}`},
	} {
		if _, err := client(t, a).Provision(ctx, req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if res, err := client(t, answer{200, `{"chain":["AQ==","Ag=="],"log_index":7}`}).Provision(ctx, req); err != nil || res.LogIndex != 7 || len(res.Chain) != 2 {
		t.Fatalf("good answer: %v, %v", res, err)
	}
}
