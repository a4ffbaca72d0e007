package api_test

import (
	"errors"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/rootline/rootline/provision/api"
	pb "github.com/rootline/rootline/provision/api/provisionv1"
)

// FuzzUnmarshal: any message, JSON or binary, decodes into a request (of
// each call: which selects it) or fails with a typed bad_request, never
// panics.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"ueid":"AQID","csr":"AQID","evidence":"AQID","product":"sku-a","lot":"l"}`,
		`{"ueid":null}`, `[]`, `{}{}`, `{"x":1}`, `{"ueid":"!!"}`, `"str"`, `{"lot":"\u0000"}`,
		`{"lot":"a","lot":"b"}`, `{"logIndex":"1"}`,
		`{"ueid":"AQID","product":"sku-b","lot":"l","evidence":"AQID","transportStatement":"AQID","transport_signature":"AQID"}`,
		`{"ueid":"AQID","csr":"AQID","evidence":"AQID","product":"sku-a","lot":"l","iakPublic":"AQID","idevid_public":"AQID",
		  "certifyAttest":"AQID","certifySignature":"AQID"}`,
		`{"key":"AQID"}`, `{"iakPublic":"AQID","iak_public":"AQID"}`,
	} {
		for which := range uint8(3) {
			f.Add([]byte(s), true, which)
		}
	}
	for _, b := range [][]byte{{}, {0x0a, 0x03, 1, 2, 3}, {0x78, 0x01}, {0x0a, 0x05, 0x01}, {0x22, 0x01, 0xff}, {0x08, 0x01},
		{0x2a, 0x02, 1, 2, 0x32, 0x01, 3}, {0x4a, 0x01, 1}, {0x52, 0x01, 1}} {
		for which := range uint8(3) {
			f.Add(b, false, which)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, json bool, which uint8) {
		var req proto.Message
		switch which % 3 {
		case 0:
			req = &pb.ProvisionRequest{}
		case 1:
			req = &pb.ProvisionInjectedRequest{}
		default:
			req = &pb.ProvisionTPMRequest{}
		}
		err := api.Unmarshal(b, json, req)
		if err == nil {
			if len(req.ProtoReflect().GetUnknown()) != 0 {
				t.Fatal("accepted unknown fields")
			}
			return
		}
		var e *api.Error
		if !errors.As(err, &e) || e.Reason != api.ReasonBadRequest || e.Code != connect.CodeInvalidArgument || e.Status != 400 {
			t.Fatalf("error %#v", err)
		}
	})
}

// FuzzFromConnect: any error detail a server sends gives a bounded refusal
// or none, never a panic.
func FuzzFromConnect(f *testing.F) {
	f.Add(uint32(7), "m", []byte{0x0a, 0x13}, true)
	f.Add(uint32(3), "", []byte("\x0a\x03bad"), true)
	f.Add(uint32(14), "down", []byte{}, false)
	f.Fuzz(func(t *testing.T, code uint32, msg string, detail []byte, withDetail bool) {
		ce := connect.NewError(connect.Code(code%20), errors.New(msg))
		if withDetail {
			var info pb.ErrorInfo
			info.Reason = string(detail)
			if d, err := connect.NewErrorDetail(&info); err == nil {
				ce.AddDetail(d)
			}
		}
		e, ok := api.FromConnect(ce)
		if !ok {
			return
		}
		if len(e.Reason) > 64 || len(e.Message) > 1<<10+4 || e.Status < 400 || e.Status > 599 && e.Status != 499 {
			t.Fatalf("refusal %+v", e)
		}
	})
}
