package api_test

import (
	"testing"

	"github.com/rootline/rootline/provision/api"
)

// FuzzDecodeBytes: any body decodes into a request or fails with a typed
// 400, never panics.
func FuzzDecodeBytes(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"ueid":"AQID","csr":"AQID","evidence":"AQID","product":"sku-a","lot":"l"}`,
		`{"ueid":null}`, `[]`, `{}{}`, `{"x":1}`, `{"ueid":"!!"}`, `"str"`, `{"lot":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req api.ProvisionRequest
		err := api.DecodeBytes(b, &req)
		if err == nil {
			return
		}
		e, ok := err.(*api.Error)
		if !ok || e.Status != 400 || e.Reason != api.ReasonBadRequest {
			t.Fatalf("error %#v", err)
		}
	})
}
