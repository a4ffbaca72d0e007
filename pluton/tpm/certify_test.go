package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/tpm"
)

func TestIdentityKeys(t *testing.T) {
	tp, sw, path := open(t)
	ctx := t.Context()
	// A loaded key first: IdentityKeys must make room for IAK and IDevID.
	sk, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("factory nonce 0123456789abcdef!!")
	ik, err := tp.IdentityKeys(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tp.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !ik.IAK.Equal(id.DeviceID) || ik.IAK.Equal(ik.IDevID) {
		t.Fatal("IAK is not the identity key, or IDevID is the IAK")
	}
	got, err := tpm.VerifyCertify(ik.IAK, ik.IDevIDPublic, ik.Attest, ik.Signature, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(ik.IDevID) {
		t.Fatal("VerifyCertify returns another key")
	}
	// The Name VerifyCertify computes is go-tpm's too.
	area, err := tpm2.Unmarshal[tpm2.TPMTPublic](ik.IDevIDPublic)
	if err != nil {
		t.Fatal(err)
	}
	name, err := tpm2.ObjectName(area)
	if err != nil {
		t.Fatal(err)
	}
	att, _ := tpm2.Unmarshal[tpm2.TPMSAttest](ik.Attest)
	ci, _ := att.Attested.Certify()
	if !bytes.Equal(ci.Name.Buffer, name.Buffer) {
		t.Fatalf("certified name %x, go-tpm's %x", ci.Name.Buffer, name.Buffer)
	}

	// The IDevID signs any digest; the IAK's certification covers it.
	s, err := tp.IDevIDSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("tls handshake"))
	sig, err := s.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(ik.IDevID, d[:], sig) {
		t.Fatal("IDevID signature does not verify")
	}
	if _, err := s.Sign(nil, d[:20], crypto.SHA256); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("short digest: %v", err)
	}
	// Keys from the state file still work around the identity keys.
	ss, err := tp.Signer(ctx, pluton.OS, sk.Handle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}

	// Refusals, each with its reason.
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	other, err := ecdsa.GenerateKey(ik.IAK.Curve, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An unrestricted key's TPMT_PUBLIC (the attributes differ: restricted
	// clear) with the IDevID's point: its Name is not the certified one.
	iakArea, err := tpm2.Unmarshal[tpm2.TPMTPublic](ik.IAKPublic)
	if err != nil {
		t.Fatal(err)
	}
	if !iakArea.ObjectAttributes.Restricted {
		t.Fatal("IAK is not restricted")
	}
	for _, tc := range []struct {
		name                string
		iak                 crypto.PublicKey
		public, attest, sig []byte
		nonce               []byte
		want                error
	}{
		{"other nonce", ik.IAK, ik.IDevIDPublic, ik.Attest, ik.Signature, []byte("another nonce"), tpm.ErrCertifyNonce},
		{"other IAK", &other.PublicKey, ik.IDevIDPublic, ik.Attest, ik.Signature, nonce, tpm.ErrCertifySignature},
		{"tampered attest", ik.IAK, ik.IDevIDPublic, flip(ik.Attest, len(ik.Attest)-1), ik.Signature, nonce, tpm.ErrCertifySignature},
		{"other public area", ik.IAK, ik.IAKPublic, ik.Attest, ik.Signature, nonce, tpm.ErrCertifyName},
		{"tampered public area", ik.IAK, flip(ik.IDevIDPublic, len(ik.IDevIDPublic)-1), ik.Attest, ik.Signature, nonce, tpm.ErrCertifyName},
		{"truncated public area", ik.IAK, ik.IDevIDPublic[:10], ik.Attest, ik.Signature, nonce, tpm.ErrCertifyMalformed},
		{"truncated signature", ik.IAK, ik.IDevIDPublic, ik.Attest, ik.Signature[:10], nonce, tpm.ErrCertifyMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpm.VerifyCertify(tc.iak, tc.public, tc.attest, tc.sig, tc.nonce)
			var ce *tpm.CertifyError
			if !errors.Is(err, tc.want) || !errors.Is(err, tpm.ErrCertify) || !errors.As(err, &ce) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := tp.IdentityKeys(ctx, make([]byte, tpm.MaxNonce+1)); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("long nonce: %v", err)
	}
	if _, err := tpm.VerifyCertify(nil, ik.IDevIDPublic, ik.Attest, ik.Signature, nonce); !errors.Is(err, pluton.ErrInvalidKey) {
		t.Fatalf("nil IAK: %v", err)
	}

	// Persistence: both keys are primary keys, re-created from the
	// endorsement seed: the same after a restart of the TPM object.
	tp.Close()
	tp2, err := tpm.Open(ctx, &tpm.Options{Address: sw.Addr, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer tp2.Close()
	ik2, err := tp2.IdentityKeys(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ik2.IAK.Equal(ik.IAK) || !ik2.IDevID.Equal(ik.IDevID) || !bytes.Equal(ik2.IDevIDPublic, ik.IDevIDPublic) {
		t.Fatal("identity keys changed across a restart")
	}
	if _, err := tpm.VerifyCertify(ik.IAK, ik2.IDevIDPublic, ik2.Attest, ik2.Signature, nil); err != nil {
		t.Fatalf("empty nonce: %v", err)
	}
}

// TestCertifyTPM2Print has tpm2_print (tpm2-tools) decode the TPMS_ATTEST
// of a certification and the IDevID's TPMT_PUBLIC, and tpm2_checkquote
// check the IAK's signature over it and its extraData: without PCR values
// (-f) it checks only those, which any TPMS_ATTEST has, so it serves for a
// certification too (tpm2-tools has no checker of TPM2_Certify).
func TestCertifyTPM2Print(t *testing.T) {
	bin := testdep.LookPath(t, "tpm2_print")
	tp, _, _ := open(t)
	ctx := t.Context()
	nonce := []byte("tpm2_print nonce")
	ik, err := tp.IdentityKeys(ctx, nonce)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(typ, file string, b []byte) (string, error) {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, bin, "-t", typ, p).CombinedOutput()
		t.Logf("tpm2_print -t %s (%v):\n%s", typ, err, out)
		return strings.ToLower(string(out)), err
	}
	// tpm2-tools 5.4 prints the header of a TPMS_ATTEST (magic, type,
	// qualifiedSigner, extraData, clockInfo, firmwareVersion) and then
	// fails on the TPMS_CERTIFY_INFO ("Cannot print unsupported type
	// 0x8017"): only the header is checked, and the exit status is allowed
	// to be that failure.
	out, err := run("TPMS_ATTEST", "attest.bin", ik.Attest)
	if err != nil && !strings.Contains(out, "unsupported type 0x8017") {
		t.Fatalf("tpm2_print TPMS_ATTEST: %v", err)
	}
	for _, want := range []string{"magic: ff544347", "type: 8017", "extradata: " + hex.EncodeToString(nonce)} {
		if !strings.Contains(out, want) {
			t.Fatalf("tpm2_print TPMS_ATTEST output lacks %q", want)
		}
	}
	out, err = run("TPMT_PUBLIC", "idevid.pub", ik.IDevIDPublic)
	if err != nil {
		t.Fatalf("tpm2_print TPMT_PUBLIC: %v", err)
	}
	for _, want := range []string{"fixedtpm", "fixedparent", "sensitivedataorigin", "sign"} {
		if !strings.Contains(out, want) {
			t.Fatalf("tpm2_print TPMT_PUBLIC output lacks %q", want)
		}
	}
	if strings.Contains(out, "restricted") || strings.Contains(out, "decrypt") {
		t.Fatal("tpm2_print: the IDevID is restricted")
	}

	check := testdep.LookPath(t, "tpm2_checkquote")
	spki, err := x509.MarshalPKIXPublicKey(ik.IAK)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "iak.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sig.bin"), ik.Signature, 0o600); err != nil {
		t.Fatal(err)
	}
	checkquote := func(nonce []byte) ([]byte, error) {
		cmd := exec.CommandContext(ctx, check, "-u", "iak.pem", "-m", "attest.bin", "-s", "sig.bin", "-g", "sha256", "-q", hex.EncodeToString(nonce))
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	if out, err := checkquote(nonce); err != nil {
		t.Fatalf("tpm2_checkquote rejects the certification: %v\n%s", err, out)
	}
	if out, err := checkquote([]byte("another nonce")); err == nil {
		t.Fatalf("tpm2_checkquote accepts another nonce:\n%s", out)
	}
}

// certifyVector is a TPM2_Certify recorded from swtpm
// (testdata/certify-swtpm.json), so that VerifyCertify is checked against
// real TPM output without a TPM.
type certifyVector struct {
	Comment   string `json:"comment"`
	IAK       []byte `json:"iak_spki"`
	IDevID    []byte `json:"idevid_public"`
	Nonce     []byte `json:"nonce"`
	Attest    []byte `json:"attest"`
	Signature []byte `json:"signature"`
}

const certifyVectorFile = "testdata/certify-swtpm.json"

func loadCertifyVector(t testing.TB) (*certifyVector, crypto.PublicKey) {
	b, err := os.ReadFile(certifyVectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var v certifyVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(v.IAK)
	if err != nil {
		t.Fatal(err)
	}
	return &v, pub
}

func TestCertifyVector(t *testing.T) {
	v, iak := loadCertifyVector(t)
	key, err := tpm.VerifyCertify(iak, v.IDevID, v.Attest, v.Signature, v.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	if key.Curve.Params().Name != "P-256" {
		t.Fatalf("IDevID curve %s", key.Curve.Params().Name)
	}
	// The certified Name, by TPM 2.0 Part 1 §16: 0x000b (SHA-256) ||
	// SHA-256(TPMT_PUBLIC).
	h := sha256.Sum256(v.IDevID)
	want := append([]byte{0x00, 0x0b}, h[:]...)
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](v.Attest)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := att.Attested.Certify()
	if err != nil || !bytes.Equal(ci.Name.Buffer, want) {
		t.Fatalf("certified Name %x, want %x (%v)", ci.Name.Buffer, want, err)
	}
	if _, err := tpm.VerifyCertify(iak, v.IDevID, v.Attest, v.Signature, v.Nonce[1:]); !errors.Is(err, tpm.ErrCertifyNonce) {
		t.Fatalf("other nonce: %v", err)
	}
}

func FuzzVerifyCertify(f *testing.F) {
	v, iak := loadCertifyVector(f)
	f.Add(v.IDevID, v.Attest, v.Signature)
	f.Add(v.IDevID[:len(v.IDevID)/2], v.Attest, v.Signature)
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, public, attest, sig []byte) {
		key, err := tpm.VerifyCertify(iak, public, attest, sig, v.Nonce)
		if err != nil {
			if !errors.Is(err, tpm.ErrCertify) || key != nil {
				t.Fatalf("untyped error or key with error: %v", err)
			}
			return
		}
		if !bytes.Equal(public, v.IDevID) {
			t.Fatal("accepted another public area")
		}
	})
}
