package api_test

import (
	"crypto/tls"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/api"
	pb "github.com/rootline/rootline/provision/api/provisionv1"
)

// grpcConn is a grpc-go connection (an independent gRPC implementation) to
// the service with a client certificate.
func (e *env) grpcConn(t *testing.T, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: e.srvCA, Certificates: []tls.Certificate{cert}})
	cc, err := grpc.NewClient(strings.TrimPrefix(e.url, "https://"), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestGRPCGo: a chip provisioned through grpc-go, calling the procedures
// by name with the generated messages; a refusal's status carries the
// ErrorInfo detail.
func TestGRPCGo(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	d := e.chip(t)
	flow := func(cc *grpc.ClientConn) (*pb.ProvisionResponse, []byte, error) {
		var nr pb.NonceResponse
		if err := cc.Invoke(ctx, api.PathNonce, &pb.NonceRequest{}, &nr); err != nil {
			return nil, nil, err
		}
		if len(nr.Nonce) != provision.NonceSize {
			t.Fatalf("nonce of %d bytes", len(nr.Nonce))
		}
		fr, err := d.FactoryRequest(ctx, nr.Nonce)
		if err != nil {
			t.Fatal(err)
		}
		var pr pb.ProvisionResponse
		// Metadata naming another station changes nothing.
		mctx := metadata.AppendToOutgoingContext(ctx, "x-station", "st-a", "x-station-products", "sku-a")
		err = cc.Invoke(mctx, api.PathProvision, &pb.ProvisionRequest{
			Ueid: fr.UEID, Csr: fr.CSR, Evidence: fr.Evidence, Product: "sku-a", Lot: "lot-1",
		}, &pr)
		return &pr, fr.UEID, err
	}

	// Station B may not provision sku-a.
	_, _, err := flow(e.grpcConn(t, e.stB))
	st, _ := status.FromError(err)
	if st.Code() != codes.PermissionDenied {
		t.Fatalf("provision by B: %v", err)
	}
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*pb.ErrorInfo); ok {
			reason = info.Reason
		}
	}
	if reason != string(api.ReasonStationNotAllowed) {
		t.Fatalf("refusal details %v", st.Details())
	}

	cc := e.grpcConn(t, e.stA)
	pr, ueid, err := flow(cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.InstallIdentity(ctx, pr.Chain); err != nil {
		t.Fatal(err)
	}
	if err := cc.Invoke(ctx, api.PathConfirm, &pb.ConfirmRequest{Ueid: ueid}, &pb.ConfirmResponse{}); err != nil {
		t.Fatal(err)
	}
	if lc, err := d.Chip().Lifecycle(ctx); err != nil || lc != pluton.Provisioned {
		t.Fatalf("chip lifecycle %v, %v", lc, err)
	}
	// A message over the limit.
	err = cc.Invoke(ctx, api.PathProvision, &pb.ProvisionRequest{Evidence: make([]byte, api.MaxProvisionBody+1)}, &pb.ProvisionResponse{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized message: %v", err)
	}
	// An unknown procedure.
	if err := cc.Invoke(ctx, "/rootline.provision.v1.ProvisionService/Revoke", &pb.ConfirmRequest{}, &pb.ConfirmResponse{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown procedure: %v", err)
	}
}
