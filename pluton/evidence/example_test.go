package evidence_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
)

// A device signs evidence with its Alias key; the verifier checks it
// against the nonce it handed out and the device's DeviceID certificate.
func Example() {
	// The device's keys and DICE chain. Here both are made on the spot; on
	// a device they come from pluton/dice.
	deviceID := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	alias := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	deviceIDCert := certificate(deviceID.Public(), deviceID, nil, "DeviceID", true)
	aliasCert := certificate(alias.Public(), deviceID, deviceIDCert, "Alias", false)

	// The verifier's challenge.
	nonce := bytes.Repeat([]byte{0xa5}, 16)

	// On the device.
	digest := sha256.Sum256([]byte("os image"))
	signer := sha256.Sum256([]byte("os signing key"))
	claims := &evidence.Claims{
		Nonce:     nonce,
		UEID:      append([]byte{0x01}, bytes.Repeat([]byte{0x42}, 16)...),
		Product:   "thermostat",
		Lifecycle: pluton.Locked,
		Counters:  map[string]uint64{"svn/os": 3},
		Layers: []evidence.Measurement{{
			Layer: "os", Version: "1.2.0", SVN: 3,
			Digest: digest[:], DigestAlg: crypto.SHA256, SignerID: signer[:],
		}},
	}
	token, err := evidence.Sign(rand.Reader, alias, pluton.Ed25519, claims, [][]byte{aliasCert.Raw, deviceIDCert.Raw})
	if err != nil {
		panic(err)
	}

	// In the verifier.
	roots := x509.NewCertPool()
	roots.AddCert(deviceIDCert)
	t, err := evidence.Verify(token, &evidence.VerifyOptions{Nonce: nonce, Roots: roots})
	if err != nil {
		panic(err)
	}
	fmt.Printf("signed by %q (%v), lifecycle %v\n", t.Chain[0].Subject.CommonName, t.Algorithm, t.Claims.Lifecycle)
	for _, m := range t.Claims.Layers {
		fmt.Printf("layer %s %s, svn %d\n", m.Layer, m.Version, m.SVN)
	}

	// A replayed token answers another challenge.
	_, err = evidence.Verify(token, &evidence.VerifyOptions{Nonce: bytes.Repeat([]byte{0x5a}, 16), Roots: roots})
	fmt.Println(errors.Is(err, evidence.ErrNonce))
	// Output:
	// signed by "Alias" (ed25519), lifecycle locked
	// layer os 1.2.0, svn 3
	// true
}

// certificate makes a certificate of pub, signed by signer as issuer (or
// self-signed when issuer is nil), with DICE's fixed validity.
func certificate(pub crypto.PublicKey, signer crypto.Signer, issuer *x509.Certificate, name string, ca bool) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Date(2018, 3, 22, 23, 59, 59, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		BasicConstraintsValid: true,
		IsCA:                  ca,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	}
	if issuer == nil {
		issuer = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}
