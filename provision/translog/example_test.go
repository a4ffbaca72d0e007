package translog_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"

	"github.com/rootline/rootline/provision/translog"
)

// Log two certificates, then check, as anyone holding the verifier key
// would, that the second was logged. In a factory the key is an HSM key
// (hsm.Module.Signer) and the store a FileStore or the registry.
func Example() {
	ctx := context.Background()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	signer, err := translog.NewSigner("factory.example/issuance", key)
	if err != nil {
		log.Fatal(err)
	}
	l, err := translog.New(translog.NewMemStore(), signer)
	if err != nil {
		log.Fatal(err)
	}
	certA, certB := []byte("DER of certificate A"), []byte("DER of certificate B")
	l.Append(ctx, certA)
	index, err := l.Append(ctx, certB)
	if err != nil {
		log.Fatal(err)
	}
	head, err := l.TreeHead(ctx)
	if err != nil {
		log.Fatal(err)
	}
	proof, err := l.InclusionProof(ctx, index, 2)
	if err != nil {
		log.Fatal(err)
	}

	// The verifier side: the key string, the signed head, the proof.
	tree, err := translog.VerifyInclusion(signer.VerifierKey(), head, certB, index, proof)
	fmt.Println(tree.N, err)
	_, err = translog.VerifyInclusion(signer.VerifierKey(), head, certA, index, proof)
	fmt.Println(err)
	// Output:
	// 2 <nil>
	// translog: leaf not included in the tree head: invalid transparency proof
}
