package evidence

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"github.com/fxamacker/cbor/v2"
	gocose "github.com/veraison/go-cose"

	"github.com/rootline/rootline/pluton"
)

// Interoperability with github.com/veraison/go-cose, an independent COSE
// implementation (ES256, ES384 and EdDSA; it has no ML-DSA): it verifies
// our tokens with nothing but the public key of the x5chain's first
// certificate, and we verify tokens it signs.

var goCOSEAlgs = map[pluton.Algorithm]gocose.Algorithm{
	pluton.ECDSAP256: gocose.AlgorithmES256,
	pluton.ECDSAP384: gocose.AlgorithmES384,
	pluton.Ed25519:   gocose.AlgorithmEdDSA,
}

func TestInteropGoCOSEVerifies(t *testing.T) {
	for _, alg := range classicAlgs {
		t.Run(alg.String(), func(t *testing.T) {
			p := newPKI(t, alg, 3)
			c := testClaims(t)
			tok := p.sign(t, c)

			var m gocose.Sign1Message
			if err := m.UnmarshalCBOR(tok); err != nil {
				t.Fatal(err)
			}
			// The verifier's key comes from the token itself: the leaf of
			// the x5chain in the protected header, parsed by crypto/x509.
			chain, ok := m.Headers.Protected[gocose.HeaderLabelX5Chain].([]any)
			if !ok || len(chain) != 3 {
				t.Fatalf("x5chain as go-cose reads it: %T", m.Headers.Protected[gocose.HeaderLabelX5Chain])
			}
			leaf, err := x509.ParseCertificate(chain[0].([]byte))
			if err != nil {
				t.Fatal(err)
			}
			gotAlg, err := m.Headers.Protected.Algorithm()
			if err != nil || gotAlg != goCOSEAlgs[alg] {
				t.Fatalf("algorithm %v, %v", gotAlg, err)
			}
			v, err := gocose.NewVerifier(gotAlg, leaf.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(nil, v); err != nil {
				t.Fatalf("go-cose refuses our token: %v", err)
			}
			if ct := m.Headers.Protected[gocose.HeaderLabelContentType]; ct != int64(ContentFormat) {
				t.Fatalf("content type %v (%T)", ct, ct)
			}
			// And a plain CBOR decoder reads the claims.
			var claims map[int64]any
			if err := cbor.Unmarshal(m.Payload, &claims); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(claims[10].([]byte), c.Nonce) || claims[265] != Profile {
				t.Fatalf("claims %v", claims)
			}
			// A changed payload fails go-cose's verification too.
			m.Payload[len(m.Payload)-1] ^= 1
			if err := m.Verify(nil, v); err == nil {
				t.Fatal("go-cose accepts a changed payload")
			}
		})
	}
}

func TestInteropGoCOSESigns(t *testing.T) {
	for _, alg := range classicAlgs {
		t.Run(alg.String(), func(t *testing.T) {
			p := newPKI(t, alg, 4)
			c := testClaims(t)
			s, err := gocose.NewSigner(goCOSEAlgs[alg], p.key)
			if err != nil {
				t.Fatal(err)
			}
			chain := make([]any, len(p.chain))
			for i, der := range p.chain {
				chain[i] = der
			}
			headers := gocose.Headers{Protected: gocose.ProtectedHeader{
				gocose.HeaderLabelAlgorithm:   goCOSEAlgs[alg],
				gocose.HeaderLabelContentType: uint64(ContentFormat),
				gocose.HeaderLabelX5Chain:     chain,
			}}
			tok, err := gocose.Sign1(rand.Reader, s, headers, mustPayload(t, c), nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Verify(tok, &VerifyOptions{Nonce: c.Nonce, Roots: p.roots})
			if err != nil {
				t.Fatalf("we refuse go-cose's token: %v", err)
			}
			if got.Algorithm != alg || len(got.Claims.Layers) != 3 {
				t.Fatalf("token %+v", got)
			}
		})
	}
}
