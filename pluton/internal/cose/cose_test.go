package cose

import (
	"bytes"
	"crypto"
	"errors"
	mrand "math/rand/v2"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/keys"
)

// testSigner returns a deterministic key of alg.
func testSigner(t testing.TB, alg pluton.Algorithm, seed byte) crypto.Signer {
	t.Helper()
	_, s, err := keys.Generate(alg, mrand.NewChaCha8([32]byte{seed, byte(alg)}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAlgorithmIDs(t *testing.T) {
	want := map[pluton.Algorithm]int64{pluton.ECDSAP256: -7, pluton.ECDSAP384: -35, pluton.Ed25519: -8, pluton.MLDSA65: -49}
	for alg, id := range want {
		got, err := AlgorithmID(alg)
		if err != nil || got != id {
			t.Errorf("AlgorithmID(%v) = %d, %v; want %d", alg, got, err, id)
		}
		back, err := AlgorithmFromID(id)
		if err != nil || back != alg {
			t.Errorf("AlgorithmFromID(%d) = %v, %v", id, back, err)
		}
	}
	for _, id := range []int64{0, -37, -36, -257, -48, -50, 1} {
		if _, err := AlgorithmFromID(id); !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
			t.Errorf("AlgorithmFromID(%d) = %v", id, err)
		}
	}
	if _, err := AlgorithmID(pluton.AlgorithmUnknown); !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
		t.Errorf("AlgorithmID(unknown) = %v", err)
	}
}

func TestSign1RoundTrip(t *testing.T) {
	for _, alg := range pluton.Algorithms() {
		t.Run(alg.String(), func(t *testing.T) {
			s := testSigner(t, alg, 1)
			protected := &Header{
				ContentType: "application/eat+cwt",
				KID:         []byte("k"),
				X5Chain:     [][]byte{[]byte("leaf"), []byte("ca")},
				Extra:       map[int64][]byte{-65537: {0x43, 1, 2, 3}},
			}
			unprotected := &Header{Extra: map[int64][]byte{-65538: {0x01}}}
			msg, err := Sign1(nil, s, alg, protected, unprotected, []byte("payload"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			if protected.Alg != 0 {
				t.Fatal("Sign1 changed the caller's header")
			}
			m, err := ParseSign1(msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(s.Public(), []byte("aad")); err != nil {
				t.Fatal(err)
			}
			if string(m.Protected.KID) != "k" || len(m.Protected.X5Chain) != 2 || string(m.Protected.X5Chain[1]) != "ca" ||
				!bytes.Equal(m.Protected.Extra[-65537], []byte{0x43, 1, 2, 3}) || !bytes.Equal(m.Unprotected.Extra[-65538], []byte{1}) {
				t.Fatalf("parsed %+v", m)
			}
			if again, err := m.Marshal(); err != nil || !bytes.Equal(again, msg) {
				t.Fatalf("Marshal() differs: %v", err)
			}
			// Another key of the same algorithm, and a key of another.
			if err := m.Verify(testSigner(t, alg, 2).Public(), []byte("aad")); !errors.Is(err, pluton.ErrInvalidSignature) {
				t.Fatalf("other key: %v", err)
			}
			other := pluton.Ed25519
			if alg == pluton.Ed25519 {
				other = pluton.ECDSAP256
			}
			if err := m.Verify(testSigner(t, other, 1).Public(), []byte("aad")); !errors.Is(err, pluton.ErrInvalidKey) {
				t.Fatalf("key of another algorithm: %v", err)
			}
			// Every flipped bit is caught, except in the unprotected
			// header, which the signature does not cover.
			for i := range msg {
				bad := bytes.Clone(msg)
				bad[i] ^= 0x01
				if b, err := ParseSign1(bad); err == nil && b.Verify(s.Public(), []byte("aad")) == nil {
					if !bytes.Equal(b.RawProtected, m.RawProtected) || !bytes.Equal(b.Payload, m.Payload) ||
						!bytes.Equal(b.Signature, m.Signature) || bytes.Equal(b.Unprotected.Extra[-65538], m.Unprotected.Extra[-65538]) {
						t.Fatalf("bit flip at byte %d verifies", i)
					}
				}
			}
		})
	}
}

func TestSign1SingleCertificate(t *testing.T) {
	s := testSigner(t, pluton.Ed25519, 1)
	msg, err := Sign1(nil, s, pluton.Ed25519, &Header{X5Chain: [][]byte{[]byte("only")}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 9360, §2: one certificate is a bare byte string: 33: h'6f6e6c79'.
	if !bytes.Contains(msg, []byte{0x18, 0x21, 0x44, 'o', 'n', 'l', 'y'}) {
		t.Fatalf("x5chain of one certificate not a byte string: %x", msg)
	}
	m, err := ParseSign1(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Protected.X5Chain) != 1 || string(m.Protected.X5Chain[0]) != "only" || len(m.Payload) != 0 {
		t.Fatalf("parsed %+v", m)
	}
}

func TestSignRoundTrip(t *testing.T) {
	var signers []Signer
	for i, alg := range []pluton.Algorithm{pluton.ECDSAP384, pluton.MLDSA65} {
		signers = append(signers, Signer{Signer: testSigner(t, alg, 3), Alg: alg, KID: []byte{byte(i)}})
	}
	msg, err := Sign(nil, signers, &Header{ContentType: uint64(61)}, []byte("hybrid"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m, rest, err := ParseSignPrefix(append(bytes.Clone(msg), "tail"...))
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "tail" {
		t.Fatalf("rest = %q", rest)
	}
	if len(m.Signatures) != 2 || m.Protected.ContentType != uint64(61) {
		t.Fatalf("parsed %+v", m)
	}
	for i, s := range signers {
		if err := m.VerifySignature(i, s.Signer.Public(), nil); err != nil {
			t.Fatal(err)
		}
		if got := m.Signatures[i].Protected.KID; !bytes.Equal(got, s.KID) {
			t.Fatalf("KID %x", got)
		}
	}
	if err := m.VerifySignature(2, signers[0].Signer.Public(), nil); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("VerifySignature(2) = %v", err)
	}
	// Swapping the signatures' keys fails.
	if err := m.VerifySignature(0, signers[1].Signer.Public(), nil); !errors.Is(err, pluton.ErrInvalidKey) {
		t.Fatalf("swapped key: %v", err)
	}
	if tag, err := PeekTag(msg); err != nil || tag != TagSign {
		t.Fatalf("PeekTag = %d, %v", tag, err)
	}
}

func TestSignRefusesBadRequests(t *testing.T) {
	p256 := testSigner(t, pluton.ECDSAP256, 1)
	if _, err := Sign1(nil, p256, pluton.ECDSAP384, nil, nil, nil, nil); err == nil {
		t.Error("Sign1 with a key of another algorithm")
	}
	if _, err := Sign1(nil, p256, pluton.ECDSAP256, &Header{Alg: -8}, nil, nil, nil); err == nil {
		t.Error("Sign1 with a conflicting alg")
	}
	if _, err := Sign1(nil, p256, pluton.ECDSAP256, nil, &Header{Alg: -7}, nil, nil); err == nil {
		t.Error("Sign1 with alg in the unprotected header")
	}
	if _, err := Sign1(nil, p256, pluton.ECDSAP256, &Header{KID: []byte("a")}, &Header{KID: []byte("b")}, nil, nil); err == nil {
		t.Error("Sign1 with a label in both buckets")
	}
	if _, err := Sign1(nil, p256, pluton.ECDSAP256, &Header{Extra: map[int64][]byte{4: {0x40}}}, nil, nil, nil); err == nil {
		t.Error("Sign1 with kid in Extra")
	}
	if _, err := Sign1(nil, p256, pluton.ECDSAP256, &Header{Extra: map[int64][]byte{-70000: {0x5f}}}, nil, nil, nil); err == nil {
		t.Error("Sign1 with a malformed Extra value")
	}
	if _, err := Sign1(nil, p256, pluton.ECDSAP256, &Header{ContentType: 3}, nil, nil, nil); err == nil {
		t.Error("Sign1 with an int content type")
	}
	if _, err := Sign1(nil, p256, pluton.ECDSAP256, nil, nil, make([]byte, MaxMessageSize+1), nil); err == nil {
		t.Error("Sign1 with a huge payload")
	}
	if _, err := Sign(nil, nil, nil, nil, nil); err == nil {
		t.Error("Sign without signers")
	}
	if _, err := Sign(nil, []Signer{{Signer: p256, Alg: pluton.ECDSAP256}}, &Header{Alg: -7}, nil, nil); err == nil {
		t.Error("Sign with alg in the body")
	}
}

// encode builds test messages from Go values in deterministic CBOR.
func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSign1Refuses(t *testing.T) {
	s := testSigner(t, pluton.Ed25519, 1)
	good, err := Sign1(nil, s, pluton.Ed25519, nil, &Header{KID: []byte("k")}, []byte("p"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sig := bytes.Repeat([]byte{1}, 64)
	prot := encode(t, map[int64]any{1: -8})
	msg := func(elems ...any) []byte { return encode(t, cbor.Tag{Number: 18, Content: elems}) }
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"trailing data", append(bytes.Clone(good), 0), ErrMalformed},
		{"untagged", good[1:], ErrMalformed},
		{"COSE_Sign tag", append([]byte{0xd8, 0x62}, good[1:]...), ErrMalformed},
		{"tag 18 non-preferred", append([]byte{0xd8, 0x12}, good[1:]...), ErrMalformed},
		{"indefinite-length array", append([]byte{0xd2, 0x9f}, append(good[2:], 0xff)...), ErrMalformed},
		{"three elements", msg(prot, map[int64]any{}, []byte("p")), ErrMalformed},
		{"five elements", msg(prot, map[int64]any{}, []byte("p"), sig, sig), ErrMalformed},
		{"detached payload", msg(prot, map[int64]any{}, nil, sig), ErrMalformed},
		{"payload text", msg(prot, map[int64]any{}, "p", sig), ErrMalformed},
		{"protected not bstr", msg(map[int64]any{1: -8}, map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"protected not a map", msg(encode(t, []int{1}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"protected trailing", msg(append(bytes.Clone(prot), 0), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"no alg", msg([]byte{}, map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"alg zero", msg(encode(t, map[int64]any{1: 0}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"alg unprotected", msg([]byte{}, map[int64]any{1: -8}, []byte("p"), sig), ErrMalformed},
		{"label in both buckets", msg(encode(t, map[int64]any{1: -8, 4: []byte("a")}), map[int64]any{4: []byte("a")}, []byte("p"), sig), ErrMalformed},
		{"text label", msg(prot, map[string]any{"kid": []byte("a")}, []byte("p"), sig), ErrMalformed},
		{"duplicate label", msg(prot, cbor.RawMessage{0xa2, 0x04, 0x41, 'a', 0x04, 0x41, 'b'}, []byte("p"), sig), ErrMalformed},
		{"duplicate protected label", msg([]byte{0xa2, 0x01, 0x27, 0x01, 0x27}, map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"nested tag", msg(prot, map[int64]any{-70000: cbor.Tag{Number: 1, Content: 0}}, []byte("p"), sig), ErrMalformed},
		{"kid not bstr", msg(prot, map[int64]any{4: "a"}, []byte("p"), sig), ErrMalformed},
		{"kid too long", msg(prot, map[int64]any{4: make([]byte, MaxKIDSize+1)}, []byte("p"), sig), ErrTooLarge},
		{"content type negative", msg(encode(t, map[int64]any{1: -8, 3: -1}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"content format too large", msg(encode(t, map[int64]any{1: -8, 3: 70000}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"x5chain array of one", msg(encode(t, map[int64]any{1: -8, 33: [][]byte{{1}}}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"x5chain text", msg(encode(t, map[int64]any{1: -8, 33: "cert"}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"x5chain too long", msg(encode(t, map[int64]any{1: -8, 33: make([][]byte, MaxX5ChainCerts+1)}), map[int64]any{}, []byte("p"), sig), ErrTooLarge},
		{"crit unprotected", msg(prot, map[int64]any{2: []int{1}}, []byte("p"), sig), ErrMalformed},
		{"crit unknown label", msg(encode(t, map[int64]any{1: -8, 2: []int{-70000}, -70000: 1}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"crit absent label", msg(encode(t, map[int64]any{1: -8, 2: []int{4}}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"crit empty", msg(encode(t, map[int64]any{1: -8, 2: []int{}}), map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"too many labels", msg(prot, manyLabels(MaxHeaderLabels+1), []byte("p"), sig), ErrTooLarge},
		{"too deep", msg(prot, map[int64]any{-70000: [][][][][][][][]int{{{{{{{{1}}}}}}}}}, []byte("p"), sig), ErrTooLarge},
		{"too large", msg(prot, map[int64]any{}, make([]byte, MaxMessageSize), sig), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSign1(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseSign1 = %v, want %v", err, tc.want)
			}
		})
	}
	// "crit" naming a processed label is accepted.
	ok := msg(encode(t, map[int64]any{1: -8, 2: []int{1}}), map[int64]any{}, []byte("p"), sig)
	if _, err := ParseSign1(ok); err != nil {
		t.Fatalf("crit [1]: %v", err)
	}
	// An empty map in the protected byte string is accepted (RFC 9052, §3).
	if _, err := ParseSign([]byte{0xd8, 0x62, 0x84, 0x41, 0xa0, 0xa0, 0x40, 0x81, 0x83, 0x43, 0xa1, 0x01, 0x27, 0xa0, 0x40}); err != nil {
		t.Fatalf("h'a0' body header: %v", err)
	}
}

func manyLabels(n int) map[int64]any {
	m := make(map[int64]any)
	for i := range n {
		m[int64(-70000-i)] = i
	}
	return m
}

func TestParseSignRefuses(t *testing.T) {
	sig := []any{encode(t, map[int64]any{1: -8}), map[int64]any{}, []byte{1}}
	msg := func(elems ...any) []byte { return encode(t, cbor.Tag{Number: 98, Content: elems}) }
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"no signatures", msg([]byte{}, map[int64]any{}, []byte("p"), []any{}), ErrMalformed},
		{"signatures not an array", msg([]byte{}, map[int64]any{}, []byte("p"), sig), ErrMalformed},
		{"signature of 2", msg([]byte{}, map[int64]any{}, []byte("p"), []any{sig[:2]}), ErrMalformed},
		{"signature without alg", msg([]byte{}, map[int64]any{}, []byte("p"), []any{[]any{[]byte{}, map[int64]any{}, []byte{1}}}), ErrMalformed},
		{"alg in body", msg(encode(t, map[int64]any{1: -8}), map[int64]any{}, []byte("p"), []any{sig}), ErrMalformed},
		{"too many signatures", msg([]byte{}, map[int64]any{}, []byte("p"), []any{sig, sig, sig, sig, sig, sig, sig, sig, sig}), ErrTooLarge},
		{"Sign1 tag", append([]byte{0xd2}, msg([]byte{}, map[int64]any{}, []byte("p"), []any{sig})[2:]...), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSign(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("ParseSign = %v, want %v", err, tc.want)
			}
		})
	}
}

// Every proper prefix of a message is truncated, never a panic.
func TestTruncated(t *testing.T) {
	s := testSigner(t, pluton.ECDSAP256, 1)
	one, err := Sign1(nil, s, pluton.ECDSAP256, &Header{KID: []byte("k")}, nil, []byte("payload"), nil)
	if err != nil {
		t.Fatal(err)
	}
	many, err := Sign(nil, []Signer{{Signer: s, Alg: pluton.ECDSAP256}}, nil, []byte("payload"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(one) {
		if _, err := ParseSign1(one[:i]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("ParseSign1(%d of %d bytes) = %v", i, len(one), err)
		}
	}
	for i := range len(many) {
		if _, err := ParseSign(many[:i]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("ParseSign(%d of %d bytes) = %v", i, len(many), err)
		}
	}
	m, rest, err := ParseSign1Prefix(append(bytes.Clone(one), "payload that follows"...))
	if err != nil || string(rest) != "payload that follows" || string(m.Payload) != "payload" {
		t.Fatalf("ParseSign1Prefix: %v, rest %q", err, rest)
	}
	if tag, err := PeekTag(one); err != nil || tag != TagSign1 {
		t.Fatalf("PeekTag = %d, %v", tag, err)
	}
	if _, err := PeekTag(one[:1]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("PeekTag(1 byte) = %v", err)
	}
	if _, err := PeekTag([]byte{0x84}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("PeekTag(array) = %v", err)
	}
}
