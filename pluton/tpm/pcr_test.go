package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/measure"
	"github.com/rootline/rootline/pluton/tpm"
)

// TestPCRsMatchEventLog measures into rootline's registers and extends the
// same digests into the TPM: the event log replays to the TPM's PCRs.
func TestPCRsMatchEventLog(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	regs, err := measure.New(crypto.SHA256, crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range []struct {
		reg  int
		data string
	}{{0, "boot rom"}, {4, "os 1.2.0"}, {4, "os config"}, {7, "policy"}} {
		digests := map[crypto.Hash][]byte{}
		s256 := sha256.Sum256([]byte(ev.data))
		s384 := sha512.Sum384([]byte(ev.data))
		digests[crypto.SHA256], digests[crypto.SHA384] = s256[:], s384[:]
		if err := regs.ExtendDigests(ev.reg, measure.EVIPL, digests, []byte(ev.data)); err != nil {
			t.Fatal(i, err)
		}
		if err := tp.ExtendPCR(ctx, ev.reg, digests); err != nil {
			t.Fatal(i, err)
		}
	}
	quoted := map[crypto.Hash]map[int][]byte{}
	for _, bank := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		vals, err := tp.ReadPCRs(ctx, bank, []int{0, 4, 7, 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) != 4 || !bytes.Equal(vals[1], make([]byte, bank.Size())) {
			t.Fatalf("%v: PCR 1 = %x, want zeros", bank, vals[1])
		}
		for _, i := range []int{0, 4, 7} {
			want, _ := regs.Value(bank, i)
			if !bytes.Equal(vals[i], want) {
				t.Fatalf("%v PCR %d: TPM %x, registers %x", bank, i, vals[i], want)
			}
		}
		quoted[bank] = vals
	}
	if err := regs.Log().Verify(quoted); err != nil {
		t.Fatalf("event log does not replay to the TPM's PCRs: %v", err)
	}
}

// TestPCRRead checks that tpm2_pcrread, an independent TPM client, reads
// the PCR values rootline reports.
func TestPCRRead(t *testing.T) {
	bin := testdep.LookPath(t, "tpm2_pcrread")
	tp, sw, _ := open(t)
	ctx := t.Context()
	d := sha256.Sum256([]byte("measured"))
	if err := tp.ExtendPCR(ctx, 10, map[crypto.Hash][]byte{crypto.SHA256: d[:]}); err != nil {
		t.Fatal(err)
	}
	vals, err := tp.ReadPCRs(ctx, crypto.SHA256, []int{9, 10})
	if err != nil {
		t.Fatal(err)
	}
	// swtpm serves one connection at a time.
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "sha256:9,10")
	cmd.Env = append(cmd.Environ(), "TPM2TOOLS_TCTI="+sw.TCTI())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	got := map[int][]byte{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)`).FindAllSubmatch(out, -1) {
		i, _ := strconv.Atoi(string(m[1]))
		got[i], _ = hex.DecodeString(string(m[2]))
	}
	for _, i := range []int{9, 10} {
		if !bytes.Equal(got[i], vals[i]) {
			t.Fatalf("PCR %d: tpm2_pcrread %x, rootline %x\n%s", i, got[i], vals[i], out)
		}
	}
}

func TestBadPCRSelection(t *testing.T) {
	tp, _, _ := open(t)
	ctx := t.Context()
	d := sha256.Sum256(nil)
	// PCR 24 does not exist on a PC Client TPM: the TPM answers with an
	// error code, which the error keeps.
	err := tp.ExtendPCR(ctx, 24, map[crypto.Hash][]byte{crypto.SHA256: d[:]})
	var ce *tpm.CommandError
	if !errors.As(err, &ce) || ce.Command != tpm2.TPMCCPCRExtend {
		t.Fatalf("extend PCR 24: %v", err)
	}
	rc, ok := ce.RC()
	if !ok {
		t.Fatalf("extend PCR 24: no RC in %v", err)
	}
	t.Logf("extend PCR 24: %v (rc %#x)", err, uint32(rc))
	var rc2 tpm2.TPMRC
	if !errors.As(err, &rc2) || rc2 != rc {
		t.Fatalf("errors.As TPMRC: %v", rc2)
	}
	// Reading it: the TPM rejects the selection (TPM_RC_VALUE, parameter 1).
	_, err = tp.ReadPCRs(ctx, crypto.SHA256, []int{24})
	if !errors.As(err, &ce) || ce.Command != tpm2.TPMCCPCRRead {
		t.Fatalf("read PCR 24: %v", err)
	}
	if !errors.Is(err, tpm2.TPMRCValue) {
		t.Fatalf("read PCR 24: %v, want TPM_RC_VALUE", err)
	}
	t.Logf("read PCR 24: %v", err)
	// A bank the TPM does not have: left out of the answer.
	if _, err := tp.ReadPCRs(ctx, crypto.SHA512, []int{0}); err != nil {
		t.Logf("read SHA-512 bank: %v", err)
		if !errors.Is(err, tpm.ErrPCRSelection) {
			var ce *tpm.CommandError
			if !errors.As(err, &ce) {
				t.Fatalf("read SHA-512 bank: untyped error %v", err)
			}
		}
	}
	if _, err := tp.ReadPCRs(ctx, crypto.SHA256, []int{32}); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("read PCR 32: %v", err)
	}
	if err := tp.ExtendPCR(ctx, 1, map[crypto.Hash][]byte{crypto.SHA256: d[:20]}); !errors.Is(err, pluton.ErrInvalidArgument) {
		t.Fatalf("short digest: %v", err)
	}
}
