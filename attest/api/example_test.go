package api_test

import (
	"encoding/hex"
	"fmt"
	"log"

	"github.com/fxamacker/cbor/v2"

	"github.com/rootline/rootline/attest/api"
)

// A constrained device speaks CBOR: the attest request is a map with
// integer keys (1: evidence, 2: IDevID chain, 3: CSR), in Core Deterministic
// Encoding, sent with Content-Type application/cbor.
func ExampleAttestRequest() {
	enc, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		log.Fatal(err)
	}
	b, err := enc.Marshal(&api.AttestRequest{Evidence: []byte{0xd2, 0x84}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(hex.EncodeToString(b))
	// The answer: 1 status, 2 reasons, 3 EAR, 4 certificate chain, …
	var res api.AttestResponse
	if err := cbor.Unmarshal([]byte("\xa3\x01\x69affirming\x03\x65a.b.c\x05\xa0"), &res); err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Status, res.EAR)
	// Output:
	// a10142d284
	// affirming a.b.c
}
