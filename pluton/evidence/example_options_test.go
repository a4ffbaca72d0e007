package evidence_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
)

// A device makes a TokenSigner once per boot and signs each attestation
// with it; a verifier remembers the chains it verified, by the SHA-256 of
// their DER, and parses the next tokens of the same chain without parsing
// its certificates again (their signature is still checked).
func ExampleTokenSigner() {
	deviceID := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	alias := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	deviceIDCert := certificate(deviceID.Public(), deviceID, nil, "DeviceID", true)
	aliasCert := certificate(alias.Public(), deviceID, deviceIDCert, "Alias", false)
	roots := x509.NewCertPool()
	roots.AddCert(deviceIDCert)

	// On the device, once per boot.
	ts, err := evidence.NewTokenSigner(alias, pluton.Ed25519, [][]byte{aliasCert.Raw, deviceIDCert.Raw})
	if err != nil {
		panic(err)
	}
	// In the verifier: its cache of verified chains.
	verified := map[[32]byte][]*x509.Certificate{}
	key := func(ders [][]byte) [32]byte {
		h := sha256.New()
		for _, d := range ders {
			h.Write([]byte{byte(len(d) >> 8), byte(len(d))})
			h.Write(d)
		}
		return [32]byte(h.Sum(nil))
	}
	opts := &evidence.ParseOptions{Certificates: func(ders [][]byte) []*x509.Certificate { return verified[key(ders)] }}

	for i := range 2 {
		nonce := bytes.Repeat([]byte{byte(i + 1)}, 16)
		token, err := ts.Sign(rand.Reader, &evidence.Claims{Nonce: nonce, UEID: bytes.Repeat([]byte{0x42}, 17)})
		if err != nil {
			panic(err)
		}
		t, err := evidence.ParseWithOptions(token, opts)
		if err != nil {
			panic(err)
		}
		cached := verified[key([][]byte{t.Chain[0].Raw, t.Chain[1].Raw})] != nil
		if !cached {
			// A chain not seen before: the whole of Verify, then remember
			// the chain Verify accepted.
			if t, err = evidence.Verify(token, &evidence.VerifyOptions{Nonce: nonce, Roots: roots}); err != nil {
				panic(err)
			}
			verified[key([][]byte{t.Chain[0].Raw, t.Chain[1].Raw})] = t.Chain
		}
		// With the chain cached, the verifier still checks the token's
		// COSE signature with t.PublicKey, the nonce and the event log
		// (package attest does, without Verify's chain checks).
		fmt.Printf("attestation %d: chain cached %v, signed by %q\n", i+1, cached, t.Chain[0].Subject.CommonName)
	}
	// Output:
	// attestation 1: chain cached false, signed by "Alias"
	// attestation 2: chain cached true, signed by "Alias"
}
