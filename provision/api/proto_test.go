package api_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/rootline/rootline/provision/api"
)

var allReasons = []api.Reason{
	api.ReasonBadRequest, api.ReasonTooLarge, api.ReasonUnauthenticated, api.ReasonNotStation,
	api.ReasonNonce, api.ReasonStationNotAllowed, api.ReasonEvidence, api.ReasonKeyMismatch,
	api.ReasonReferenceValues, api.ReasonClone, api.ReasonQuotaExceeded, api.ReasonNotFound,
	api.ReasonWrongState, api.ReasonTransportKey, api.ReasonTPMIdentity, api.ReasonInjectionUnsupported,
	api.ReasonInjection, api.ReasonInternal,
}

// TestProtoReasonTable: the table of reasons and codes in the .proto file's
// ErrorInfo comment, which clients of other languages read, is what the
// server sends.
func TestProtoReasonTable(t *testing.T) {
	b, err := os.ReadFile("../../proto/rootline/provision/v1/provision.proto")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^//   ([a-z_]+) +([A-Z_]+) `)
	table := map[api.Reason]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		table[api.Reason(m[1])] = strings.ToLower(m[2])
	}
	if len(table) != len(allReasons) {
		t.Errorf("the table has %d reasons, the package %d", len(table), len(allReasons))
	}
	for _, r := range allReasons {
		if got, want := table[r], api.Code(r).String(); got != want {
			t.Errorf("reason %s: the .proto says %q, the server sends %q", r, got, want)
		}
	}
}
