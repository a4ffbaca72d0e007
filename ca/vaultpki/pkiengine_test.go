package vaultpki_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
	"github.com/rootline/rootline/internal/vaulttest"
)

// TestPKIEngineCannotIssueProfiles records why this package does not
// issue through Vault's PKI engine (see the package documentation): on
// the Vault this test runs, no way of asking the engine gives a
// certificate with an RFC 4108 HardwareModuleName. If a later Vault can,
// this test fails, and the package can be reconsidered.
func TestPKIEngineCannotIssueProfiles(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.EnablePKI(t, "pki")
	srv.Write(t, "pki/root/generate/internal", map[string]any{
		"common_name": "Vault PKI Test Root", "key_type": "ec", "key_bits": 256, "ttl": "87600h",
	})
	srv.Write(t, "pki/roles/device", map[string]any{
		"allow_any_name": true, "enforce_hostnames": false, "require_cn": false,
		"allowed_other_sans": "*", "use_csr_sans": true, "use_csr_common_name": true,
		"key_type": "any", "ttl": "24h",
	})
	srv.Write(t, "pki/roles/issue", map[string]any{
		"allow_any_name": true, "enforce_hostnames": false, "require_cn": false,
		"allowed_other_sans": "*", "key_type": "ec", "key_bits": 256, "ttl": "24h",
	})
	ueid := catest.UEID(t)
	san, err := ca.MarshalHardwareModuleName(catest.HWType, ueid)
	if err != nil {
		t.Fatal(err)
	}
	csr := catest.CSR(t, catest.Key(t), pkix.Name{CommonName: "sku-a"},
		pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san})
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	ctx := t.Context()

	// 1. A CSR that carries the HardwareModuleName, through sign-verbatim
	// (which copies a CSR's extensions) and through a role that takes the
	// CSR's names: Vault reads every otherName as a UTF8String and refuses.
	for _, path := range []string{"pki/sign-verbatim", "pki/sign-verbatim/device", "pki/sign/device"} {
		_, err := srv.Client.Logical().WriteWithContext(ctx, path, map[string]any{"csr": csrPEM})
		if err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%s with a HardwareModuleName in the CSR: %v (want Vault's refusal of a non-UTF-8 otherName)", path, err)
		} else {
			t.Logf("%s: %s", path, err.(*api.ResponseError).Errors)
		}
	}

	// The control: the same CSR without the name is signed.
	plain := catest.CSR(t, catest.Key(t), pkix.Name{CommonName: "sku-a"})
	srv.Write(t, "pki/sign-verbatim", map[string]any{
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: plain})),
	})

	// 2. other_sans takes only the UTF8 type.
	for _, typ := range []string{"SEQUENCE", "OCTET", "DER", "HEX"} {
		_, err := srv.Client.Logical().WriteWithContext(ctx, "pki/issue/issue", map[string]any{
			"common_name": "sku-a", "other_sans": "1.3.6.1.5.5.7.8.4;" + typ + ":00",
		})
		if err == nil || !strings.Contains(err.Error(), "only utf8") {
			t.Errorf("other_sans of type %s: %v (want \"only utf8 other SANs are supported\")", typ, err)
		} else {
			t.Logf("other_sans %s: %s", typ, err.(*api.ResponseError).Errors)
		}
	}

	// 3. With the UTF8 type, the otherName's value is a UTF8String, not a
	// HardwareModuleName SEQUENCE: ca.HardwareModuleName does not read it.
	sec := srv.Write(t, "pki/issue/issue", map[string]any{
		"common_name": "sku-a", "other_sans": "1.3.6.1.5.5.7.8.4;UTF8:" + "0123456789abcdef",
	})
	block, _ := pem.Decode([]byte(sec.Data["certificate"].(string)))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.HardwareModuleName(cert); err == nil {
		t.Error("Vault's other_sans made a HardwareModuleName")
	} else {
		t.Logf("other_sans UTF8: %v", err)
	}
}
