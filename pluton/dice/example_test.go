package dice_test

import (
	"fmt"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/dice"
)

// The first layer, from an unprovisioned (all-zero) UDS with all-zero
// inputs: open-dice's ZeroInput known answer.
func ExampleDerive() {
	uds := make([]byte, dice.CDISize)
	attest, seal, err := dice.Derive(uds, uds, &dice.InputValues{Mode: dice.ModeNotInitialized})
	if err != nil {
		panic(err)
	}
	defer clear(attest)
	defer clear(seal)
	fmt.Printf("CDI_Attest %x\n", attest)
	fmt.Printf("CDI_Seal   %x\n", seal)
	// Output:
	// CDI_Attest fbfc679771342eeacb908659ce49d6b63b4535da2c51433d7f04efa6319e0c19
	// CDI_Seal   8ff8b22571325e7defefbfea8df1c9f34bf4d9ee03b75b788219c6b1ef49bdc5
}

// The DeviceID key is the key pair of the UDS; each layer's Alias key that
// of the next CDI_Attest. Their IDs are the issuer and subject names of the
// certificate open-dice makes in its ZeroInput known answer.
func ExampleKeyPair() {
	uds := make([]byte, dice.CDISize)
	deviceID, err := dice.KeyPair(uds, pluton.Ed25519)
	if err != nil {
		panic(err)
	}
	attest, seal, err := dice.Derive(uds, uds, &dice.InputValues{})
	if err != nil {
		panic(err)
	}
	clear(seal)
	alias, err := dice.KeyPair(attest, pluton.Ed25519)
	clear(attest)
	if err != nil {
		panic(err)
	}

	issuer, _ := dice.PublicKeyID(deviceID.Public())
	subject, _ := dice.PublicKeyID(alias.Public())
	fmt.Printf("issuer  SERIALNUMBER=%x\n", issuer)
	fmt.Printf("subject SERIALNUMBER=%x\n", subject)
	// Output:
	// issuer  SERIALNUMBER=7a06eee41b789f4863d86b8778b1a201a6fedd56
	// subject SERIALNUMBER=67c22a8859062b986818e8e72b0bcd9f59349c89
}

// The ID of a P-256 key is computed over its raw x || y coordinates.
func ExampleDeriveID() {
	uds := make([]byte, dice.CDISize)
	k, err := dice.KeyPair(uds, pluton.ECDSAP256)
	if err != nil {
		panic(err)
	}
	pub, err := dice.PublicKeyBytes(k.Public())
	if err != nil {
		panic(err)
	}
	id, err := dice.DeriveID(pub)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d-byte key, ID %x\n", len(pub), id)
	// Output:
	// 64-byte key, ID 672d0053ae4513fbb3bac8209daeb3e8897681cd
}
