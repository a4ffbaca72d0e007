package station

import (
	"testing"

	"github.com/rootline/rootline/provision"
)

// FuzzAnswer: any answer of the server is a result or an error, never a
// panic.
func FuzzAnswer(f *testing.F) {
	f.Add(200, []byte(`{"chain":["AQ==","Ag=="],"log_index":7}`))
	f.Add(200, []byte(`{"nonce":"AQID"}`))
	f.Add(403, []byte(`{"error":{"reason":"station_not_allowed","message":"m"}}`))
	f.Add(500, []byte(`<html>`))
	f.Add(200, []byte(`{}{}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		c := client(t, answer{status, string(body)})
		c.Nonce(t.Context())
		res, err := c.Provision(t.Context(), &provision.Request{})
		if err == nil && (len(res.Chain) < 2 || status != 200) {
			t.Fatalf("accepted %d %q", status, body)
		}
		c.Confirm(t.Context(), []byte{1})
	})
}
