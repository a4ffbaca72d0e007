package tpm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// maxResponse bounds a response read from the wire. TPM 2.0 responses are
// at most MAX_RESPONSE_SIZE, 4096 bytes on common TPMs (TPM 2.0 Part 2
// §C.2, PC Client platform profile); 64 KiB leaves room for any profile.
const maxResponse = 64 << 10

// DialTCP connects to a TPM that takes raw TPM 2.0 command buffers over
// TCP and answers with raw response buffers: swtpm's `--server type=tcp`
// command port (the tpm2-tools "swtpm" TCTI). It is not the Microsoft
// simulator's framed protocol ("mssim"); go-tpm's transport/tcp speaks that
// one. The connection carries one command at a time.
func DialTCP(ctx context.Context, addr string) (transport.TPMCloser, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tpm: dial %s: %w", addr, err)
	}
	return &tcpTPM{conn: c}, nil
}

type tcpTPM struct {
	mu   sync.Mutex
	conn net.Conn
}

// Send writes one command and reads one response: a TPM response begins
// with tag (2 bytes), responseSize (4 bytes, the whole response) and
// responseCode (4 bytes) (TPM 2.0 Part 1 §18.8).
func (t *tcpTPM) Send(cmd []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm: sending command: %w", err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(t.conn, hdr[:]); err != nil {
		return nil, fmt.Errorf("tpm: reading response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("tpm: untrusted response size %d out of range [10, %d]", size, maxResponse)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(t.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("tpm: reading response: %w", err)
	}
	return rsp, nil
}

func (t *tcpTPM) Close() error { return t.conn.Close() }

// retryTPM resends a command the TPM answered with a warning that asks for
// exactly that: TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING (TPM 2.0
// Part 2 §6.6.3: "the TPM was not able to start the command", "the TPM
// has suspended operation on the command", "TPM is performing self-tests").
// The command is sent unchanged, as the TCG TSS ESAPI does; password
// sessions carry no nonces that a resend would invalidate.
type retryTPM struct {
	tpm transport.TPM
}

const (
	rcYielded = 0x908
	rcTesting = 0x90A
	rcRetry   = 0x922
	maxRetry  = 16
)

func (r retryTPM) Send(cmd []byte) ([]byte, error) {
	for i := 0; ; i++ {
		rsp, err := r.tpm.Send(cmd)
		if err != nil || len(rsp) < 10 || i == maxRetry {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case rcYielded, rcTesting, rcRetry:
			time.Sleep(time.Duration(i+1) * time.Millisecond)
			continue
		}
		return rsp, nil
	}
}
