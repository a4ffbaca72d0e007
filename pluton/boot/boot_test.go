package boot

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/cose"
)

func TestVerifyImage(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name    string
		layer   Layer
		signers []crypto.Signer
	}{
		{"os/p256", OS, []crypto.Signer{f.osP256}},
		{"os/p384", OS, []crypto.Signer{f.osP384}},
		{"os/ed25519", OS, []crypto.Signer{f.osEd}},
		{"os/mldsa65", OS, []crypto.Signer{f.osML}},
		{"os/hybrid", OS, []crypto.Signer{f.osML, f.osP384}},
		{"bootloader/hybrid", Bootloader, []crypto.Signer{f.blECDSA, f.blML}},
		{"app/ed25519", App, []crypto.Signer{f.app}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := f.image(t, tc.layer, 3, tc.signers...)
			for _, min := range []uint64{0, 3} {
				m, payload, err := f.policy.VerifyImage(img, tc.layer, min)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(payload, f.payload) || m.SVN != 3 || m.Version != "1.4.0" || m.Layer != tc.layer ||
					m.Product != product || m.PayloadSize != uint64(len(f.payload)) || len(m.SignerKeyIDs) != len(tc.signers) {
					t.Fatalf("VerifyImage = %+v, %q", m, payload)
				}
			}
			im, err := ParseImage(img)
			if err != nil {
				t.Fatal(err)
			}
			if im.Hybrid != (len(tc.signers) == 2) || len(im.Signatures) != len(tc.signers) || !im.DigestMatches() ||
				im.HeaderSize+len(im.Payload) != len(img) {
				t.Fatalf("ParseImage = %+v", im)
			}
		})
	}
}

func TestSignImageOptions(t *testing.T) {
	f := newFixture(t)
	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	img, err := SignImage(nil, []crypto.Signer{f.osEd}, &Manifest{Layer: OS, Product: product,
		Version: "2.0.0-rc.1+build.7", SVN: MaxSVN, DigestAlg: crypto.SHA384, Created: created}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, payload, err := f.policy.VerifyImage(img, OS, MaxSVN)
	if err != nil {
		t.Fatal(err)
	}
	if len(payload) != 0 || m.DigestAlg != crypto.SHA384 || len(m.Digest) != 48 || !m.Created.Equal(created) || m.SVN != MaxSVN {
		t.Fatalf("manifest %+v", m)
	}
	for _, tc := range []struct {
		name    string
		m       Manifest
		signers []crypto.Signer
	}{
		{"no signer", Manifest{Layer: OS, Product: product, Version: "1.0.0"}, nil},
		{"three signers", Manifest{Layer: OS, Product: product, Version: "1.0.0"}, []crypto.Signer{f.osP256, f.osML, f.osEd}},
		{"two ECDSA", Manifest{Layer: OS, Product: product, Version: "1.0.0"}, []crypto.Signer{f.osP256, f.osP384}},
		{"ed25519 and ML-DSA", Manifest{Layer: OS, Product: product, Version: "1.0.0"}, []crypto.Signer{f.osEd, f.osML}},
		{"same key twice", Manifest{Layer: OS, Product: product, Version: "1.0.0"}, []crypto.Signer{f.osML, f.osML}},
		{"bad layer", Manifest{Layer: "kernel", Product: product, Version: "1.0.0"}, []crypto.Signer{f.osEd}},
		{"bad version", Manifest{Layer: OS, Product: product, Version: "1.0"}, []crypto.Signer{f.osEd}},
		{"leading zero", Manifest{Layer: OS, Product: product, Version: "01.0.0"}, []crypto.Signer{f.osEd}},
		{"long version", Manifest{Layer: OS, Product: product, Version: "1.0.0-" + strings.Repeat("a", 64)}, []crypto.Signer{f.osEd}},
		{"bad product", Manifest{Layer: OS, Product: "sku a", Version: "1.0.0"}, []crypto.Signer{f.osEd}},
		{"long product", Manifest{Layer: OS, Product: strings.Repeat("a", 65), Version: "1.0.0"}, []crypto.Signer{f.osEd}},
		{"svn too large", Manifest{Layer: OS, Product: product, Version: "1.0.0", SVN: MaxSVN + 1}, []crypto.Signer{f.osEd}},
		{"digest MD5", Manifest{Layer: OS, Product: product, Version: "1.0.0", DigestAlg: crypto.MD5}, []crypto.Signer{f.osEd}},
		{"fractional time", Manifest{Layer: OS, Product: product, Version: "1.0.0", Created: created.Add(time.Millisecond)}, []crypto.Signer{f.osEd}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SignImage(nil, tc.signers, &tc.m, f.payload); err == nil {
				t.Fatal("SignImage accepted it")
			}
		})
	}
}

// signRaw builds an image around any manifest bytes, signed properly, to
// reach the checks that come after the signature.
func signRaw(t *testing.T, manifest, payload []byte, signers ...crypto.Signer) []byte {
	t.Helper()
	var head []byte
	var err error
	if len(signers) == 1 {
		alg, _ := pluton.AlgorithmOf(signers[0].Public())
		head, err = cose.Sign1(nil, signers[0], alg, &cose.Header{ContentType: contentTypeManifest, KID: keyID(t, signers[0])}, nil, manifest, nil)
	} else {
		var cs []cose.Signer
		for _, s := range signers {
			alg, _ := pluton.AlgorithmOf(s.Public())
			cs = append(cs, cose.Signer{Signer: s, Alg: alg, KID: keyID(t, s)})
		}
		head, err = cose.Sign(nil, cs, &cose.Header{ContentType: contentTypeManifest}, manifest, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return append(head, payload...)
}

// wire returns the manifest of a valid OS image by the osEd key, as a
// mutable wire struct.
func (f *fixture) wire(t *testing.T) manifestWire {
	d := sha256.Sum256(f.payload)
	return manifestWire{Format: 1, Layer: "os", Product: product, Version: "1.4.0", SVN: 3, DigestAlg: hashSHA256,
		Digest: d[:], PayloadSize: uint64(len(f.payload)), Signers: [][]byte{keyID(t, f.osEd)}}
}

func mustCBOR(t *testing.T, v any) []byte {
	t.Helper()
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyImageRefuses(t *testing.T) {
	f := newFixture(t)
	good := f.image(t, OS, 3, f.osEd)
	goodML := f.image(t, OS, 3, f.osML)
	hybrid := f.image(t, Bootloader, 1, f.blECDSA, f.blML)
	im, err := ParseImage(good)
	if err != nil {
		t.Fatal(err)
	}
	hs := im.HeaderSize

	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	withWire := func(change func(*manifestWire)) []byte {
		w := f.wire(t)
		change(&w)
		return signRaw(t, mustCBOR(t, &w), f.payload, f.osEd)
	}
	canonical := mustCBOR(t, ptr(f.wire(t)))

	for _, tc := range []struct {
		name  string
		image []byte
		layer Layer
		min   uint64
		want  error
	}{
		{"tampered payload", flip(good, len(good)-1), OS, 0, ErrDigestMismatch},
		{"tampered manifest", flip(good, bytes.Index(good, []byte("1.4.0"))), OS, 0, ErrBadSignature},
		{"tampered signature", flip(good, hs-1), OS, 0, ErrBadSignature},
		{"tampered ML-DSA signature", flip(goodML, bytes.Index(goodML, f.payload)-100), OS, 0, ErrBadSignature},
		{"wrong signer", f.image(t, OS, 3, f.stranger), OS, 0, ErrUnknownSigner},
		{"signer of another layer", f.image(t, OS, 3, f.app), OS, 0, ErrUnknownSigner},
		{"revoked signer", f.image(t, OS, 3, f.revoked), OS, 0, ErrRevokedSigner},
		{"rollback", good, OS, 4, ErrRollback},
		{"truncated payload", good[:len(good)-1], OS, 0, ErrTruncated},
		{"truncated header", good[:hs-1], OS, 0, ErrTruncated},
		{"no payload", good[:hs], OS, 0, ErrTruncated},
		{"empty", nil, OS, 0, ErrTruncated},
		{"trailing data", append(bytes.Clone(good), 0), OS, 0, ErrMalformed},
		{"manifest for another layer", f.image(t, App, 3, f.osEd), OS, 0, ErrWrongLayer},
		{"verified as another layer", good, App, 0, ErrUnknownSigner},
		{"manifest for another product", withWire(func(w *manifestWire) { w.Product = "sku-b" }), OS, 0, ErrWrongProduct},
		{"oversized product", withWire(func(w *manifestWire) { w.Product = strings.Repeat("p", 65) }), OS, 0, ErrTooLarge},
		{"oversized version", withWire(func(w *manifestWire) { w.Version = "1.0.0-" + strings.Repeat("v", 60) }), OS, 0, ErrTooLarge},
		{"oversized svn", withWire(func(w *manifestWire) { w.SVN = MaxSVN + 1 }), OS, 0, ErrTooLarge},
		{"oversized payload size", withWire(func(w *manifestWire) { w.PayloadSize = MaxPayloadSize + 1 }), OS, 0, ErrTooLarge},
		{"oversized manifest", signRaw(t, append(canonical, make([]byte, MaxManifestSize)...), f.payload, f.osEd), OS, 0, ErrTooLarge},
		{"invalid version", withWire(func(w *manifestWire) { w.Version = "v1.4" }), OS, 0, ErrMalformed},
		{"unknown format", withWire(func(w *manifestWire) { w.Format = 2 }), OS, 0, ErrMalformed},
		{"unknown digest", withWire(func(w *manifestWire) { w.DigestAlg = -44 }), OS, 0, ErrMalformed},
		{"short digest", withWire(func(w *manifestWire) { w.Digest = w.Digest[:31] }), OS, 0, ErrMalformed},
		{"manifest names another signer", withWire(func(w *manifestWire) { w.Signers = [][]byte{keyID(t, f.osP256)} }), OS, 0, ErrUnknownSigner},
		{"manifest names two signers", withWire(func(w *manifestWire) { w.Signers = append(w.Signers, keyID(t, f.osP256)) }), OS, 0, ErrUnknownSigner},
		{"manifest not canonical", signRaw(t, append([]byte{0xb9, 0x00, 0x09}, canonical[1:]...), f.payload, f.osEd), OS, 0, ErrMalformed},
		{"manifest with unknown key", signRaw(t, mustCBOR(t, map[int]any{1: 1, 99: 0}), f.payload, f.osEd), OS, 0, ErrMalformed},
		{"manifest missing a field", signRaw(t, mustCBOR(t, map[int]any{1: 1, 2: "os"}), f.payload, f.osEd), OS, 0, ErrMalformed},
		{"manifest not a map", signRaw(t, mustCBOR(t, []int{1}), f.payload, f.osEd), OS, 0, ErrMalformed},
		{"manifest with a tag", signRaw(t, mustCBOR(t, cbor.Tag{Number: 24, Content: canonical}), f.payload, f.osEd), OS, 0, ErrMalformed},
		{"malformed COSE", []byte("\xd2\x84\xff\xff\xff\xff"), OS, 0, ErrMalformed},
		{"not COSE", []byte("MZ\x90\x00"), OS, 0, ErrMalformed},
		{"policy as image", f.policyBytes, OS, 0, ErrMalformed},
		{"hybrid layer, ECDSA only", f.image(t, Bootloader, 1, f.blECDSA), Bootloader, 0, ErrHybridRequired},
		{"hybrid layer, ML-DSA only", f.image(t, Bootloader, 1, f.blML), Bootloader, 0, ErrHybridRequired},
		{"hybrid layer, COSE_Sign with ML-DSA only", signRaw(t, canonicalFor(t, f, Bootloader, f.blML), f.payload, f.blML, f.blML), Bootloader, 0, ErrHybridRequired},
		{"two ECDSA signatures", signRaw(t, canonical, f.payload, f.osP256, f.osP384), OS, 0, ErrHybridRequired},
		{"hybrid with an unauthorized key", f.image(t, Bootloader, 1, f.blECDSA, f.osML), Bootloader, 0, ErrUnknownSigner},
		{"hybrid rollback", hybrid, Bootloader, 2, ErrRollback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.policy.VerifyImage(tc.image, tc.layer, tc.min)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyImage = %v, want %v", err, tc.want)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Layer != tc.layer || ve.Err != tc.want {
				t.Fatalf("not a *VerifyError for %s: %#v", tc.layer, err)
			}
			for _, other := range allSentinels {
				if other != tc.want && errors.Is(err, other) {
					t.Fatalf("%v is also %v", err, other)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

var allSentinels = []error{ErrBadSignature, ErrUnknownSigner, ErrRevokedSigner, ErrRollback, ErrWrongLayer,
	ErrWrongProduct, ErrDigestMismatch, ErrTruncated, ErrMalformed, ErrTooLarge, ErrHybridRequired, ErrRootKeyMismatch}

func canonicalFor(t *testing.T, f *fixture, l Layer, signers ...crypto.Signer) []byte {
	w := f.wire(t)
	w.Layer = string(l)
	w.Signers = nil
	for _, s := range signers {
		w.Signers = append(w.Signers, keyID(t, s))
	}
	return mustCBOR(t, &w)
}

// Every proper prefix of an image is truncated; nothing panics.
func TestTruncatedImages(t *testing.T) {
	f := newFixture(t)
	for _, img := range [][]byte{f.image(t, OS, 3, f.osP256), f.image(t, Bootloader, 3, f.blECDSA, f.blML)} {
		layer := OS
		if im, _ := ParseImage(img); im.Hybrid {
			layer = Bootloader
		}
		for n := range len(img) {
			if n > 200 && n < len(img)-200 {
				continue // the first and last 200 lengths
			}
			if _, _, err := f.policy.VerifyImage(img[:n], layer, 0); !errors.Is(err, ErrTruncated) {
				t.Fatalf("VerifyImage(%d of %d bytes) = %v", n, len(img), err)
			}
			if _, err := ParseImage(img[:n]); !errors.Is(err, ErrTruncated) {
				t.Fatalf("ParseImage(%d of %d bytes) = %v", n, len(img), err)
			}
		}
	}
}

func TestVerifyPolicy(t *testing.T) {
	f := newFixture(t)
	p := f.policy
	if p.Version != 5 || p.Product != product || p.RootAlgorithm != pluton.ECDSAP384 || len(p.Layers) != 3 ||
		!p.Layers[Bootloader].Hybrid || len(p.Layers[OS].Signers) != 5 || len(p.Revoked) != 1 {
		t.Fatalf("policy %+v", p)
	}
	if !p.Authorized(OS, keyID(t, f.osML)) || p.Authorized(OS, keyID(t, f.revoked)) || p.Authorized(App, keyID(t, f.osML)) {
		t.Fatal("Authorized")
	}
	// A SHA-384 fuse works too.
	h384, err := RootKeyHash(f.root.Public(), crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyPolicy(f.policyBytes, h384, product, 0); err != nil {
		t.Fatal(err)
	}

	// A policy signed by another root, carrying that root's key.
	fake, err := SignPolicy(nil, f.strangerRoot, pluton.ECDSAP384, f.content)
	if err != nil {
		t.Fatal(err)
	}
	// A policy signed by another root, claiming the real root's key.
	forged := forgePolicy(t, f)
	noHybridML := *f.content
	noHybridML.Layers = map[Layer]LayerRule{Bootloader: {Signers: []crypto.PublicKey{f.blECDSA.Public()}, Hybrid: true}}
	if _, err := SignPolicy(nil, f.root, pluton.ECDSAP384, &noHybridML); err == nil {
		t.Fatal("SignPolicy accepted a hybrid layer without an ML-DSA key")
	}
	if _, err := SignPolicy(nil, f.root, pluton.ECDSAP256, f.content); err == nil {
		t.Fatal("SignPolicy accepted the wrong root algorithm")
	}
	otherHash := bytes.Clone(f.rootHash)
	otherHash[0] ^= 1
	img := f.image(t, OS, 3, f.osEd)

	for _, tc := range []struct {
		name    string
		policy  []byte
		hash    []byte
		product string
		min     uint64
		want    error
	}{
		{"root key hash mismatch", f.policyBytes, otherHash, product, 0, ErrRootKeyMismatch},
		{"hash of wrong length", f.policyBytes, f.rootHash[:20], product, 0, ErrRootKeyMismatch},
		{"another root", fake, f.rootHash, product, 0, ErrRootKeyMismatch},
		{"forged signature", forged, f.rootHash, product, 0, ErrBadSignature},
		{"another product", f.policyBytes, f.rootHash, "sku-b", 0, ErrWrongProduct},
		{"version below minimum", f.policyBytes, f.rootHash, product, 6, ErrRollback},
		{"truncated", f.policyBytes[:len(f.policyBytes)-1], f.rootHash, product, 0, ErrTruncated},
		{"trailing data", append(bytes.Clone(f.policyBytes), 0), f.rootHash, product, 0, ErrMalformed},
		{"image as policy", img, f.rootHash, product, 0, ErrMalformed},
		{"too large", make([]byte, MaxPolicySize+1), f.rootHash, product, 0, ErrTooLarge},
		{"garbage", []byte{0xd2, 0x84, 0x40}, f.rootHash, product, 0, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyPolicy(tc.policy, tc.hash, tc.product, tc.min)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyPolicy = %v, want %v", err, tc.want)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Layer != "" {
				t.Fatalf("not a policy *VerifyError: %#v", err)
			}
		})
	}
	// An unverified policy trusts nothing.
	if _, _, err := new(Policy).VerifyImage(img, OS, 0); err == nil {
		t.Fatal("zero Policy accepted an image")
	}
}

// forgePolicy signs the fixture's policy content with another key while
// naming the real root key.
func forgePolicy(t *testing.T, f *fixture) []byte {
	content, err := f.content.encode()
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := pluton.MarshalPublicKey(f.root.Public())
	b, err := cose.Sign1(nil, f.strangerRoot, pluton.ECDSAP384, &cose.Header{
		ContentType: contentTypePolicy,
		Extra:       map[int64][]byte{RootKeyLabel: mustCBOR(t, spki)},
	}, nil, content, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyErrorMessage(t *testing.T) {
	f := newFixture(t)
	_, _, err := f.policy.VerifyImage(f.image(t, OS, 2, f.osEd), OS, 3)
	if got, want := err.Error(), "boot: rollback: os image: svn 2 is below the counter 3"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	_, _, err = f.policy.VerifyImage(f.image(t, OS, 2, f.osEd)[:10], OS, 3)
	if !strings.HasPrefix(err.Error(), "boot: truncated: os image: COSE_Sign1: cose: truncated message") {
		t.Fatalf("Error() = %q", err)
	}
}
