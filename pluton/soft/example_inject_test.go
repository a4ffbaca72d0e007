package soft_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/rootline/rootline/pluton/soft"
)

// The service asks the chip for its transport key with a fresh nonce and
// checks the statement against the DeviceID key (in production, the key
// of the chip's DeviceID certificate) before anything is wrapped for it.
func ExampleChip_TransportKey() {
	dir, _ := os.MkdirTemp("", "chip")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	chip, err := soft.Create(filepath.Join(dir, "chip.state"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer chip.Close()
	if err := chip.FuseIdentity(ctx); err != nil {
		log.Fatal(err)
	}

	nonce := make([]byte, 16)
	rand.Read(nonce)
	tk, err := chip.TransportKey(ctx, soft.TransportP256, nonce)
	if err != nil {
		log.Fatal(err)
	}
	id, _ := chip.Identity(ctx)
	vt, err := soft.VerifyTransportKey(tk.Statement, tk.Signature, id.DeviceID, nonce)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(vt.Algorithm, len(vt.Public.Bytes()), len(vt.UEID))
	// Output: ecdh-p256 65 17
}
