package dice_test

import (
	"crypto"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/dice"
)

// Parsing the DiceTcbInfo of an NVIDIA Blackwell GPU's DICE certificate
// (the encoding NVIDIA's attestation SDK tests with).
func ExampleParseTcbInfo() {
	der, _ := hex.DecodeString("3081b180064e5649444941810d4742313030204130312047535082023031830101840100850100a67e30" +
		"3d06096086480165030402020430d090cab1b6e6ffddca83d1781e25b3f040fa1f3c7608230cb5f41b1c" +
		"1b99f5f748349e59d0ef8eb830c9bc79ccf77502303d0609608648016503040202043000000000000000" +
		"000000000000000000000000000000000000000000000000000000000000000000000000000000000087" +
		"0500800000018801c0890100")
	tcb, err := dice.ParseTcbInfo(der)
	if err != nil {
		panic(err)
	}
	fmt.Printf("vendor %s, model %s, version %s\n", tcb.Vendor, tcb.Model, tcb.Version)
	fmt.Printf("svn %d, layer %d, index %d\n", tcb.SVN, tcb.Layer, tcb.Index)
	for _, f := range tcb.FWIDs {
		fmt.Printf("fwid %v %x…\n", f.Hash, f.Digest[:8])
	}
	fmt.Printf("flags %v\n", tcb.Flags)
	fmt.Printf("vendorInfo %x, type %x\n", tcb.VendorInfo, tcb.Type)
	// Output:
	// vendor NVIDIA, model GB100 A01 GSP, version 01
	// svn 1, layer 0, index 0
	// fwid SHA-384 d090cab1b6e6ffdd…
	// fwid SHA-384 0000000000000000…
	// flags notConfigured|fixedWidth
	// vendorInfo c0, type 00
}

// A DICE chain: the self-signed DeviceID certificate, then the bootloader's
// Alias certificate with the bootloader's measurements, which a verifier
// reads back.
func ExampleAliasCertificate() {
	uds := make([]byte, dice.CDISize) // an unprovisioned chip
	deviceID, _ := dice.KeyPair(uds, pluton.Ed25519)
	rootDER, err := dice.DeviceIDCertificate(deviceID, &dice.CertificateTemplate{IsCA: true, MaxPathLen: -1})
	if err != nil {
		panic(err)
	}
	root, _ := x509.ParseCertificate(rootDER)

	// The boot ROM measures the bootloader and derives its CDI and key.
	image := []byte("the bootloader image")
	in := &dice.InputValues{CodeHash: sha512.Sum512(image), Mode: dice.ModeNormal}
	attest, seal, _ := dice.Derive(uds, uds, in)
	clear(seal)
	alias, _ := dice.KeyPair(attest, pluton.Ed25519)
	clear(attest)

	der, err := dice.AliasCertificate(deviceID, root, &dice.CertificateTemplate{
		Subject: alias.Public(),
		Tcb: &dice.TcbInfo{
			Vendor: "rootline", Model: "emulated-mcu", Version: "1.0.0",
			SVN: 1, HasSVN: true, Layer: 0, HasLayer: true,
			FWIDs: []dice.FWID{{Hash: crypto.SHA512, Digest: in.CodeHash[:]}},
		},
		IsCA: true, MaxPathLen: 1,
	})
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	fmt.Println("issuer ", cert.Issuer)
	fmt.Println("subject", cert.Subject)
	tcb, err := dice.TcbInfoFromCertificate(cert)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s %s, layer %d, svn %d\n", tcb.Vendor, tcb.Model, tcb.Version, tcb.Layer, tcb.SVN)
	// Output:
	// issuer  SERIALNUMBER=7a06eee41b789f4863d86b8778b1a201a6fedd56
	// subject SERIALNUMBER=117be1b01606ab11c521c386025e8b866b0c3db2
	// rootline emulated-mcu 1.0.0, layer 0, svn 1
}
