package tpm_test

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"

	"github.com/rootline/rootline/pluton/tpm"
)

// The factory checks that a TPM's IDevID lives in the same TPM as its
// IAK, from what [tpm.TPM.IdentityKeys] returned for the factory's nonce
// (here a certification recorded from swtpm).
func ExampleVerifyCertify() {
	b, err := os.ReadFile("testdata/certify-swtpm.json")
	if err != nil {
		panic(err)
	}
	var v struct {
		IAK       []byte `json:"iak_spki"`
		IDevID    []byte `json:"idevid_public"`
		Nonce     []byte `json:"nonce"`
		Attest    []byte `json:"attest"`
		Signature []byte `json:"signature"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		panic(err)
	}
	iak, err := x509.ParsePKIXPublicKey(v.IAK) // trusted: the IAK certificate's key
	if err != nil {
		panic(err)
	}
	idevid, err := tpm.VerifyCertify(iak, v.IDevID, v.Attest, v.Signature, v.Nonce)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println("IDevID to certify:", idevid.Curve.Params().Name)
	_, err = tpm.VerifyCertify(iak, v.IDevID, v.Attest, v.Signature, []byte("another nonce"))
	fmt.Println(err)
	// Output:
	// IDevID to certify: P-256
	// tpm: certify: nonce (extraData) does not match
}
