package boot_test

import (
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"log"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
)

// The OS vendor and the device maker share one tool: the maker's root key
// authorizes the vendor's key for the OS layer, the vendor signs a
// release, and the chip verifies it against its fuses and counters.
func Example() {
	rootPEM, _, err := boot.GenerateKey(rand.Reader, pluton.ECDSAP384)
	if err != nil {
		log.Fatal(err)
	}
	root, _, err := boot.ParsePrivateKeyPEM(rootPEM)
	if err != nil {
		log.Fatal(err)
	}
	osPEM, osPub, err := boot.GenerateKey(rand.Reader, pluton.Ed25519)
	if err != nil {
		log.Fatal(err)
	}
	osKey, _, err := boot.ParsePrivateKeyPEM(osPEM)
	if err != nil {
		log.Fatal(err)
	}

	// The device maker: trust policy, and the hash to fuse.
	policy, err := boot.SignPolicy(rand.Reader, root, pluton.ECDSAP384, &boot.PolicyContent{
		Version: 1,
		Product: "sku-a",
		Layers:  map[boot.Layer]boot.LayerRule{boot.OS: {Signers: []crypto.PublicKey{osPub}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fused, err := boot.RootKeyHash(root.Public(), crypto.SHA256)
	if err != nil {
		log.Fatal(err)
	}

	// The OS vendor: a release.
	image, err := boot.SignImage(rand.Reader, []crypto.Signer{osKey},
		&boot.Manifest{Layer: boot.OS, Product: "sku-a", Version: "1.4.0", SVN: 3}, []byte("kernel"))
	if err != nil {
		log.Fatal(err)
	}

	// The chip: policy counter 1, OS counter 2.
	p, err := boot.VerifyPolicy(policy, fused, "sku-a", 1)
	if err != nil {
		log.Fatal(err)
	}
	m, payload, err := p.VerifyImage(image, boot.OS, 2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("boot %s %s (svn %d): %q\n", m.Layer, m.Version, m.SVN, payload)

	// After the OS counter moved to 4, the same image is a rollback.
	_, _, err = p.VerifyImage(image, boot.OS, 4)
	fmt.Println(errors.Is(err, boot.ErrRollback), err)
	// Output:
	// boot os 1.4.0 (svn 3): "kernel"
	// true boot: rollback: os image: svn 3 is below the counter 4
}
