package boot

import (
	"bytes"
	"errors"
	"testing"
)

func imageSeeds(f *testing.F, fx *fixture) {
	f.Add(fx.image(f, OS, 3, fx.osP256))
	f.Add(fx.image(f, OS, 3, fx.osEd))
	f.Add(fx.image(f, Bootloader, 1, fx.blECDSA, fx.blML))
	f.Add(fx.policyBytes)
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40})
}

// FuzzParseImage: ParseImage never panics, refuses with a *VerifyError, and
// what it accepts is consistent. VerifyImage never panics either, and only
// accepts what ParseImage does.
func FuzzParseImage(f *testing.F) {
	fx := newFixture(f)
	imageSeeds(f, fx)
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := ParseImage(b)
		if err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("not a *VerifyError: %v", err)
			}
		} else {
			if im.HeaderSize+len(im.Payload) != len(b) || uint64(len(im.Payload)) != im.Manifest.PayloadSize {
				t.Fatal("inconsistent image")
			}
			if err := im.Manifest.validate(); err != nil {
				t.Fatalf("invalid manifest accepted: %v", err)
			}
		}
		for _, l := range Layers() {
			m, payload, verr := fx.policy.VerifyImage(b, l, 0)
			if verr == nil {
				if err != nil || m.Layer != l || !bytes.HasSuffix(b, payload) {
					t.Fatalf("VerifyImage accepted what ParseImage refused (%v)", err)
				}
			}
		}
	})
}

// FuzzVerifyPolicy: VerifyPolicy never panics and refuses with a
// *VerifyError.
func FuzzVerifyPolicy(f *testing.F) {
	fx := newFixture(f)
	imageSeeds(f, fx)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := VerifyPolicy(b, fx.rootHash, product, 0)
		if err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("not a *VerifyError: %v", err)
			}
			return
		}
		if p.Product != product || p.signers == nil {
			t.Fatalf("accepted %+v", p)
		}
	})
}
