// Package vaulttest gives tests a real HashiCorp Vault development server
// (`vault server -dev`) on loopback, and helpers to set it up: the transit,
// PKI and AppRole engines, KV secrets, sealing.
//
// The vault binary is found on PATH or in rootline's tool cache, where
// `make deps` builds it (scripts/build-vault.sh); a missing binary skips the
// test, or fails it when CI=true (see internal/testdep). Each server is the
// test's own: its own port, token, home directory and in-memory storage,
// killed when the test ends.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/rootline/rootline/internal/testdep"
)

// Server is a running Vault development server.
type Server struct {
	// Addr is its address, "http://127.0.0.1:PORT" (https for StartTLS).
	Addr string
	// RootToken is the dev server's root token.
	RootToken string
	// CACert is the PEM file of the CA that issued the server's TLS
	// certificate (StartTLS), or "".
	CACert string
	// Client is an API client logged in with RootToken.
	Client *api.Client
	// Dir holds the server's log (vault.log) and home directory.
	Dir string

	stop func()
}

// Start runs a Vault development server over plain http on a free
// loopback port and waits until it is unsealed and active.
func Start(t testing.TB) *Server { return start(t, false) }

// StartTLS runs a Vault development server over https (-dev-tls: Vault
// makes a CA and a certificate for 127.0.0.1 and localhost, and writes the
// CA to Server.CACert).
func StartTLS(t testing.TB) *Server { return start(t, true) }

func start(t testing.TB, useTLS bool) *Server {
	t.Helper()
	bin := testdep.LookPath(t, "vault")
	var last error
	for range 3 { // a free port may be taken before Vault binds it
		s, err := launch(t, bin, useTLS)
		if err == nil {
			return s
		}
		last = err
	}
	t.Fatalf("vaulttest: %v", last)
	return nil
}

func launch(t testing.TB, bin string, useTLS bool) (*Server, error) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	token := "root-" + randomHex(12)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"server", "-dev",
		"-dev-root-token-id=" + token,
		"-dev-listen-address=" + listen,
		"-dev-no-store-token",
		"-log-level=warn",
	}
	s := &Server{Addr: "http://" + listen, RootToken: token, Dir: dir}
	if useTLS {
		certDir := filepath.Join(dir, "tls")
		if err := os.Mkdir(certDir, 0o700); err != nil {
			return nil, err
		}
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certDir)
		s.Addr = "https://" + listen
		s.CACert = filepath.Join(certDir, "vault-ca.pem")
	}
	logPath := filepath.Join(dir, "vault.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env(home)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	if err := s.waitReady(exited); err != nil {
		stop()
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%v\n--- vault.log ---\n%s", err, tail(log, 4000))
	}
	s.stop = stop
	t.Cleanup(stop)
	return s, nil
}

// env is the server's environment: the test's, less VAULT_* settings, with
// its own HOME.
func env(home string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+home)
}

// waitReady polls sys/health until Vault is initialised, unsealed and
// active (200), the process exits, or 60 s pass.
func (s *Server) waitReady(exited <-chan struct{}) error {
	httpClient := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("vault server exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault server not ready after 60 s")
		}
		if s.CACert != "" && httpClient.Transport == nil {
			// -dev-tls writes the CA before it listens.
			if pool, err := loadPool(s.CACert); err == nil {
				httpClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
			}
		}
		if s.CACert == "" || httpClient.Transport != nil {
			resp, err := httpClient.Get(s.Addr + "/v1/sys/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return s.connect(httpClient)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) connect(hc *http.Client) error {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	if s.CACert != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.CACert}); err != nil {
			return err
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	c.SetToken(s.RootToken)
	c.ClearNamespace()
	s.Client = c
	return nil
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate yet", path)
	}
	return pool, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ClosedAddr returns an http address on loopback where nothing listens
// (a port that was free a moment ago), for unreachable-server tests.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", p)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return bytes.TrimSpace(b)
}

// Enable mounts a secrets engine of a type ("transit", "pki", "kv-v2") at
// path.
func (s *Server) Enable(t testing.TB, path, engine string) {
	t.Helper()
	if err := s.Client.Sys().MountWithContext(context.Background(), path, &api.MountInput{Type: engine}); err != nil {
		t.Fatalf("vaulttest: mounting %s at %s: %v", engine, path, err)
	}
}

// EnableTransit mounts the transit engine at "transit".
func (s *Server) EnableTransit(t testing.TB) { t.Helper(); s.Enable(t, "transit", "transit") }

// EnablePKI mounts the PKI engine at path with a maximum lease TTL long
// enough for certificates to 9999-12-31 (Vault caps not_after by it).
func (s *Server) EnablePKI(t testing.TB, path string) {
	t.Helper()
	err := s.Client.Sys().MountWithContext(context.Background(), path, &api.MountInput{
		Type:   "pki",
		Config: api.MountConfigInput{MaxLeaseTTL: "876000h"},
	})
	if err != nil {
		t.Fatalf("vaulttest: mounting pki at %s: %v", path, err)
	}
}

// Write writes data at an API path with the root token.
func (s *Server) Write(t testing.TB, path string, data map[string]any) *api.Secret {
	t.Helper()
	sec, err := s.Client.Logical().WriteWithContext(context.Background(), path, data)
	if err != nil {
		t.Fatalf("vaulttest: writing %s: %v", path, err)
	}
	return sec
}

// Read reads an API path with the root token.
func (s *Server) Read(t testing.TB, path string) *api.Secret {
	t.Helper()
	sec, err := s.Client.Logical().ReadWithContext(context.Background(), path)
	if err != nil {
		t.Fatalf("vaulttest: reading %s: %v", path, err)
	}
	return sec
}

// PutKV writes a secret to the dev server's KV version 2 engine at
// "secret/" (path is relative to it: "factory" is secret/data/factory).
func (s *Server) PutKV(t testing.TB, path string, data map[string]any) {
	t.Helper()
	s.Write(t, "secret/data/"+path, map[string]any{"data": data})
}

// Policy writes an ACL policy.
func (s *Server) Policy(t testing.TB, name, hcl string) {
	t.Helper()
	if err := s.Client.Sys().PutPolicyWithContext(context.Background(), name, hcl); err != nil {
		t.Fatalf("vaulttest: writing policy %s: %v", name, err)
	}
}

// Token creates a token with the policies (and not the default policy's
// parent: no root).
func (s *Server) Token(t testing.TB, policies ...string) string {
	t.Helper()
	sec, err := s.Client.Auth().Token().CreateWithContext(context.Background(), &api.TokenCreateRequest{
		Policies: policies, NoParent: true, TTL: "1h",
	})
	if err != nil {
		t.Fatalf("vaulttest: creating a token: %v", err)
	}
	return sec.Auth.ClientToken
}

// AppRole enables the AppRole auth method at "approle" (once), creates a
// role with the policies, and returns its role_id and the path of a file
// (mode 0600) that holds a new secret_id.
func (s *Server) AppRole(t testing.TB, role string, policies ...string) (roleID, secretIDFile string) {
	t.Helper()
	ctx := context.Background()
	auths, err := s.Client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatalf("vaulttest: listing auth methods: %v", err)
	}
	if _, ok := auths["approle/"]; !ok {
		if err := s.Client.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
			t.Fatalf("vaulttest: enabling approle: %v", err)
		}
	}
	s.Write(t, "auth/approle/role/"+role, map[string]any{
		"token_policies": strings.Join(policies, ","),
		"token_ttl":      "1h",
	})
	sec := s.Read(t, "auth/approle/role/"+role+"/role-id")
	roleID, _ = sec.Data["role_id"].(string)
	sec = s.Write(t, "auth/approle/role/"+role+"/secret-id", nil)
	secretID, _ := sec.Data["secret_id"].(string)
	if roleID == "" || secretID == "" {
		t.Fatal("vaulttest: AppRole gave no role_id or secret_id")
	}
	secretIDFile = filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(secretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return roleID, secretIDFile
}

// Seal seals the server (sys/seal). A dev server stays sealed: its unseal
// key is only in its log.
func (s *Server) Seal(t testing.TB) {
	t.Helper()
	if err := s.Client.Sys().SealWithContext(context.Background()); err != nil {
		t.Fatalf("vaulttest: sealing: %v", err)
	}
}

// Stop kills the server now (it is killed at the test's end anyway), for
// tests of a Vault that went away.
func (s *Server) Stop() { s.stop() }

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "vault.log"))
	return string(b)
}
