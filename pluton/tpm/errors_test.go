package tpm_test

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton/tpm"
)

// failingTPM answers every command with a bare response header carrying rc
// (TPM 2.0 Part 1 §18.8: tag TPM_ST_NO_SESSIONS, size 10, responseCode).
type failingTPM struct{ rc uint32 }

func (f failingTPM) Send([]byte) ([]byte, error) {
	rsp := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(rsp[6:], f.rc)
	return rsp, nil
}

func TestTPMAnswersErrors(t *testing.T) {
	// TPM_RC_FAILURE: the TPM is in failure mode.
	_, err := tpm.Open(t.Context(), &tpm.Options{Transport: failingTPM{rc: uint32(tpm2.TPMRCFailure)}})
	var ce *tpm.CommandError
	if !errors.As(err, &ce) || ce.Command != tpm2.TPMCCCreatePrimary {
		t.Fatalf("Open on a failing TPM: %v", err)
	}
	if rc, ok := ce.RC(); !ok || rc != tpm2.TPMRCFailure || !errors.Is(err, tpm2.TPMRCFailure) {
		t.Fatalf("rc %v, %v", rc, err)
	}
	// TPM_RC_HIERARCHY (format one, handle 1): the owner hierarchy is
	// disabled.
	_, err = tpm.Open(t.Context(), &tpm.Options{Transport: failingTPM{rc: uint32(tpm2.TPMRCHierarchy) | 0x100}})
	if !errors.Is(err, tpm2.TPMRCHierarchy) {
		t.Fatalf("hierarchy disabled: %v", err)
	}
	// TPM_RC_RETRY forever: resent a bounded number of times, then
	// reported.
	if _, err := tpm.Open(t.Context(), &tpm.Options{Transport: failingTPM{rc: uint32(tpm2.TPMRCRetry)}}); !errors.Is(err, tpm2.TPMRCRetry) {
		t.Fatalf("retry: %v", err)
	}
	var f1 tpm2.TPMFmt1Error
	if !errors.As(err, &f1) {
		t.Fatalf("errors.As TPMFmt1Error: %v", err)
	}
	if isHandle, n := f1.Handle(); !isHandle || n != 1 {
		t.Fatalf("format-one error names handle %v %d", isHandle, n)
	}
}

// TestTCPBadResponse: a server that claims a response larger than any TPM
// sends.
func TestTCPBadResponse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Write([]byte{0x80, 0x01, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	}()
	tr, err := tpm.DialTCP(t.Context(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Send([]byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 8}); err == nil {
		t.Fatal("accepted a 2 GiB response size")
	}
}

func TestOpenMissingDevice(t *testing.T) {
	if _, err := tpm.Open(t.Context(), &tpm.Options{Device: "/nonexistent/tpmrm0"}); err == nil {
		t.Fatal("opened a missing device")
	}
}
