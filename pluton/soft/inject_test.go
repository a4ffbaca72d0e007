package soft

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/internal/keywrap"
)

// wrapForChip plays the HSM in software (for tests of the chip alone; the
// hsm package's tests run the same against SoftHSM2): KDF 1 and RFC 5649.
func wrapForChip(t testing.TB, b *WrappedBlob, transport *ecdh.PublicKey, payload []byte) []byte {
	t.Helper()
	eph, err := transport.Curve().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b.Ephemeral = eph.PublicKey().Bytes()
	b.KDF = KDFECDHAESECB
	z, err := eph.ECDH(transport)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := aes.NewCipher(z[len(z)-32:])
	d := sha256.Sum256(kdfInfo(b, b.UEID, transport.Bytes()))
	kek := make([]byte, 32)
	blk.Encrypt(kek[:16], d[:16])
	blk.Encrypt(kek[16:], d[16:])
	if b.Wrapped, err = keywrap.Wrap(kek, payload); err != nil {
		t.Fatal(err)
	}
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func transportOf(t testing.TB, c *Chip, alg TransportAlgorithm) *VerifiedTransportKey {
	t.Helper()
	nonce := bytes.Repeat([]byte{9}, 16)
	tk, err := c.TransportKey(context.Background(), alg, nonce)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := c.Identity(context.Background())
	vt, err := VerifyTransportKey(tk.Statement, tk.Signature, id.DeviceID, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return vt
}

func TestTransportKey(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	nonce := bytes.Repeat([]byte{1}, 16)
	for _, alg := range []TransportAlgorithm{TransportP256, TransportP384} {
		tk, err := c.TransportKey(ctx, alg, nonce)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := c.Identity(ctx)
		vt, err := VerifyTransportKey(tk.Statement, tk.Signature, id.DeviceID, nonce)
		if err != nil {
			t.Fatal(err)
		}
		if !vt.Public.Equal(tk.Public) || !bytes.Equal(vt.UEID, id.UEID) || vt.Algorithm != alg {
			t.Fatal("verified statement differs from the chip's answer")
		}
		if _, err := VerifyTransportKey(tk.Statement, tk.Signature, id.DeviceID, bytes.Repeat([]byte{2}, 16)); !errors.Is(err, ErrStatement) {
			t.Fatalf("other nonce: %v", err)
		}
		bad := bytes.Clone(tk.Statement)
		bad[len(bad)-1] ^= 1
		if _, err := VerifyTransportKey(bad, tk.Signature, id.DeviceID, nonce); !errors.Is(err, ErrStatement) {
			t.Fatalf("altered statement: %v", err)
		}
	}
	// The transport key is the same after a restart, is not the DeviceID,
	// and is in no key slot.
	tk1, _ := c.TransportKey(ctx, TransportP256, nonce)
	c.Close()
	c2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	tk2, _ := c2.TransportKey(ctx, TransportP256, nonce)
	if !tk1.Public.Equal(tk2.Public) {
		t.Fatal("transport key changed across a restart")
	}
	id, _ := c2.Identity(ctx)
	if idk, _ := id.DeviceID.(*ecdsa.PublicKey).ECDH(); idk.Equal(tk1.Public) {
		t.Fatal("transport key is the DeviceID key")
	}
	for _, cm := range []pluton.Compartment{pluton.SecurityMonitor, pluton.OS} {
		ks, _ := c2.Keys(ctx, cm)
		for _, k := range ks {
			if e, ok := k.Public.(*ecdsa.PublicKey); ok {
				if ek, _ := e.ECDH(); ek.Equal(tk1.Public) {
					t.Fatal("transport key listed in a key slot")
				}
			}
		}
	}
	if _, err := c2.TransportKey(ctx, TransportP256, []byte{1}); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("short nonce: %v", err)
	}
	if _, err := c2.TransportKey(ctx, 9, nonce); !errors.Is(err, pluton.ErrUnsupportedAlgorithm) {
		t.Fatalf("unknown algorithm: %v", err)
	}
	blank, _ := createChip(t, nil)
	if _, err := blank.TransportKey(ctx, TransportP256, nonce); !errors.Is(err, pluton.ErrWrongLifecycle) {
		t.Fatalf("blank chip: %v", err)
	}
}

// The chip alone, with a software HSM: keys and secrets install, the state
// file moves to version 2 only when it needs it, and loads back.
func TestInstallSoftwareWrapped(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	if v := fileBytes(t, path)[9]; v != 1 {
		t.Fatalf("state of a chip without injections has version %d, want 1", v)
	}
	vt := transportOf(t, c, TransportP384)
	dev, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(dev)
	blob := wrapForChip(t, &WrappedBlob{Kind: BlobKey, Transport: TransportP384, UEID: vt.UEID, Name: "idevid",
		KeyAlgorithm: pluton.ECDSAP384}, vt.Public, p8)
	info, err := c.InstallWrappedKey(ctx, blob, pluton.OS, &dev.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if info.Algorithm != pluton.ECDSAP384 || !dev.PublicKey.Equal(info.Public) {
		t.Fatalf("installed %+v", info)
	}
	secret := bytes.Repeat([]byte{0x42}, 32)
	sblob := wrapForChip(t, &WrappedBlob{Kind: BlobSecret, Transport: TransportP384, UEID: vt.UEID, Name: "join"}, vt.Public, secret)
	if err := c.InstallWrappedSecret(ctx, sblob, pluton.App("net")); err != nil {
		t.Fatal(err)
	}
	if v := fileBytes(t, path)[9]; v != 2 {
		t.Fatalf("state with injections has version %d, want 2", v)
	}
	c.Close()
	c2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if s, err := c2.Secret(ctx, pluton.App("net"), "join"); err != nil || !bytes.Equal(s, secret) {
		t.Fatalf("secret after restart: %x, %v", s, err)
	}
	// A wrong-size secret, a key of another curve than the blob says.
	before := fileBytes(t, path)
	short := wrapForChip(t, &WrappedBlob{Kind: BlobSecret, Transport: TransportP384, UEID: vt.UEID, Name: "short"}, vt.Public, []byte("too short"))
	if err := c2.InstallWrappedSecret(ctx, short, pluton.OS); !errors.Is(err, ErrBlobMalformed) {
		t.Fatalf("short secret: %v", err)
	}
	mismatch := wrapForChip(t, &WrappedBlob{Kind: BlobKey, Transport: TransportP384, UEID: vt.UEID, Name: "k2",
		KeyAlgorithm: pluton.ECDSAP256}, vt.Public, p8)
	if _, err := c2.InstallWrappedKey(ctx, mismatch, pluton.OS, &dev.PublicKey); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("curve mismatch: %v", err)
	}
	if !bytes.Equal(before, fileBytes(t, path)) {
		t.Fatal("refused blobs changed the state file")
	}
	// Decommissioning erases the secrets with the keys.
	if err := c2.Transition(ctx, pluton.Decommissioned); err != nil {
		t.Fatal(err)
	}
	st, err := unmarshalState(fileBytes(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Secrets) != 0 || len(st.Keys) != 0 {
		t.Fatal("decommissioned chip kept its secrets or keys")
	}
	if _, err := c2.Secret(ctx, pluton.App("net"), "join"); !errors.Is(err, pluton.ErrWrongLifecycle) {
		t.Fatalf("secret after decommissioning: %v", err)
	}
}

// The statement verifies whatever the DeviceID algorithm, and not under
// another chip's DeviceID.
func TestTransportStatementAllDeviceIDAlgorithms(t *testing.T) {
	ctx := context.Background()
	nonce := bytes.Repeat([]byte{3}, 32)
	other, _ := fusedChip(t)
	otherID, _ := other.Identity(ctx)
	for _, alg := range pluton.Algorithms() {
		t.Run(alg.String(), func(t *testing.T) {
			c, _ := createChip(t, &Options{DeviceIDAlgorithm: alg})
			if err := c.FuseIdentity(ctx); err != nil {
				t.Fatal(err)
			}
			tk, err := c.TransportKey(ctx, TransportP256, nonce)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := c.Identity(ctx)
			if _, err := VerifyTransportKey(tk.Statement, tk.Signature, id.DeviceID, nonce); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyTransportKey(tk.Statement, tk.Signature, otherID.DeviceID, nonce); !errors.Is(err, ErrStatement) {
				t.Fatalf("other DeviceID: %v", err)
			}
		})
	}
}

// A state file written before injection existed (version 1, no new
// fields) still loads, and a chip that never injects keeps writing it.
func TestStateVersionCompatibility(t *testing.T) {
	ctx := context.Background()
	c, path := fusedChip(t)
	if _, err := c.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	v1 := fileBytes(t, path)
	if v1[9] != 1 {
		t.Fatalf("version %d", v1[9])
	}
	c2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	// A version-2 header on a state without version-2 fields is refused
	// (one state, one file), as is a version-1 header on one with them.
	st, err := unmarshalState(v1)
	if err != nil {
		t.Fatal(err)
	}
	relabel := func(data []byte, v byte) []byte {
		out := bytes.Clone(data[:len(data)-32])
		out[9] = v
		sum := sha256.Sum256(out)
		return append(out, sum[:]...)
	}
	if _, err := unmarshalState(relabel(v1, 2)); !errors.Is(err, ErrStateCorrupt) {
		t.Fatalf("v2 header on a v1 state: %v", err)
	}
	st.Secrets = []secretSlot{{Name: "s", Compartment: pluton.OS, Value: make([]byte, 32)}}
	v2, err := marshalState(st)
	if err != nil {
		t.Fatal(err)
	}
	if v2[9] != 2 {
		t.Fatalf("state with secrets written as version %d", v2[9])
	}
	if _, err := unmarshalState(v2); err != nil {
		t.Fatal(err)
	}
	if _, err := unmarshalState(relabel(v2, 1)); !errors.Is(err, ErrStateCorrupt) {
		t.Fatalf("v1 header on a v2 state: %v", err)
	}
}
