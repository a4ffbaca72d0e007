// Package stepcatest runs a throwaway step-ca server for tests: under a
// given root (rootline's, from ca.NewRoot), with an intermediate that root
// signs, one JWK provisioner per rootline profile using the templates of
// package stepca, a bbolt database (for revocation) and CRLs.
//
// It needs the step-ca binary (github.com/smallstep/certificates v0.30.2,
// built by `make deps` into rootline's tool cache); without it the test
// is skipped, or fails under CI (see internal/testdep).
package stepcatest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/stepca"
	"github.com/rootline/rootline/internal/testdep"
)

// Server is a running step-ca.
type Server struct {
	// URL is "https://127.0.0.1:PORT".
	URL string
	// CRLURL is "http://127.0.0.1:PORT2/1.0/crl": step-ca's CRL on its
	// insecureAddress, and the distribution point its CRLs name.
	CRLURL string
	// Root is the root it runs under; Intermediate is its issuing CA.
	Root, Intermediate *x509.Certificate
	// Key and KeyID are the provisioners' JWK key.
	Key   crypto.Signer
	KeyID string
	// Dir holds ca.json, the certificates, the templates and the
	// database; Log is step-ca's output.
	Dir, Log string

	cmd  *exec.Cmd
	done chan struct{}
}

// Options change what Start sets up. nil works.
type Options struct {
	// Organization of the intermediate's subject.
	Organization string
}

// Start sets up and starts step-ca under root (signed by rootKey, which
// signs step-ca's intermediate here and nowhere else), waits until its
// /health answers, and stops it when the test ends.
func Start(t testing.TB, root *x509.Certificate, rootKey crypto.Signer, opts *Options) *Server {
	t.Helper()
	bin := testdep.LookPath(t, "step-ca")
	if opts == nil {
		opts = &Options{}
	}
	dir := t.TempDir()
	s := &Server{Root: root, Dir: dir, Log: filepath.Join(dir, "step-ca.log")}

	// The intermediate: a software key, as step-ca without cgo has no
	// PKCS#11 (the local backend keeps its keys in the HSM).
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.Intermediate, err = ca.NewIntermediate(t.Context(), root, rootKey, interKey.Public(),
		pkix.Name{Organization: nonEmpty(opts.Organization), CommonName: "step-ca Issuing CA"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(interKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootPath := write("root.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}))
	crtPath := write("intermediate.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Intermediate.Raw}))
	keyPath := write("intermediate.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))

	provKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, kid, err := stepca.JWK(provKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	s.Key, s.KeyID = provKey, kid

	var provisioners []any
	for _, p := range []ca.Profile{ca.ProfileIDevID, ca.ProfileOperational, ca.ProfileStation} {
		tpl, err := stepca.Template(p)
		if err != nil {
			t.Fatal(err)
		}
		maxDur := "168h"
		switch p {
		case ca.ProfileIDevID:
			// notAfter 99991231235959Z: step-ca measures a lifetime as a
			// time.Duration, which saturates at about 292 years, and
			// allows max + backdate (1 minute). So max is the largest
			// Duration less one minute.
			maxDur = "2562047h46m16.854775807s"
		case ca.ProfileStation:
			maxDur = "9528h" // 397 days
		}
		provisioners = append(provisioners, map[string]any{
			"type": "JWK",
			"name": stepca.ProvisionerName(p),
			"key":  json.RawMessage(jwk),
			"claims": map[string]any{
				"minTLSCertDuration":         "5m",
				"defaultTLSCertDuration":     "24h",
				"maxTLSCertDuration":         maxDur,
				"disableRenewal":             true,
				"disableSmallstepExtensions": true,
			},
			"options": map[string]any{
				"x509": map[string]any{"templateFile": write(string(p)+".tpl", []byte(tpl))},
			},
		})
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		port2, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.URL = "https://127.0.0.1:" + strconv.Itoa(port)
		s.CRLURL = "http://127.0.0.1:" + strconv.Itoa(port2) + "/1.0/crl"
		cfg := map[string]any{
			"root":            rootPath,
			"federatedRoots":  nil,
			"crt":             crtPath,
			"key":             keyPath,
			"address":         "127.0.0.1:" + strconv.Itoa(port),
			"insecureAddress": "127.0.0.1:" + strconv.Itoa(port2),
			"dnsNames":        []string{"127.0.0.1"},
			"logger":          map[string]any{"format": "text"},
			"db":              map[string]any{"type": "bbolt", "dataSource": filepath.Join(dir, "db")},
			"crl":             map[string]any{"enabled": true, "generateOnRevoke": true, "cacheDuration": "24h", "idpURL": s.CRLURL},
			"authority":       map[string]any{"provisioners": provisioners},
			"tls": map[string]any{
				"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": false,
				"cipherSuites": []string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
			},
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		caJSON := write("ca.json", b)
		if lastErr = s.start(t, bin, caJSON); lastErr == nil {
			return s
		}
	}
	t.Fatalf("stepcatest: step-ca did not start: %v\n%s", lastErr, s.output())
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// output returns step-ca's log.
func (s *Server) output() string {
	b, _ := os.ReadFile(s.Log)
	return string(b)
}

// start runs step-ca and waits for /health.
func (s *Server) start(t testing.TB, bin, caJSON string) error {
	log, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, caJSON)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "STEPPATH="+s.Dir, "HOME="+s.Dir)
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		log.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	pool := x509.NewCertPool()
	pool.AddCert(s.Root)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("step-ca exited: %v", cmd.ProcessState)
		default:
		}
		resp, err := hc.Get(s.URL + "/health")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Cleanup(s.Stop)
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("step-ca did not answer /health within 30 s")
}

var stopMu sync.Mutex

// Stop stops step-ca (SIGTERM, then SIGKILL after 10 s). Start arranges
// it at cleanup; tests may call it earlier to see a backend go away.
func (s *Server) Stop() {
	stopMu.Lock()
	defer stopMu.Unlock()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Client returns a stepca.Client for the server, for products.
func (s *Server) Client(t testing.TB, products ca.Products, cfg *stepca.Config) *stepca.Client {
	t.Helper()
	c := stepca.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.URL, c.Root, c.Products, c.Key, c.KeyID = s.URL, s.Root, products, s.Key, s.KeyID
	if c.CRLDistributionPoint == "" {
		c.CRLDistributionPoint = s.CRLURL
	}
	cl, err := stepca.New(&c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}
