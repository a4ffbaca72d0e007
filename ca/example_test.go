package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"log"

	"github.com/rootline/rootline/ca"
)

// A hierarchy and an IDevID. The keys here are in memory; in a factory
// they are crypto.Signers of package hsm, in a PKCS#11 token.
func Example() {
	ctx := context.Background()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// The offline ceremony: the root, and the product's intermediate.
	root, err := ca.NewRoot(ctx, rootKey, pkix.Name{Organization: []string{"Example"}, CommonName: "Example Device Root CA"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	inter, err := ca.NewIntermediate(ctx, root, rootKey, interKey.Public(), pkix.Name{Organization: []string{"Example"}, CommonName: "sku-a Issuing CA"}, nil)
	if err != nil {
		log.Fatal(err)
	}

	// The online CA.
	l, err := ca.NewLocal(&ca.LocalOptions{
		Root:         root,
		Organization: "Example",
		Products: []ca.Product{{
			Name:      "sku-a",
			HWType:    asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1},
			Authority: ca.Authority{Certificate: inter, Signer: interKey},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}

	// A chip's request: its key, and a CSR it signed (the proof of
	// possession).
	chipKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, chipKey)
	ueid := []byte{0x01, 0xc0, 0xff, 0xee, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

	iss, err := l.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, CSR: csr})
	if err != nil {
		log.Fatal(err)
	}
	c := iss.Certificate
	hwType, serial, _ := ca.HardwareModuleName(c)
	fmt.Println(c.Subject)
	fmt.Println(c.NotAfter.Format("20060102150405Z"))
	fmt.Println(hwType, fmt.Sprintf("%x", serial))
	fmt.Println(c.Issuer.CommonName, "→", iss.Chain[len(iss.Chain)-1].Subject.CommonName)

	// A forged request is refused.
	csr[len(csr)-3] ^= 1
	_, err = l.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, CSR: csr})
	fmt.Println(errors.Is(err, ca.ErrBadCSRSignature), errors.Is(err, ca.ErrBadRequest))
	// Output:
	// SERIALNUMBER=01c0ffee000102030405060708090a0b0c,CN=sku-a,O=Example
	// 99991231235959Z
	// 1.3.6.1.4.1.32473.1.1 01c0ffee000102030405060708090a0b0c
	// sku-a Issuing CA → Example Device Root CA
	// true true
}

// A caller that checks a CSR before asking for its certificate (here, that
// its key is the one expected) hands the CA what it checked, so that the
// proof of possession is verified once.
func ExampleCheckCSR() {
	ctx := context.Background()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, _ := ca.NewRoot(ctx, rootKey, pkix.Name{CommonName: "Example Device Root CA"}, nil)
	inter, _ := ca.NewIntermediate(ctx, root, rootKey, interKey.Public(), pkix.Name{CommonName: "sku-a Issuing CA"}, nil)
	l, err := ca.NewLocal(&ca.LocalOptions{Root: root, Products: []ca.Product{{
		Name: "sku-a", HWType: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1},
		Authority: ca.Authority{Certificate: inter, Signer: interKey},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	chipKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, chipKey)
	expected, _ := x509.MarshalPKIXPublicKey(chipKey.Public())

	csr, err := ca.CheckCSR(der) // ParseCSR's checks, the signature among them
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(csr.PublicKeyInfo()) == string(expected))
	iss, err := l.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a",
		UEID: []byte{0x01, 0xc0, 0xff, 0xee, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, CSR: der, CheckedCSR: csr})
	if err != nil {
		log.Fatal(err)
	}
	// Local verified the signature it got from the signer.
	fmt.Println(iss.SignatureChecked, iss.Certificate.CheckSignatureFrom(iss.Chain[0]) == nil)
	// Output:
	// true
	// true true
}
