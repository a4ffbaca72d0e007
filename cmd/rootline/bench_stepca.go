package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/stepca"
	"github.com/rootline/rootline/pluton/dice"
)

// findStepCA returns the step-ca binary on PATH or in rootline's tool
// cache ($XDG_CACHE_HOME/rootline/bin, where `make deps` builds it), or ""
// if there is none.
func findStepCA() string {
	if p, err := exec.LookPath("step-ca"); err == nil {
		return p
	}
	if dir, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(dir, "rootline", "bin", "step-ca")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// stepCAServer is a step-ca process the bench started.
type stepCAServer struct {
	url  string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// stop interrupts step-ca and waits for it, killing it after 10 s.
func (s *stepCAServer) stop() {
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

// startStepCA sets up step-ca in dir as ca/stepca/stepcatest does (an
// intermediate with a software key that root signs, a JWK provisioner for
// the IDevID profile with package stepca's template, a bbolt database) but
// without CRLs, starts bin on 127.0.0.1 and waits until /health answers.
// It returns the server and the provisioner's key and key ID.
func startStepCA(ctx context.Context, bin, dir string, root *x509.Certificate, rootKey crypto.Signer, org string) (*stepCAServer, crypto.Signer, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, "", err
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	inter, err := ca.NewIntermediate(ctx, root, rootKey, interKey.Public(),
		pkix.Name{Organization: []string{org}, CommonName: "step-ca Issuing CA"}, nil)
	if err != nil {
		return nil, nil, "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(interKey)
	if err != nil {
		return nil, nil, "", err
	}
	var werr error
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil && werr == nil {
			werr = err
		}
		return p
	}
	rootPath := write("root.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}))
	crtPath := write("intermediate.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw}))
	keyPath := write("intermediate.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	clear(keyDER)
	provKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	jwk, kid, err := stepca.JWK(provKey.Public())
	if err != nil {
		return nil, nil, "", err
	}
	tpl, err := stepca.Template(ca.ProfileIDevID)
	if err != nil {
		return nil, nil, "", err
	}
	tplPath := write("idevid.tpl", []byte(tpl))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := map[string]any{
		"root":     rootPath,
		"crt":      crtPath,
		"key":      keyPath,
		"address":  "127.0.0.1:" + strconv.Itoa(port),
		"dnsNames": []string{"127.0.0.1"},
		"logger":   map[string]any{"format": "text"},
		"db":       map[string]any{"type": "bbolt", "dataSource": filepath.Join(dir, "db")},
		"authority": map[string]any{"provisioners": []any{map[string]any{
			"type": "JWK",
			"name": stepca.ProvisionerName(ca.ProfileIDevID),
			"key":  json.RawMessage(jwk),
			"claims": map[string]any{
				"minTLSCertDuration":     "5m",
				"defaultTLSCertDuration": "24h",
				// notAfter 99991231235959Z: the largest Duration less
				// step-ca's one-minute backdate (see stepcatest).
				"maxTLSCertDuration":         "2562047h46m16.854775807s",
				"disableRenewal":             true,
				"disableSmallstepExtensions": true,
			},
			"options": map[string]any{"x509": map[string]any{"templateFile": tplPath}},
		}}},
		"tls": map[string]any{
			"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": false,
			"cipherSuites": []string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, nil, "", err
	}
	caJSON := write("ca.json", b)
	if werr != nil {
		return nil, nil, "", werr
	}
	s := &stepCAServer{url: "https://127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(dir, "step-ca.log"), done: make(chan struct{})}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, "", err
	}
	s.cmd = exec.Command(bin, caJSON)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = append(os.Environ(), "STEPPATH="+dir, "HOME="+dir)
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, "", fmt.Errorf("bench: step-ca: %w", err)
	}
	go func() {
		s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	pool := x509.NewCertPool()
	pool.AddCert(root)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-s.done:
			out, _ := os.ReadFile(s.log)
			return nil, nil, "", fmt.Errorf("bench: step-ca exited (%v):\n%s", s.cmd.ProcessState, out)
		case <-ctx.Done():
			s.stop()
			return nil, nil, "", ctx.Err()
		default:
		}
		resp, err := hc.Get(s.url + "/health")
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, provKey, kid, nil
			}
		}
	}
	s.stop()
	return nil, nil, "", errors.New("bench: step-ca did not answer /health within 30 s")
}

// stepCABenchResult is what runStepCABench measured.
type stepCABenchResult struct {
	Elapsed   time.Duration
	Latencies []time.Duration // sorted
}

// runStepCABench has clients issue one IDevID each for n requests
// equivalent to a chip's (a P-256 key, a 17-byte UEID, a DICE TcbInfo
// extension), made before the clock starts, clients at a time.
func runStepCABench(ctx context.Context, client *stepca.Client, n, clients int, prog io.Writer) (*stepCABenchResult, error) {
	tcb, err := (&dice.TcbInfo{Vendor: "rootline", Model: "sku-a", Version: "1.0.0", SVN: 1, HasSVN: true,
		FWIDs: []dice.FWID{{Hash: crypto.SHA256, Digest: func() []byte { d := sha256.Sum256([]byte("factory test")); return d[:] }()}}}).Marshal()
	if err != nil {
		return nil, err
	}
	reqs := make([]*ca.IssueRequest, n)
	p := newProgress(prog, "preparing CSRs    ", n)
	for i := range reqs {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			ExtraExtensions: []pkix.Extension{{Id: ca.OIDDiceTcbInfo, Value: tcb}}}, k)
		if err != nil {
			return nil, err
		}
		ueid := make([]byte, 17)
		ueid[0] = 0x01 // RAND type (RFC 9711, section 4.2.1)
		if _, err := rand.Read(ueid[1:]); err != nil {
			return nil, err
		}
		reqs[i] = &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: "sku-a", UEID: ueid, CSR: csr}
		p.add()
	}
	p.done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := &stepCABenchResult{Latencies: make([]time.Duration, n)}
	errs := make([]error, clients)
	var next atomic.Int64
	var wg sync.WaitGroup
	p = newProgress(prog, "step-ca issuing   ", n)
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t := time.Now()
				_, err := client.Issue(ctx, reqs[i])
				res.Latencies[i] = time.Since(t)
				if err != nil {
					errs[c] = fmt.Errorf("bench: step-ca, request %d: %w", i+1, err)
					cancel()
					return
				}
				p.add()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	p.done()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.Sort(res.Latencies)
	return res, nil
}
