package cose

import (
	"crypto"
	"crypto/rand"
	"testing"

	gocose "github.com/veraison/go-cose"

	"github.com/rootline/rootline/pluton"
)

// Interoperability with github.com/veraison/go-cose, an independent COSE
// implementation (ES256, ES384 and EdDSA; it has no ML-DSA).

var goCOSEAlgs = map[pluton.Algorithm]gocose.Algorithm{
	pluton.ECDSAP256: gocose.AlgorithmES256,
	pluton.ECDSAP384: gocose.AlgorithmES384,
	pluton.Ed25519:   gocose.AlgorithmEdDSA,
}

func TestInteropSign1OursToGoCOSE(t *testing.T) {
	for alg, galg := range goCOSEAlgs {
		t.Run(alg.String(), func(t *testing.T) {
			s := testSigner(t, alg, 1)
			ext := []byte("external")
			msg, err := Sign1(rand.Reader, s, alg, &Header{ContentType: "application/cbor"},
				&Header{KID: []byte("kid-1")}, []byte("payload"), ext)
			if err != nil {
				t.Fatal(err)
			}
			var m gocose.Sign1Message
			if err := m.UnmarshalCBOR(msg); err != nil {
				t.Fatal(err)
			}
			v, err := gocose.NewVerifier(galg, s.Public())
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(ext, v); err != nil {
				t.Fatalf("go-cose refuses our COSE_Sign1: %v", err)
			}
			if string(m.Payload) != "payload" || string(m.Headers.Unprotected[gocose.HeaderLabelKeyID].([]byte)) != "kid-1" {
				t.Fatalf("go-cose read %+v", m)
			}
			if err := m.Verify([]byte("other"), v); err == nil {
				t.Fatal("go-cose accepts other external data")
			}
		})
	}
}

func TestInteropSign1GoCOSEToOurs(t *testing.T) {
	for alg, galg := range goCOSEAlgs {
		t.Run(alg.String(), func(t *testing.T) {
			s := testSigner(t, alg, 2)
			gs, err := gocose.NewSigner(galg, s)
			if err != nil {
				t.Fatal(err)
			}
			headers := gocose.Headers{
				Protected:   gocose.ProtectedHeader{gocose.HeaderLabelAlgorithm: galg, gocose.HeaderLabelContentType: uint64(60)},
				Unprotected: gocose.UnprotectedHeader{gocose.HeaderLabelKeyID: []byte("kid-2")},
			}
			ext := []byte("aad")
			msg, err := gocose.Sign1(rand.Reader, gs, headers, []byte("from go-cose"), ext)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseSign1(msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(s.Public(), ext); err != nil {
				t.Fatalf("we refuse go-cose's COSE_Sign1: %v", err)
			}
			if string(m.Payload) != "from go-cose" || string(m.Unprotected.KID) != "kid-2" || m.Protected.ContentType != uint64(60) {
				t.Fatalf("parsed %+v", m)
			}
			if err := m.Verify(s.Public(), nil); err == nil {
				t.Fatal("verified without the external data")
			}
		})
	}
}

func TestInteropSign(t *testing.T) {
	var signers []Signer
	var verifiers []gocose.Verifier
	var gsigners []gocose.Signer
	var pubs []crypto.PublicKey
	for i, alg := range []pluton.Algorithm{pluton.ECDSAP256, pluton.Ed25519, pluton.ECDSAP384} {
		s := testSigner(t, alg, byte(10+i))
		signers = append(signers, Signer{Signer: s, Alg: alg, KID: []byte{byte(i)}})
		v, err := gocose.NewVerifier(goCOSEAlgs[alg], s.Public())
		if err != nil {
			t.Fatal(err)
		}
		verifiers = append(verifiers, v)
		gs, err := gocose.NewSigner(goCOSEAlgs[alg], s)
		if err != nil {
			t.Fatal(err)
		}
		gsigners = append(gsigners, gs)
		pubs = append(pubs, s.Public())
	}
	ext := []byte("ext")

	t.Run("ours-to-go-cose", func(t *testing.T) {
		msg, err := Sign(rand.Reader, signers, &Header{ContentType: uint64(0)}, []byte("multi"), ext)
		if err != nil {
			t.Fatal(err)
		}
		var m gocose.SignMessage
		if err := m.UnmarshalCBOR(msg); err != nil {
			t.Fatal(err)
		}
		if err := m.Verify(ext, verifiers...); err != nil {
			t.Fatalf("go-cose refuses our COSE_Sign: %v", err)
		}
	})

	t.Run("go-cose-to-ours", func(t *testing.T) {
		m := gocose.NewSignMessage()
		m.Payload = []byte("multi from go-cose")
		m.Headers.Protected[gocose.HeaderLabelContentType] = "text/plain"
		for i := range gsigners {
			sig := gocose.NewSignature()
			sig.Headers.Protected.SetAlgorithm(gsigners[i].Algorithm())
			sig.Headers.Unprotected[gocose.HeaderLabelKeyID] = []byte{byte(i)}
			m.Signatures = append(m.Signatures, sig)
		}
		if err := m.Sign(rand.Reader, ext, gsigners...); err != nil {
			t.Fatal(err)
		}
		msg, err := m.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		ours, err := ParseSign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ours.Signatures) != 3 || ours.Protected.ContentType != "text/plain" {
			t.Fatalf("parsed %+v", ours)
		}
		for i, pub := range pubs {
			if err := ours.VerifySignature(i, pub, ext); err != nil {
				t.Fatalf("signature %d: %v", i, err)
			}
			if err := ours.VerifySignature(i, pubs[(i+1)%len(pubs)], ext); err == nil {
				t.Fatalf("signature %d verifies with another key", i)
			}
		}
	})
}
