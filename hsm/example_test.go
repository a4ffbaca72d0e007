package hsm_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"log"

	"github.com/rootline/rootline/hsm"
)

func ExampleParseURI() {
	u, err := hsm.ParseURI("pkcs11:token=factory;object=sku-a-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/factory.pin")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.Token, u.Object, u.PINSource)

	// A PIN is never accepted in a URI.
	_, err = hsm.ParseURI("pkcs11:token=factory?pin-value=1234")
	fmt.Println(err)
	// Output:
	// factory sku-a-ca file:/run/factory.pin
	// hsm: invalid PKCS#11 URI: pin-value is refused: a PIN never goes in a URI; use pin-source
}

// Create a key in a token and sign with it. The URI returned by CreateKey
// names the key for later runs (id= is its random CKA_ID).
func Example() {
	ctx := context.Background()
	m, err := hsm.Open(ctx, "pkcs11:token=factory?pin-source=file:/run/factory.pin", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	_, uri, err := m.CreateKey(ctx, &hsm.CreateKeyRequest{Label: "sku-a-ca", Algorithm: hsm.P256})
	if err != nil {
		log.Fatal(err)
	}
	s, err := m.Signer(ctx, uri.String())
	if err != nil {
		log.Fatal(err)
	}
	digest := sha256.Sum256([]byte("to be signed"))
	sig, err := s.Sign(nil, digest[:], crypto.SHA256) // ASN.1 DER
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(uri, len(sig) > 0)
}

// Inject a device key into one chip: the service has checked the chip's
// transport key statement (pluton/soft.VerifyTransportKey) against its
// DeviceID certificate; the HSM generates the key and wraps it for that
// chip; once the chip confirms, the HSM's copy is destroyed.
func ExampleModule_InjectKey() {
	ctx := context.Background()
	m, err := hsm.Open(ctx, "pkcs11:token=factory?pin-source=file:/run/factory.pin", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	var transport, ueid []byte // from the chip's verified statement
	w, err := m.InjectKey(ctx, &hsm.InjectKeyRequest{
		Label:     "dev-0123",
		Name:      "idevid",
		Algorithm: hsm.P256,
		Chip:      hsm.ChipTransport{Algorithm: hsm.P256, Public: transport, UEID: ueid},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Send w (as the chip's wire blob) to the chip; it installs the key and
	// the CA certifies w.Public. When the chip has confirmed:
	if err := m.DestroyKey(ctx, w.URI.String()); err != nil {
		log.Fatal(err)
	}
}
