package tpmtest_test

import (
	"net"
	"testing"

	"github.com/rootline/rootline/pluton/tpm/tpmtest"
)

func TestStart(t *testing.T) {
	a, b := tpmtest.Start(t), tpmtest.Start(t)
	if a.Addr == b.Addr || a.CtrlPort != a.Port+1 {
		t.Fatalf("ports: %+v, %+v", a, b)
	}
	// TPM2_GetRandom(8) (TPM 2.0 Part 3 §16.1): tag TPM_ST_NO_SESSIONS,
	// size 12, command code 0x17B, bytesRequested 8.
	c, err := net.Dial("tcp", a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 8}); err != nil {
		t.Fatal(err)
	}
	rsp := make([]byte, 20)
	if _, err := c.Read(rsp); err != nil {
		t.Fatal(err)
	}
	// TPM_ST_NO_SESSIONS, size 20, TPM_RC_SUCCESS, TPM2B of 8 bytes.
	if rsp[0] != 0x80 || rsp[1] != 0x01 || rsp[5] != 20 || rsp[9] != 0 || rsp[11] != 8 {
		t.Fatalf("response %x", rsp)
	}
}
