package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
	"github.com/rootline/rootline/pluton/tpm"
	"github.com/rootline/rootline/pluton/tpm/tpmtest"
)

// measured extends the same events into rootline registers and the TPM's
// PCRs 0, 4 and 7, and returns the event log.
func measured(t *testing.T, tp *tpm.TPM) []byte {
	t.Helper()
	regs, err := measure.New(crypto.SHA256, crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []struct {
		reg  int
		data string
	}{{0, "boot rom"}, {4, "os 1.2.0"}, {4, "os config"}, {7, "policy"}} {
		s256, s384 := sha256.Sum256([]byte(ev.data)), sha512.Sum384([]byte(ev.data))
		d := map[crypto.Hash][]byte{crypto.SHA256: s256[:], crypto.SHA384: s384[:]}
		if err := regs.ExtendDigests(ev.reg, measure.EVIPL, d, []byte(ev.data)); err != nil {
			t.Fatal(err)
		}
		if err := tp.ExtendPCR(t.Context(), ev.reg, d); err != nil {
			t.Fatal(err)
		}
	}
	log, err := regs.Log().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// alias is a device's Alias key and its one-certificate chain: a TPM
// signing key with a self-signed certificate.
func alias(t *testing.T, tp *tpm.TPM) (crypto.Signer, [][]byte) {
	t.Helper()
	ctx := t.Context()
	info, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP256, Usage: pluton.UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	s, err := tp.Signer(ctx, pluton.OS, info.Handle)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alias"},
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		t.Fatal(err)
	}
	return s, [][]byte{der}
}

func TestEvidenceQuote(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	log := measured(t, tp)
	id, err := tp.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	signer, chain := alias(t, tp)
	nonce := []byte("verifier nonce 0123456789abcdef!")
	newClaims := func(nonce []byte) *evidence.Claims {
		return &evidence.Claims{Nonce: nonce, UEID: id.UEID, Lifecycle: pluton.Provisioned}
	}
	req := &tpm.EvidenceRequest{Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle, Bank: crypto.SHA256, EventLog: log}
	c := newClaims(nonce)
	if err := tp.QuoteClaims(ctx, c, req); err != nil {
		t.Fatal(err)
	}
	if q := c.TPMQuote; q == nil || fmt.Sprint(q.PCRs) != "[0 4 7]" || q.Bank != crypto.SHA256 || len(c.Registers[crypto.SHA256]) != 3 {
		t.Fatalf("claims %+v", c)
	}
	sign := func(c *evidence.Claims) []byte {
		b, err := evidence.Sign(rand.Reader, signer, pluton.ECDSAP256, c, chain)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := sign(c)
	tok, err := evidence.Verify(good, &evidence.VerifyOptions{Nonce: nonce})
	if err != nil {
		t.Fatal(err) // includes the replay of the event log against the quoted registers
	}
	if err := tpm.VerifyEvidenceQuote(tok, id.DeviceID); err != nil {
		t.Fatal(err)
	}

	// tpm2_checkquote accepts the token's quote, with the register values
	// (-f, the digests concatenated as tpm2_pcrread -o writes them) and
	// the selection (-l): it checks the pcrDigest too.
	t.Run("tpm2_checkquote", func(t *testing.T) {
		bin := testdep.LookPath(t, "tpm2_checkquote")
		dir := t.TempDir()
		spki, err := x509.MarshalPKIXPublicKey(id.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		var pcrs []byte
		for _, i := range tok.Claims.TPMQuote.PCRs {
			pcrs = append(pcrs, tok.Claims.Registers[crypto.SHA256][i]...)
		}
		write := func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write("iak.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
		write("msg.bin", tok.Claims.TPMQuote.Attest)
		write("sig.bin", tok.Claims.TPMQuote.Signature)
		write("pcrs.bin", pcrs)
		run := func(nonce []byte, sel string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, bin, "-u", "iak.pem", "-m", "msg.bin", "-s", "sig.bin", "-g", "sha256",
				"-f", "pcrs.bin", "-l", sel, "-q", hex.EncodeToString(nonce))
			cmd.Dir = dir
			return cmd.CombinedOutput()
		}
		out, err := run(nonce, "sha256:0,4,7")
		if err != nil {
			t.Fatalf("tpm2_checkquote rejects the token's quote: %v\n%s", err, out)
		}
		t.Logf("tpm2_checkquote:\n%s", out)
		if out, err := run([]byte("another nonce"), "sha256:0,4,7"); err == nil {
			t.Fatalf("tpm2_checkquote accepts another nonce:\n%s", out)
		}
		pcrs[40] ^= 1 // PCR 4
		write("pcrs.bin", pcrs)
		if out, err := run(nonce, "sha256:0,4,7"); err == nil {
			t.Fatalf("tpm2_checkquote accepts a changed PCR 4:\n%s", out)
		}
	})

	// Refusals.
	verify := func(t *testing.T, c *evidence.Claims, ak crypto.PublicKey) error {
		t.Helper()
		tok, err := evidence.Verify(sign(c), &evidence.VerifyOptions{Nonce: c.Nonce})
		if err != nil {
			t.Fatal(err)
		}
		return tpm.VerifyEvidenceQuote(tok, ak)
	}
	isQuoteError := func(t *testing.T, err, want error) {
		t.Helper()
		var qe *tpm.QuoteError
		if !errors.As(err, &qe) || !errors.Is(err, want) || !errors.Is(err, tpm.ErrQuote) {
			t.Fatalf("got %v, want a *QuoteError wrapping %v", err, want)
		}
	}
	t.Run("quote for another nonce", func(t *testing.T) {
		c := newClaims(nonce)
		if err := tp.QuoteClaims(ctx, c, req); err != nil {
			t.Fatal(err)
		}
		c.Nonce = []byte("a later nonce 0123456789abcdef!!") // the quote is replayed
		isQuoteError(t, verify(t, c, id.DeviceID), tpm.ErrQuoteNonce)
	})
	t.Run("wrong PCR selection", func(t *testing.T) {
		c := newClaims(nonce)
		if err := tp.QuoteClaims(ctx, c, req); err != nil {
			t.Fatal(err)
		}
		c.TPMQuote.PCRs = []int{0, 4}
		isQuoteError(t, verify(t, c, id.DeviceID), tpm.ErrQuotePCRs)
	})
	t.Run("tampered PCR value", func(t *testing.T) {
		c := newClaims(nonce)
		if err := tp.QuoteClaims(ctx, c, req); err != nil {
			t.Fatal(err)
		}
		c.Registers[crypto.SHA256][4] = bytes.Repeat([]byte{4}, 32)
		// With the event log, evidence.Verify refuses the token already.
		_, err := evidence.Verify(sign(c), &evidence.VerifyOptions{Nonce: nonce})
		if !errors.Is(err, evidence.ErrEventLog) {
			t.Fatalf("tampered register with its log: %v", err)
		}
		c.EventLog = nil
		isQuoteError(t, verify(t, c, id.DeviceID), tpm.ErrQuotePCRs)
	})
	t.Run("other attestation key", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		isQuoteError(t, tpm.VerifyEvidenceQuote(tok, &other.PublicKey), tpm.ErrQuoteSignature)
	})
	t.Run("no quote", func(t *testing.T) {
		isQuoteError(t, verify(t, newClaims(nonce), id.DeviceID), tpm.ErrQuoteMissing)
		isQuoteError(t, tpm.VerifyEvidenceQuote(nil, id.DeviceID), tpm.ErrQuoteMissing)
	})
	t.Run("attestation key of a compartment", func(t *testing.T) {
		ak, err := tp.GenerateKey(ctx, &pluton.KeyRequest{Compartment: pluton.OS, Algorithm: pluton.ECDSAP384, Usage: pluton.UsageAttest})
		if err != nil {
			t.Fatal(err)
		}
		c := newClaims(nonce)
		if err := tp.QuoteClaims(ctx, c, &tpm.EvidenceRequest{Compartment: pluton.OS, Key: ak.Handle, Bank: crypto.SHA384, PCRs: []int{7, 0}}); err != nil {
			t.Fatal(err)
		}
		if err := verify(t, c, ak.Public); err != nil {
			t.Fatal(err)
		}
		err = tp.QuoteClaims(ctx, newClaims(nonce), &tpm.EvidenceRequest{Compartment: pluton.App("x"), Key: ak.Handle, Bank: crypto.SHA256, PCRs: []int{0}})
		if !errors.Is(err, pluton.ErrCompartment) {
			t.Fatalf("other compartment: %v", err)
		}
	})
	for _, bad := range []*tpm.EvidenceRequest{
		{Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle, Bank: crypto.SHA512, PCRs: []int{0}},
		{Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle, Bank: crypto.SHA256},
		{Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle, Bank: crypto.SHA256, PCRs: []int{24}},
		{Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle, Bank: crypto.SHA256, EventLog: []byte("not a log")},
	} {
		if err := tp.QuoteClaims(ctx, newClaims(nonce), bad); !errors.Is(err, pluton.ErrInvalidArgument) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if err := tp.QuoteClaims(ctx, newClaims([]byte("short")), req); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Errorf("short nonce: %v", err)
	}
}

// refusingTPM passes commands through to a TPM but answers TPM2_Quote
// itself with rc.
type refusingTPM struct {
	tpm interface{ Send([]byte) ([]byte, error) }
	rc  uint32
}

func (r refusingTPM) Send(cmd []byte) ([]byte, error) {
	if len(cmd) >= 10 && binary.BigEndian.Uint32(cmd[6:10]) == uint32(tpm2.TPMCCQuote) {
		rsp := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(rsp[6:], r.rc)
		return rsp, nil
	}
	return r.tpm.Send(cmd)
}

// TestEvidenceQuoteRC: a TPM that refuses the quote gives an error that
// keeps its response code, and the claims are left as they were.
func TestEvidenceQuoteRC(t *testing.T) {
	sw := tpmtest.Start(t)
	ctx := t.Context()
	tr, err := tpm.DialTCP(ctx, sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// TPM_RC_HIERARCHY (format one, handle 1): the endorsement hierarchy
	// is disabled, say.
	rc := uint32(tpm2.TPMRCHierarchy) | 0x100
	tp, err := tpm.Open(ctx, &tpm.Options{Transport: refusingTPM{tpm: tr, rc: rc}})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	id, err := tp.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &evidence.Claims{Nonce: []byte("0123456789abcdef"), UEID: id.UEID, Lifecycle: pluton.Provisioned}
	err = tp.QuoteClaims(ctx, c, &tpm.EvidenceRequest{Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle, Bank: crypto.SHA256, PCRs: []int{0}})
	var ce *tpm.CommandError
	if !errors.As(err, &ce) || ce.Command != tpm2.TPMCCQuote || !errors.Is(err, tpm2.TPMRCHierarchy) {
		t.Fatalf("refused quote: %v", err)
	}
	if got, ok := ce.RC(); !ok || !strings.Contains(err.Error(), "TPM2_Quote") {
		t.Fatalf("rc %#x, %v", uint32(got), err)
	}
	if c.TPMQuote != nil || c.Registers != nil {
		t.Fatal("claims changed by a failed quote")
	}
}
