package drbg

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/rootline/rootline/pluton"
)

// Known-answer self-tests (SP 800-90A 11.3.1: instantiate, reseed and
// generate are tested on known inputs before the mechanism is used). Each
// runs once per process, before the first instantiation; if it fails the
// mechanism refuses to instantiate from then on.
//
// The vectors are ACVP test cases (testdata/SOURCE.md): CTR_DRBG AES-256
// with derivation function, tgId 11 tcId 151; HMAC_DRBG SHA2-256, tgId 14
// tcId 196. Each instantiates, reseeds with additional input, generates
// 4096 bits twice with additional input, and compares the first 256 bits of
// the second output.
var (
	ctrSelfTest  = sync.OnceValue(func() error { return castCTR(ctrKAT.want) })
	hmacSelfTest = sync.OnceValue(func() error { return castHMAC(hmacKAT.want) })
)

type kat struct {
	entropy, nonce, perso, reseedEntropy, reseedAdditional, add1, add2, want string
}

var ctrKAT = kat{
	entropy:          "04d457c2997c8f9b7775f55c2b1b6530b21b2c4c5919fe1fff20ea43ba7dbfa84a01ab260404762748f8c24fee66c056",
	nonce:            "fbce2326f58bae0c2d6f2ca1792f1529c83d866db41f064ab2edd690c0d4525afbfb9fa851cf669f6c580242ef8ad329",
	perso:            "68493388c993dca11545cc47eb212337278cf74be2b3a6e22d5982709228062918ffa3e33ca4d7e553731482703f8193",
	reseedEntropy:    "768f65075823196af854410358059d008838db8324d3fc59cdef4cfdadfd90e39327d6cce9fcb700d319e9633891a40a",
	reseedAdditional: "75e1ed623fa3471c24663233729d5c6df3c69729e343053ba18fced12ee9747f244ff51667dec4b4be81db2205a71186",
	add1:             "7d8c49692df1e5b70c7733be2a19ce234e3e502a8912c50e4cf1dc57b9faeafe1d949e981cc90581b8a5607c92d8feca",
	add2:             "9cbdc0ae321d2bb0fb5bc70fa4d79439c4e3c3eb7202ee73ca5e6984caf97bc7308e1b4eb6848b0ded1e28f2774086b2",
	want:             "aeba3f1f41e0d68740bf1db076261501020fe735f228b627c682adc7ac19f775",
}

var hmacKAT = kat{
	entropy:          "bc4367ab0005041c73a7f11f573f69bd48cf8e2a143329bfc466de490880bbbf3f26ae9cf8376814bb915b855ff18061ac967eedf8616b6bdf5fe36919c0adce2d5010d8a11553c7bc878b7f9e091ea8d0f809b64fe8104fff4fb14bff249b4711fa8f7e995059b54cced609b16abb91abe28db507bfc9bdcfa929facba09692903cea599aca8b5dad117518a5e0f9284a7dec96b72b84fb54294924ae07c7c2",
	nonce:            "571866d945ec0d13ce1fce6f323aee9886917d285ca02c1a83628dfe32392245",
	perso:            "07639a0f34e827d3c29e392d26fc2f718df00942900bea5b2af2764d069f427c487c46855689a01eb7b64f4a542c57edd5e69ae421196d4ee8f198d507df8912e98e5a7eea055728d52a5bfd59d24cc3c77d2d90b22b0ba3fb308aaeb2764913b3a91da1f01f6a02764d102cbd687f729f4a4b50f23dbc062f4a9d5507ce76e6",
	reseedEntropy:    "0381b619290367886a0a539ecdf5e309129d824abee874c500819d83085f54908653dbecb1eb9499cf4bfbcbed2e1c41fbf0a2635ff350df6e6804bd9c37d366d540cce937dff9b500e23d0ec7e22d053e39bbdbc629d1533d13cbaaa0957b0d59c3ad1a345b7bb6cc698c30468ef23912a55217442d2a835b0145b395c51e8d13849cba1c40aa9151ff09f0ad2c5582c6606fbf238e91f67eca5bdeeccdb5d5",
	reseedAdditional: "11b980ca1e5b4bc77900a625ad38849d95107852959b86086764a6cb2e631846420a5b674ec59383761d790e4032ece3fb57b42c7033506c21cf8fb2dec1e5f20ee758991b80f4493ce885e608a8d8f617848d1356272d9aa477e7430ecf6cfc",
	add1:             "a5b0de00c48d669af5b902aafa58264f9f30c136278d3eea87bbc13854baaf2d41f2afc266fb8ad4e9efd7ce9a9b5027409a786e5a26fb557344fc4e614f89cd889d454a8066ea189f1c5c22e2b12f830a2387de8738cb873d2f29501329f146",
	add2:             "e77be9aa93050e977845e08bba1de618ced80293637e0e79e77e5fa96203a38e9d30368cf8c7014c104f14c6a56b79b4d2ab28529565f31e08e27294521ee78d0c86f734d1b9c4f62b97f8569c175b5913b2c74990b01494650846bdbe2ce408",
	want:             "0d3b95297863dd498d5ab7e5a739d2d896c44e79dda2b1137fe9ee771b42b650",
}

// drbg is what the self-tests (and the ACVP tests) need of a mechanism.
type drbg interface {
	Reseed(entropy, additional []byte) error
	Generate(out, additional []byte) error
}

// castCTR runs the CTR_DRBG self-test, expecting want (hex); a test passes a
// wrong want to make it fail.
func castCTR(want string) error {
	k := ctrKAT.decode()
	d, err := newCTR(256, true, false, k[0], k[1], k[2])
	if err != nil {
		return selfTestError("CTR_DRBG", err)
	}
	defer d.Uninstantiate()
	return runKAT("CTR_DRBG", d, k, want)
}

// castHMAC runs the HMAC_DRBG self-test, expecting want (hex).
func castHMAC(want string) error {
	k := hmacKAT.decode()
	d, err := newHMAC(crypto.SHA256, k[0], k[1], k[2])
	if err != nil {
		return selfTestError("HMAC_DRBG", err)
	}
	defer d.Uninstantiate()
	return runKAT("HMAC_DRBG", d, k, want)
}

func (k *kat) decode() [7][]byte {
	var out [7][]byte
	for i, s := range []string{k.entropy, k.nonce, k.perso, k.reseedEntropy, k.reseedAdditional, k.add1, k.add2} {
		b, err := hex.DecodeString(s)
		if err != nil {
			panic("drbg: internal error: bad self-test vector")
		}
		out[i] = b
	}
	return out
}

func runKAT(mech string, d drbg, k [7][]byte, want string) error {
	if err := d.Reseed(k[3], k[4]); err != nil {
		return selfTestError(mech, err)
	}
	out := make([]byte, 4096/8)
	if err := d.Generate(out, k[5]); err != nil {
		return selfTestError(mech, err)
	}
	if err := d.Generate(out, k[6]); err != nil {
		return selfTestError(mech, err)
	}
	w, err := hex.DecodeString(want)
	if err != nil || !bytes.Equal(out[:len(w)], w) {
		return selfTestError(mech, fmt.Errorf("known answer mismatch"))
	}
	return nil
}

func selfTestError(mech string, err error) error {
	return fmt.Errorf("drbg: %s known-answer self-test failed: %w: %w", mech, pluton.ErrSelfTest, err)
}
