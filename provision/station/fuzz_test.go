package station

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"testing"

	"connectrpc.com/connect"

	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	pb "github.com/rootline/rootline/provision/api/provisionv1"
)

// FuzzAnswer: any gRPC answer of the server (body, status, status
// details) is a result or an error, never a panic.
func FuzzAnswer(f *testing.F) {
	add := func(a answer) {
		f.Add(a.body, a.trailer.Get("Grpc-Status"), []byte(a.trailer.Get("Grpc-Status-Details-Bin")))
	}
	add(ok(f, &pb.ProvisionResponse{Chain: [][]byte{{1}, {2}}, LogIndex: 7}))
	add(ok(f, &pb.NonceResponse{Nonce: make([]byte, provision.NonceSize)}))
	add(ok(f, &pb.ProvisionInjectedResponse{Chain: [][]byte{{1}, {2}}, LogIndex: 7, Key: []byte{3}, Secrets: [][]byte{{4}}}))
	add(refused(connect.CodeUnavailable, "m", api.ReasonInjection))
	add(refused(connect.CodePermissionDenied, "m", api.ReasonStationNotAllowed))
	add(refused(connect.CodeInternal, "m", ""))
	f.Add([]byte{0, 0, 0, 0, 9, 1}, "0", []byte{})
	f.Add([]byte("<html>"), "", []byte("!!"))
	f.Fuzz(func(t *testing.T, body []byte, status string, details []byte) {
		tr := http.Header{}
		if status != "" {
			tr.Set("Grpc-Status", status)
		}
		if len(details) > 0 {
			tr.Set("Grpc-Status-Details-Bin", base64.RawStdEncoding.EncodeToString(details))
		}
		c := client(t, answer{status: 200, ctype: "application/grpc", body: body, trailer: tr})
		c.Nonce(t.Context())
		res, err := c.Provision(t.Context(), &provision.Request{})
		if code, perr := strconv.ParseUint(status, 10, 32); err == nil && (len(res.Chain) < 2 || len(res.Chain) > api.MaxChainCerts || perr != nil || code != 0) {
			t.Fatalf("accepted status %q: %d certificates", status, len(res.Chain))
		}
		c.Confirm(t.Context(), []byte{1})
		if res, err := c.ProvisionInjected(t.Context(), &provision.InjectedRequest{}); err == nil &&
			(len(res.Chain) < 2 || len(res.Chain) > api.MaxChainCerts || len(res.Secrets) > api.MaxWrappedSecrets || res.Key == nil && res.Secrets != nil) {
			t.Fatalf("accepted an injected answer of %d certificates, %d secrets", len(res.Chain), len(res.Secrets))
		}
		if res, err := c.ProvisionTPM(t.Context(), &provision.TPMRequest{}); err == nil && (len(res.Chain) < 2 || len(res.Chain) > api.MaxChainCerts) {
			t.Fatalf("accepted a TPM answer of %d certificates", len(res.Chain))
		}
	})
}
