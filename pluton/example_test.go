package pluton_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/rootline/rootline/pluton"
)

func ExampleVerify() {
	// The key and signature of RFC 8032, §7.1, TEST 1 (an empty message).
	seed := []byte{
		0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
		0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
	}
	priv := ed25519.NewKeyFromSeed(seed)
	sig := ed25519.Sign(priv, nil)

	fmt.Println(pluton.Verify(priv.Public(), pluton.Ed25519, nil, sig))

	sig[0] ^= 1
	err := pluton.Verify(priv.Public(), pluton.Ed25519, nil, sig)
	fmt.Println(errors.Is(err, pluton.ErrInvalidSignature))
	fmt.Println(err)

	err = pluton.Verify(priv.Public(), pluton.ECDSAP256, nil, sig)
	fmt.Println(errors.Is(err, pluton.ErrInvalidKey))
	// Output:
	// <nil>
	// true
	// pluton: invalid ed25519 signature: verification failed
	// true
}

func ExampleParsePublicKey() {
	// A DER SubjectPublicKeyInfo: the Ed25519 public key of RFC 8032,
	// §7.1, TEST 1, as RFC 8410, §4 encodes it.
	der := []byte{
		0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
		0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
		0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
	}
	pub, alg, err := pluton.ParsePublicKey(der)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%v %T\n", alg, pub)

	// Anything but the one DER encoding is refused: here a trailing byte.
	_, _, err = pluton.ParsePublicKey(append(der, 0))
	fmt.Println(err)
	// Output:
	// ed25519 ed25519.PublicKey
	// pluton: invalid public key: trailing data after SubjectPublicKeyInfo
}

func ExampleECDSASignatureToP1363() {
	// ECDSA-Sig-Value { r 1, s 2 } in DER, as a crypto.Signer returns it,
	// into the 64-byte r‖s form COSE and JOSE use.
	der := []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02}
	raw, err := pluton.ECDSASignatureToP1363(pluton.ECDSAP256, der)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d bytes: r ends in %02x, s ends in %02x\n", len(raw), raw[31], raw[63])
	back, _ := pluton.ECDSASignatureFromP1363(pluton.ECDSAP256, raw)
	fmt.Printf("%x\n", back)
	// Output:
	// 64 bytes: r ends in 01, s ends in 02
	// 3006020101020102
}
