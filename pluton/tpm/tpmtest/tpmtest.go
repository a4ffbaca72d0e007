// Package tpmtest starts a software TPM 2.0 (swtpm) for tests.
//
// Every call to [Start] runs a fresh swtpm with its own state directory on
// free loopback ports and stops it when the test ends. swtpm has no
// resource manager: a test that leaves transient objects loaded exhausts
// it after three, so code under test must flush what it loads.
package tpmtest

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/rootline/rootline/internal/testdep"
)

// SWTPM is a running swtpm.
type SWTPM struct {
	// Addr is the command port ("127.0.0.1:P"): raw TPM 2.0 command
	// buffers in, response buffers out, one client connection at a time.
	Addr string
	// Port and CtrlPort are the command and control ports.
	Port, CtrlPort int
}

// TCTI returns the tpm2-tools TCTI string for this swtpm, for
// TPM2TOOLS_TCTI or --tcti.
func (s *SWTPM) TCTI() string {
	return fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", s.Port)
}

// Start runs swtpm in socket mode (manufactured, TPM2_Startup(CLEAR) done)
// and returns once its command port accepts connections. A missing swtpm
// skips the test, or fails it under CI=true.
func Start(t testing.TB) *SWTPM {
	t.Helper()
	bin := testdep.LookPath(t, "swtpm")
	var lastErr error
	// Two free ports are picked by binding and releasing them; another
	// process may take one in between, so retry a few times.
	for range 5 {
		port, ctrl, err := freePorts()
		if err != nil {
			t.Fatalf("tpmtest: %v", err)
		}
		s, err := start(t, bin, port, ctrl)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("tpmtest: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, port, ctrl int) (*SWTPM, error) {
	dir := t.TempDir()
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--server", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(port),
		"--ctrl", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(ctrl),
		"--tpmstate", "dir="+dir,
		"--flags", "not-need-init,startup-clear")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting swtpm: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("swtpm exited early: %s", out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("swtpm did not answer on %s: %v: %s", addr, err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(stop)
	return &SWTPM{Addr: addr, Port: port, CtrlPort: ctrl}, nil
}

// freePorts returns two consecutive loopback TCP ports (P, P+1) that were
// free a moment ago: the tpm2-tools "swtpm" TCTI finds the control port at
// the command port + 1.
func freePorts() (int, int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, p + 1, nil
	}
	return 0, 0, fmt.Errorf("no two consecutive free loopback ports")
}
