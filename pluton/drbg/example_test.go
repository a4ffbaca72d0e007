package drbg_test

import (
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"

	"github.com/rootline/rootline/pluton/drbg"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// An HMAC_DRBG with SHA-256 driven through the steps of NIST ACVP test case
// hmacDRBG tgId 14 tcId 196: instantiate, reseed, generate twice with
// additional input. The expected output is that of the test vector.
func ExampleNewHMAC() {
	d, err := drbg.NewHMAC(crypto.SHA256,
		unhex("bc4367ab0005041c73a7f11f573f69bd48cf8e2a143329bfc466de490880bbbf3f26ae9cf8376814bb915b855ff18061ac967eedf8616b6bdf5fe36919c0adce2d5010d8a11553c7bc878b7f9e091ea8d0f809b64fe8104fff4fb14bff249b4711fa8f7e995059b54cced609b16abb91abe28db507bfc9bdcfa929facba09692903cea599aca8b5dad117518a5e0f9284a7dec96b72b84fb54294924ae07c7c2"),
		unhex("571866d945ec0d13ce1fce6f323aee9886917d285ca02c1a83628dfe32392245"),
		unhex("07639a0f34e827d3c29e392d26fc2f718df00942900bea5b2af2764d069f427c487c46855689a01eb7b64f4a542c57edd5e69ae421196d4ee8f198d507df8912e98e5a7eea055728d52a5bfd59d24cc3c77d2d90b22b0ba3fb308aaeb2764913b3a91da1f01f6a02764d102cbd687f729f4a4b50f23dbc062f4a9d5507ce76e6"))
	if err != nil {
		log.Fatal(err)
	}
	err = d.Reseed(
		unhex("0381b619290367886a0a539ecdf5e309129d824abee874c500819d83085f54908653dbecb1eb9499cf4bfbcbed2e1c41fbf0a2635ff350df6e6804bd9c37d366d540cce937dff9b500e23d0ec7e22d053e39bbdbc629d1533d13cbaaa0957b0d59c3ad1a345b7bb6cc698c30468ef23912a55217442d2a835b0145b395c51e8d13849cba1c40aa9151ff09f0ad2c5582c6606fbf238e91f67eca5bdeeccdb5d5"),
		unhex("11b980ca1e5b4bc77900a625ad38849d95107852959b86086764a6cb2e631846420a5b674ec59383761d790e4032ece3fb57b42c7033506c21cf8fb2dec1e5f20ee758991b80f4493ce885e608a8d8f617848d1356272d9aa477e7430ecf6cfc"))
	if err != nil {
		log.Fatal(err)
	}
	out := make([]byte, 4096/8)
	if err := d.Generate(out, unhex("a5b0de00c48d669af5b902aafa58264f9f30c136278d3eea87bbc13854baaf2d41f2afc266fb8ad4e9efd7ce9a9b5027409a786e5a26fb557344fc4e614f89cd889d454a8066ea189f1c5c22e2b12f830a2387de8738cb873d2f29501329f146")); err != nil {
		log.Fatal(err)
	}
	if err := d.Generate(out, unhex("e77be9aa93050e977845e08bba1de618ced80293637e0e79e77e5fa96203a38e9d30368cf8c7014c104f14c6a56b79b4d2ab28529565f31e08e27294521ee78d0c86f734d1b9c4f62b97f8569c175b5913b2c74990b01494650846bdbe2ce408")); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%x\n", out[:16])
	// Output: 0d3b95297863dd498d5ab7e5a739d2d8
}

// A CTR_DRBG with AES-256 and no derivation function, driven through NIST
// ACVP test case ctrDRBG tgId 15 tcId 211. Without the derivation function
// the entropy input is exactly seedlen (384 bits) and the nonce is not used.
func ExampleNewCTR() {
	d, err := drbg.NewCTR(256, false,
		unhex("f980b891f014fbc72f69dc729dd4be6ef1e614dcf7864796649fc17c591de07b1e5e4a694ce18ca88fe751bbeabbd48f"),
		nil,
		unhex("2a0529e549149907f00231642c37b9898016905a6ef66c587b3490883fad76838620896b6d44160dce84d6daa14a8048"))
	if err != nil {
		log.Fatal(err)
	}
	err = d.Reseed(
		unhex("c774b3e10ff22ccbb63ca710652d0ba6972e48f9ba2b58099b12241fdcce8534cdbb1dfb1c60af2ef2666260e27ace31"),
		unhex("1f8034ce32a92073d8b63426963964e355ba0231f31117498cbc55f0ef76c880e6f9ab3607d8debc0d98cde0f9216280"))
	if err != nil {
		log.Fatal(err)
	}
	out := make([]byte, 4096/8)
	for _, additional := range []string{
		"cd1ced8491f00e8d5e18a17425bff19715be8aaccf7c9d124bbf6271d2238323badba5bcc9af94a62bd7853d188e0c33",
		"8656789b31d8ee44e904727cbd8aaf8125c62d726344c46a8246b5e6ca319ad61b7f07089f05424cd0adad104b0eee44",
	} {
		if err := d.Generate(out, unhex(additional)); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("%x\n", out[:16])
	// Output: 84cd2a7ac397133354b10c84b6ffd5f4
}

// The cutoffs of the SP 800-90B health tests for a noise source claimed to
// deliver 8 bits of min-entropy per byte, and for one claimed at 1 bit.
func ExampleHealthTestedSource_Cutoffs() {
	for _, h := range []float64{8, 1} {
		s, err := drbg.NewHealthTestedSource(rand.Reader, h)
		if err != nil {
			log.Fatal(err)
		}
		rct, apt := s.Cutoffs()
		fmt.Printf("H = %v: repetition count %d, adaptive proportion %d of 512\n", h, rct, apt)
	}
	// Output:
	// H = 8: repetition count 6, adaptive proportion 19 of 512
	// H = 1: repetition count 41, adaptive proportion 336 of 512
}

// The Live DRBG over health-tested operating-system entropy, as the
// emulated security subsystem sets it up.
func ExampleNewLive() {
	// crypto/rand is already conditioned; claiming less than 8 bits per
	// byte makes Live draw more of it and the tests less prone to false
	// alarms.
	src, err := drbg.NewHealthTestedSource(rand.Reader, 6)
	if err != nil {
		log.Fatal(err)
	}
	l, err := drbg.NewLive(src, []byte("rootline example device"))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	key := make([]byte, 32)
	if _, err := l.Read(key); err != nil {
		// The entropy source failed: errors.Is(err, pluton.ErrEntropy).
		log.Fatal(err)
	}
	fmt.Println(len(key), "random bytes")
	// Output: 32 random bytes
}
