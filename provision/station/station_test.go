package station

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rootline/rootline/device/factoryport"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	pb "github.com/rootline/rootline/provision/api/provisionv1"
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

// answer is a transport that answers every request with one gRPC answer:
// an HTTP status, a content type, a body and trailers.
type answer struct {
	status  int
	ctype   string
	body    []byte
	trailer http.Header
	// paths records the paths asked for.
	paths *[]string
}

func (a answer) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.paths != nil {
		*a.paths = append(*a.paths, r.URL.Path)
	}
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	h := http.Header{}
	if a.ctype != "" {
		h.Set("Content-Type", a.ctype)
	}
	return &http.Response{StatusCode: a.status, Status: http.StatusText(a.status), Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: h, Body: io.NopCloser(bytes.NewReader(a.body)), Trailer: a.trailer.Clone(), Request: r}, nil
}

// envelope frames a gRPC message.
func envelope(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// ok is a gRPC answer with message m.
func ok(t testing.TB, m proto.Message) answer {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: 200, ctype: "application/grpc", body: envelope(b), trailer: http.Header{"Grpc-Status": {"0"}}}
}

// statusBin is a google.rpc.Status with a code, a message and details.
func statusBin(code connect.Code, msg string, details ...proto.Message) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(code))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, msg)
	for _, d := range details {
		a, _ := anypb.New(d)
		ab, _ := proto.Marshal(a)
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, ab)
	}
	return b
}

// refused is a gRPC refusal with code, message and a reason ("": no
// detail).
func refused(code connect.Code, msg string, reason api.Reason) answer {
	var details []proto.Message
	if reason != "" {
		details = append(details, &pb.ErrorInfo{Reason: string(reason)})
	}
	return answer{status: 200, ctype: "application/grpc", trailer: http.Header{
		"Grpc-Status":             {strconv.Itoa(int(code))},
		"Grpc-Message":            {msg},
		"Grpc-Status-Details-Bin": {base64.RawStdEncoding.EncodeToString(statusBin(code, msg, details...))},
	}}
}

func client(t testing.TB, a answer) *Client {
	t.Helper()
	c, err := Dial(&Config{URL: "https://provision.test/base", Transport: a})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPaths(t *testing.T) {
	var paths []string
	a := ok(t, &pb.NonceResponse{Nonce: make([]byte, provision.NonceSize)})
	a.paths = &paths
	if _, err := client(t, a).Nonce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || paths[0] != "/base"+api.PathNonce {
		t.Fatalf("paths %q", paths)
	}
}

func TestUntrustedAnswers(t *testing.T) {
	ctx := t.Context()
	// A refusal is an *api.Error with the server's reason.
	_, err := client(t, refused(connect.CodePermissionDenied, "m", api.ReasonStationNotAllowed)).Nonce(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Reason != api.ReasonStationNotAllowed || ae.Code != connect.CodePermissionDenied || ae.Message != "m" {
		t.Fatalf("refusal: %v", err)
	}
	if !errors.Is(err, provision.ErrStationNotAllowed) || !strings.Contains(err.Error(), "station_not_allowed") {
		t.Fatalf("refusal %v: not ErrStationNotAllowed, or without its reason", err)
	}
	// A refusal without a detail: the code alone.
	for code, want := range map[connect.Code]struct {
		status int
		reason api.Reason
	}{
		connect.CodeInternal:          {500, api.ReasonInternal},
		connect.CodeInvalidArgument:   {400, api.ReasonBadRequest},
		connect.CodeResourceExhausted: {413, api.ReasonTooLarge},
		connect.CodeUnimplemented:     {501, api.ReasonInternal},
	} {
		_, err = client(t, refused(code, "bare", "")).Nonce(ctx)
		if !errors.As(err, &ae) || ae.Status != want.status || ae.Reason != want.reason || ae.Code != code {
			t.Fatalf("bare refusal %v: %v", code, err)
		}
	}
	// A reason too long to be one; a long message is truncated.
	_, err = client(t, refused(connect.CodePermissionDenied, strings.Repeat("m", 5000), api.Reason(strings.Repeat("r", 100)))).Nonce(ctx)
	if !errors.As(err, &ae) || ae.Reason != api.ReasonInternal || len(ae.Message) > 1100 {
		t.Fatalf("long refusal: %.200v", err)
	}
	// Not an answer of the service: a transport error, not a refusal.
	for name, a := range map[string]answer{
		"unavailable": refused(connect.CodeUnavailable, "down", ""),
		"proxy 502":   {status: 502, ctype: "text/html", body: []byte("<html>")},
	} {
		_, err := client(t, a).Nonce(ctx)
		if err == nil || errors.As(err, &ae) {
			t.Errorf("%s: %v", name, err)
		}
	}
	big := ok(t, &pb.NonceResponse{Nonce: make([]byte, MaxResponse)})
	for name, a := range map[string]answer{
		"short nonce":   ok(t, &pb.NonceResponse{Nonce: []byte{1, 2, 3}}),
		"oversized":     big,
		"not grpc":      {status: 200, ctype: "application/json", body: []byte(`{"nonce":"AQID"}`), trailer: http.Header{"Grpc-Status": {"0"}}},
		"bad envelope":  {status: 200, ctype: "application/grpc", body: []byte{0, 0, 0, 0, 9, 1}, trailer: http.Header{"Grpc-Status": {"0"}}},
		"bad message":   {status: 200, ctype: "application/grpc", body: envelope([]byte{0x0a, 0x05, 1}), trailer: http.Header{"Grpc-Status": {"0"}}},
		"no status":     {status: 200, ctype: "application/grpc", body: envelope(nil)},
		"compressed":    {status: 200, ctype: "application/grpc", body: append([]byte{1}, envelope(nil)[1:]...), trailer: http.Header{"Grpc-Status": {"0"}}},
		"two messages":  {status: 200, ctype: "application/grpc", body: append(envelope(nil), envelope(nil)...), trailer: http.Header{"Grpc-Status": {"0"}}},
		"html with 200": {status: 200, ctype: "text/html", body: []byte("<html>")},
	} {
		if _, err := client(t, a).Nonce(ctx); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	req := &provision.Request{UEID: []byte{1}, CSR: []byte{1}, Evidence: []byte{1}, Product: "p", Lot: "l"}
	for name, a := range map[string]answer{
		"no chain":   ok(t, &pb.ProvisionResponse{}),
		"one cert":   ok(t, &pb.ProvisionResponse{Chain: [][]byte{{1, 2, 3}}}),
		"long chain": ok(t, &pb.ProvisionResponse{Chain: bytes.Fields(bytes.Repeat([]byte("a "), api.MaxChainCerts+1))}),
	} {
		if _, err := client(t, a).Provision(ctx, req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if res, err := client(t, ok(t, &pb.ProvisionResponse{Chain: [][]byte{{1}, {2}}, LogIndex: 7})).Provision(ctx, req); err != nil || res.LogIndex != 7 || len(res.Chain) != 2 {
		t.Fatalf("good answer: %v, %v", res, err)
	}
	if err := client(t, ok(t, &pb.ConfirmResponse{})).Confirm(ctx, []byte{1}); err != nil {
		t.Fatalf("confirm: %v", err)
	}
}

var (
	_ InjectedChip = (*factoryport.Client)(nil)
	_ TPMChip      = (*factoryport.Client)(nil)
	_ Chip         = (*factoryport.Client)(nil)
)

func TestNewPaths(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		path string
		call func(c *Client) error
		resp proto.Message
	}{
		{api.PathProvisionInjected, func(c *Client) error {
			_, err := c.ProvisionInjected(ctx, &provision.InjectedRequest{UEID: []byte{1}})
			return err
		}, &pb.ProvisionInjectedResponse{Chain: [][]byte{{1}, {2}}, Key: []byte{1}}},
		{api.PathProvisionTPM, func(c *Client) error {
			_, err := c.ProvisionTPM(ctx, &provision.TPMRequest{})
			return err
		}, &pb.ProvisionResponse{Chain: [][]byte{{1}, {2}}}},
	} {
		var paths []string
		a := ok(t, tc.resp)
		a.paths = &paths
		if err := tc.call(client(t, a)); err != nil {
			t.Fatal(err)
		}
		if len(paths) != 1 || paths[0] != "/base"+tc.path {
			t.Fatalf("paths %q, want %s", paths, tc.path)
		}
	}
}

func TestUntrustedInjectedAnswers(t *testing.T) {
	ctx := t.Context()
	req := &provision.InjectedRequest{UEID: []byte{1}, Product: "p", Lot: "l"}
	two := [][]byte{{1}, {2}}
	for name, a := range map[string]answer{
		"no chain":        ok(t, &pb.ProvisionInjectedResponse{Key: []byte{1}}),
		"long chain":      ok(t, &pb.ProvisionInjectedResponse{Chain: bytes.Fields(bytes.Repeat([]byte("a "), api.MaxChainCerts+1)), Key: []byte{1}}),
		"secrets, no key": ok(t, &pb.ProvisionInjectedResponse{Chain: two, Secrets: [][]byte{{1}}}),
		"many secrets":    ok(t, &pb.ProvisionInjectedResponse{Chain: two, Key: []byte{1}, Secrets: bytes.Fields(bytes.Repeat([]byte("s "), api.MaxWrappedSecrets+1))}),
	} {
		if _, err := client(t, a).ProvisionInjected(ctx, req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	res, err := client(t, ok(t, &pb.ProvisionInjectedResponse{Chain: two, LogIndex: 3, Key: []byte{9}, Secrets: [][]byte{{8}}})).ProvisionInjected(ctx, req)
	if err != nil || res.LogIndex != 3 || !bytes.Equal(res.Key, []byte{9}) || len(res.Secrets) != 1 {
		t.Fatalf("good answer: %+v, %v", res, err)
	}
	// After the confirmation: no key, and no secrets.
	res, err = client(t, ok(t, &pb.ProvisionInjectedResponse{Chain: two})).ProvisionInjected(ctx, req)
	if err != nil || res.Key != nil || res.Secrets != nil {
		t.Fatalf("answer without a key: %+v, %v", res, err)
	}
	// The injection reasons are refusals, with their sentinels.
	for _, tc := range []struct {
		code   connect.Code
		reason api.Reason
		status int
		is     []error
	}{
		{connect.CodeUnavailable, api.ReasonInjection, 503, []error{provision.ErrInjection}},
		{connect.CodeFailedPrecondition, api.ReasonInjectionUnsupported, 501, []error{provision.ErrInjection, hsm.ErrMechanismUnsupported}},
		{connect.CodeInvalidArgument, api.ReasonTransportKey, 422, []error{provision.ErrTransportKey}},
		{connect.CodeInvalidArgument, api.ReasonTPMIdentity, 422, []error{provision.ErrTPMIdentity}},
	} {
		_, err := client(t, refused(tc.code, "m", tc.reason)).ProvisionInjected(ctx, req)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Reason != tc.reason || ae.Status != tc.status {
			t.Fatalf("%s: %v", tc.reason, err)
		}
		for _, s := range tc.is {
			if !errors.Is(err, s) {
				t.Errorf("%s: not %v", tc.reason, s)
			}
		}
	}
}
