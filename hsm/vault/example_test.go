package vault_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/vault"
)

// A factory service keeps its issuing key in Vault Transit, logs in by
// AppRole, and reads the PKCS#11 PIN of its HSM from Vault KV.
func Example() {
	ctx := context.Background()
	k, err := vault.Open(ctx, &vault.Config{
		Address: "https://vault.factory.example:8200",
		AppRole: &vault.AppRole{RoleID: "3c7a…", SecretIDFile: "/run/secrets/vault-secret-id"},
		CACert:  "/etc/rootline/vault-ca.pem",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer k.Close()

	if _, err := k.CreateKey(ctx, "sku-a-issuing", hsm.P256); err != nil {
		fmt.Println(err)
		return
	}
	s, err := k.Signer(ctx, "sku-a-issuing")
	if err != nil {
		fmt.Println(err)
		return
	}
	digest := sha256.Sum256([]byte("to be signed"))
	sig, err := s.Sign(nil, digest[:], crypto.SHA256) // ASN.1 DER
	fmt.Println(len(sig) > 0, err)

	// The HSM's PIN, from the field "pin" of secret/factory (KV v2).
	m, err := hsm.Open(ctx, "pkcs11:token=factory?pin-source=vault:secret/data/factory%23pin",
		&hsm.Options{PINSources: map[string]hsm.PINSourceFunc{"vault": k.PINSourceFunc()}})
	if err == nil {
		m.Close()
	}
}
