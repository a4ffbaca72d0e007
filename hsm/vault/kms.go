package vault

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/rootline/rootline/hsm"
)

// KMS is an open connection to Vault's transit engine: it creates keys and
// makes signers of them. It is safe for concurrent use.
type KMS struct {
	client      *api.Client
	loginClient *api.Client // no token: AppRole logins
	transit     string
	approle     *AppRole
	log         *slog.Logger
	timeout     time.Duration

	// loginMu serialises AppRole logins; gen counts them, so that the
	// requests refused with one token trigger one login, not one each.
	loginMu sync.Mutex
	gen     atomic.Uint64
	// ownToken: the token came from an AppRole login, and Close revokes it.
	ownToken bool
	closed   atomic.Bool
}

// Bounds on what is read from files and from Vault.
const (
	maxCACertFile   = 1 << 20 // Config.CACert
	maxSecretIDFile = 4096    // AppRole.SecretIDFile
	maxPublicKey    = 4096    // a public key in a transit key's configuration
	maxSignature    = 1024    // a "vault:vN:..." signature string
	maxMessage      = 1 << 20 // an Ed25519 message (Vault's own bound is 32 MiB)
	maxKeyVersion   = 1 << 31 // a transit key version
)

// Open connects to Vault and logs in: with Config.Token as given, or by
// AppRole. It checks that Vault answers and is unsealed (sys/seal-status),
// so a sealed Vault is [ErrSealed] and a dead one [ErrUnreachable] here
// rather than at the first signature.
func Open(ctx context.Context, cfg *Config) (*KMS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	httpClient, err := newHTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = defaultTimeout
	}
	newClient := func(token string) (*api.Client, error) {
		c, err := api.NewClient(&api.Config{
			Address:    cfg.Address,
			HttpClient: httpClient,
			Timeout:    timeout,
			// No retries: a sealed Vault answers 503, which the client
			// would retry for seconds; callers decide.
			MaxRetries: 0,
		})
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		// api.NewClient reads VAULT_TOKEN, VAULT_NAMESPACE and
		// VAULT_HEADERS from the environment; undo that so only cfg
		// counts.
		c.SetToken(token)
		c.ClearNamespace()
		c.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
		return c, nil
	}
	client, err := newClient(cfg.Token)
	if err != nil {
		return nil, err
	}
	loginClient, err := newClient("")
	if err != nil {
		return nil, err
	}

	k := &KMS{
		client:      client,
		loginClient: loginClient,
		transit:     cfg.TransitMount,
		approle:     cfg.AppRole,
		log:         cfg.Logger,
		timeout:     timeout,
	}
	if k.transit == "" {
		k.transit = defaultTransitMount
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	if err := k.checkSeal(ctx); err != nil {
		return nil, err
	}
	method := "token"
	if k.approle != nil {
		method = "approle"
		if err := k.login(ctx, 0); err != nil {
			return nil, err
		}
		k.ownToken = true
	}
	k.log.Info("vault: connected", "address", cfg.Address, "auth", method, "transit", k.transit)
	return k, nil
}

// newHTTPClient is the client's transport: TLS 1.2 or later, verified
// against cfg.CACert when given, else the system's roots.
func newHTTPClient(cfg *Config) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACert != "" {
		pemBytes, err := readBounded(cfg.CACert, maxCACertFile)
		if err != nil {
			return nil, fmt.Errorf("vault: Config.CACert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("vault: Config.CACert %s holds no PEM certificate", cfg.CACert)
		}
		tc.RootCAs = pool
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tc,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
		// The API client follows Vault's redirects itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// readBounded reads a whole file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		clear(b)
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// checkSeal asks sys/seal-status, which needs no token.
func (k *KMS) checkSeal(ctx context.Context) error {
	st, err := k.client.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return requestError(ctx, "seal status", "sys/seal-status", err, nil)
	}
	if st.Sealed {
		return &Error{Op: "seal status", Path: "sys/seal-status", StatusCode: 200, Kind: ErrSealed}
	}
	return nil
}

// sealed reports whether Vault says it is sealed, for a 503 whose message
// does not. A failure to ask is "no".
func (k *KMS) sealed() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := k.client.Sys().SealStatusWithContext(ctx)
	return err == nil && st.Sealed
}

// login does an AppRole login (auth/<mount>/login with role_id and
// secret_id) unless another one happened since generation gen, and sets
// the token it gives.
func (k *KMS) login(ctx context.Context, gen uint64) error {
	k.loginMu.Lock()
	defer k.loginMu.Unlock()
	if k.gen.Load() != gen {
		return nil // another request logged in already
	}
	mount := k.approle.Mount
	if mount == "" {
		mount = defaultAppRoleMount
	}
	path := "auth/" + mount + "/login"
	secretID, err := readSecretID(k.approle.SecretIDFile, k.log)
	if err != nil {
		return err
	}
	body := map[string]any{"role_id": k.approle.RoleID, "secret_id": string(secretID)}
	clear(secretID)
	// The login request carries no token (the old one may be expired):
	// it goes through a client of its own.
	s, err := k.loginClient.Logical().WriteWithContext(ctx, path, body)
	delete(body, "secret_id")
	if err != nil {
		return requestError(ctx, "login", path, err, k.sealed)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return badResponse(path, "no client token in the login response")
	}
	k.client.SetToken(s.Auth.ClientToken)
	k.gen.Add(1)
	k.log.Info("vault: logged in by AppRole", "mount", mount, "policies", s.Auth.Policies,
		"ttl", time.Duration(s.Auth.LeaseDuration)*time.Second)
	return nil
}

// readSecretID reads an AppRole secret_id file: one line, not writable by
// others (a warning if readable by them).
func readSecretID(path string, log *slog.Logger) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("vault: AppRole secret ID: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("vault: AppRole secret ID: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o002 != 0 {
		return nil, fmt.Errorf("vault: AppRole secret ID: %s is writable by anyone (mode %04o); chmod 600 it", path, perm)
	} else if perm&0o077 != 0 {
		log.Warn("vault: AppRole secret ID file is accessible to group or others; chmod 600 it", "path", path, "mode", fmt.Sprintf("%04o", perm))
	}
	b, err := readBounded(path, maxSecretIDFile)
	if err != nil {
		return nil, fmt.Errorf("vault: AppRole secret ID: %w", err)
	}
	v := bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(v) == 0 || bytes.ContainsAny(v, "\r\n\x00") {
		clear(b)
		return nil, fmt.Errorf("vault: AppRole secret ID: %s is empty or not one line", path)
	}
	out := bytes.Clone(v)
	clear(b)
	return out, nil
}

// do runs one request with the current token. When Vault refuses an
// AppRole token (it expired, or was revoked), it logs in again once and
// retries. A failure is sorted by requestError.
func (k *KMS) do(ctx context.Context, op, path string, req func(context.Context) (*api.Secret, error)) (*api.Secret, error) {
	if k.closed.Load() {
		return nil, ErrClosed
	}
	gen := k.gen.Load()
	s, err := req(ctx)
	if err != nil {
		err = requestError(ctx, op, path, err, k.sealed)
		if k.approle != nil && errors.Is(err, ErrPermission) {
			if lerr := k.login(ctx, gen); lerr != nil {
				return nil, lerr
			}
			if s, err = req(ctx); err != nil {
				err = requestError(ctx, op, path, err, k.sealed)
			}
		}
	}
	return s, err
}

func (k *KMS) read(ctx context.Context, op, path string) (*api.Secret, error) {
	return k.do(ctx, op, path, func(ctx context.Context) (*api.Secret, error) {
		return k.client.Logical().ReadWithContext(ctx, path)
	})
}

func (k *KMS) write(ctx context.Context, op, path string, body map[string]any) (*api.Secret, error) {
	return k.do(ctx, op, path, func(ctx context.Context) (*api.Secret, error) {
		return k.client.Logical().WriteWithContext(ctx, path, body)
	})
}

// Client returns the KMS's Vault API client, logged in and with the TLS
// settings of its Config, for other engines on the same Vault (ca/vaultpki
// takes it). A request made through it that Vault refuses for an expired
// AppRole token does not log in again; the KMS's own requests do, and set
// the new token on this client.
func (k *KMS) Client() *api.Client { return k.client }

// Close revokes the token of an AppRole login (best effort) and makes
// further calls fail with [ErrClosed]. A token given in Config is left
// alone. Signers made by the KMS stop working too.
func (k *KMS) Close() error {
	if k.closed.Swap(true) {
		return nil
	}
	if k.ownToken {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := k.client.Logical().WriteWithContext(ctx, "auth/token/revoke-self", nil); err != nil {
			k.log.Warn("vault: revoking the AppRole token", "err", err)
		}
	}
	k.client.ClearToken()
	return nil
}

// vaultKeyType is the transit key type of an algorithm.
func vaultKeyType(a hsm.Algorithm) (string, bool) {
	switch a {
	case hsm.P256:
		return "ecdsa-p256", true
	case hsm.P384:
		return "ecdsa-p384", true
	case hsm.Ed25519:
		return "ed25519", true
	}
	return "", false
}

func algorithmOf(vaultType string) hsm.Algorithm {
	switch vaultType {
	case "ecdsa-p256":
		return hsm.P256
	case "ecdsa-p384":
		return hsm.P384
	case "ed25519":
		return hsm.Ed25519
	}
	return hsm.AlgorithmUnknown
}

// CreateKey creates a transit key of the algorithm (ecdsa-p256,
// ecdsa-p384 or ed25519), not exportable and without plaintext backup, and
// returns its public key once its attributes are read back and checked and
// a test signature verifies under it. A name a key has already is
// [ErrKeyExists].
//
// Vault's own keys/:name endpoint succeeds on an existing name without
// changing it, so the check is a read before the write: two CreateKey calls
// racing on one name may both succeed, for the one key.
func (k *KMS) CreateKey(ctx context.Context, name string, alg hsm.Algorithm) (crypto.PublicKey, error) {
	if err := validateKeyName(name); err != nil {
		return nil, err
	}
	typ, ok := vaultKeyType(alg)
	if !ok {
		return nil, fmt.Errorf("%w: algorithm %v (want p256, p384 or ed25519)", ErrKeyAttributes, alg)
	}
	path := k.transit + "/keys/" + name
	if _, err := k.Key(ctx, name); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrKeyExists, path)
	} else if !errors.Is(err, ErrKeyNotFound) {
		return nil, err
	}
	_, err := k.write(ctx, "create key", path, map[string]any{
		"type":                   typ,
		"exportable":             false,
		"allow_plaintext_backup": false,
	})
	if err != nil {
		return nil, err
	}
	s, err := k.Signer(ctx, name)
	if err != nil {
		return nil, err
	}
	// The pairwise-consistency test (FIPS 140-3 IG 10.3.A): a signature
	// over a fixed message must verify under the public key read back.
	if err := s.(*signer).selfTest(ctx); err != nil {
		return nil, err
	}
	k.log.Info("vault: created key", "path", path, "type", typ)
	return s.Public(), nil
}

// KeyInfo is what [KMS.Key] reads of a transit key's configuration.
type KeyInfo struct {
	Name      string
	Algorithm hsm.Algorithm
	Type      string // Vault's name of the type, "ecdsa-p256"
	// Exportable and AllowPlaintextBackup as Vault reports them; a key
	// this package signs with has neither.
	Exportable, AllowPlaintextBackup bool
	// LatestVersion is the version new signatures use; Public is its
	// public key.
	LatestVersion int
	Public        crypto.PublicKey
}

// Key reads a transit key's configuration (transit/keys/:name): its type,
// export settings, latest version and that version's public key. A missing
// key is [ErrKeyNotFound]; a key of a type this package does not sign with
// is returned with Algorithm hsm.AlgorithmUnknown and no Public.
func (k *KMS) Key(ctx context.Context, name string) (*KeyInfo, error) {
	if err := validateKeyName(name); err != nil {
		return nil, err
	}
	path := k.transit + "/keys/" + name
	s, err := k.read(ctx, "read key", path)
	if err != nil {
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, &Error{Op: "read key", Path: path, StatusCode: 404, Kind: ErrKeyNotFound}
	}
	return parseKeyInfo(path, name, s.Data)
}

// parseKeyInfo reads the untrusted data of a transit/keys/:name answer.
func parseKeyInfo(path, name string, d map[string]any) (*KeyInfo, error) {
	ki := &KeyInfo{Name: name}
	var ok bool
	if ki.Type, ok = d["type"].(string); !ok {
		return nil, badResponse(path, "no key type")
	}
	if ki.Exportable, ok = d["exportable"].(bool); !ok {
		return nil, badResponse(path, "no exportable flag")
	}
	if ki.AllowPlaintextBackup, ok = d["allow_plaintext_backup"].(bool); !ok {
		return nil, badResponse(path, "no allow_plaintext_backup flag")
	}
	v, err := jsonInt(d["latest_version"])
	if err != nil || v < 1 || v > maxKeyVersion {
		return nil, badResponse(path, "latest_version is not a version number")
	}
	ki.LatestVersion = int(v)
	ki.Algorithm = algorithmOf(ki.Type)
	if ki.Algorithm == hsm.AlgorithmUnknown {
		return ki, nil
	}
	keys, _ := d["keys"].(map[string]any)
	kv, _ := keys[strconv.Itoa(ki.LatestVersion)].(map[string]any)
	pubText, _ := kv["public_key"].(string)
	if pubText == "" {
		return nil, badResponse(path, "no public key for version %d", ki.LatestVersion)
	}
	if ki.Public, err = parsePublicKey(ki.Algorithm, pubText); err != nil {
		return nil, badResponse(path, "version %d: %v", ki.LatestVersion, err)
	}
	return ki, nil
}

// jsonInt reads a JSON number that the API client decoded (json.Number,
// as it decodes with UseNumber, or float64).
func jsonInt(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		return n.Int64()
	case float64:
		if n != float64(int64(n)) {
			return 0, errors.New("not an integer")
		}
		return int64(n), nil
	}
	return 0, fmt.Errorf("%T is not a number", v)
}

// parsePublicKey decodes the untrusted public_key of a transit key
// version: for ECDSA a PEM "PUBLIC KEY" block holding a DER
// SubjectPublicKeyInfo (RFC 5280, 4.1.2.7; RFC 5480), for Ed25519 the
// base64 of the 32-byte RFC 8032 encoding (Vault's transit API, "Read
// Key").
func parsePublicKey(a hsm.Algorithm, s string) (crypto.PublicKey, error) {
	if len(s) > maxPublicKey {
		return nil, fmt.Errorf("public key of %d bytes", len(s))
	}
	switch a {
	case hsm.P256, hsm.P384, hsm.Ed25519:
	default:
		return nil, fmt.Errorf("public key of unsupported algorithm %v", a)
	}
	if strings.ContainsAny(s, "\r\n") && a == hsm.Ed25519 {
		return nil, errors.New("Ed25519 public key holds a line break")
	}
	if a == hsm.Ed25519 {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("Ed25519 public key: %v", err)
		}
		if len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 public key of %d bytes", len(b))
		}
		return ed25519.PublicKey(b), nil
	}
	block, rest := pem.Decode([]byte(s))
	if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("public key is not one PEM PUBLIC KEY block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %v", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	want := elliptic.P256()
	if a == hsm.P384 {
		want = elliptic.P384()
	}
	if !ok || ec.Curve != want {
		return nil, fmt.Errorf("public key is a %T, not ECDSA %s", pub, want.Params().Name)
	}
	return ec, nil
}

// Signer returns a crypto.Signer for a transit key. The signer is bound to
// the key's latest version at this call (transit keys can be rotated: the
// public key and the signatures stay those of this version). The key must
// be ECDSA P-256, P-384 or Ed25519, not exportable and without plaintext
// backup, else [ErrKeyAttributes].
//
// ECDSA signatures are ASN.1 DER over the digest the caller passes (Vault
// signs it as given: prehashed=true); Ed25519 signs the whole message
// (opts.HashFunc() must be 0). The first signature is verified under the
// public key before it is returned (pairwise-consistency test); if it
// fails, that signature and every later one fail with [ErrSelfTest].
// The signer also has SignContext (see [hsm.ContextSigner]); Sign's
// requests are bounded by Config.Timeout.
func (k *KMS) Signer(ctx context.Context, name string) (crypto.Signer, error) {
	ki, err := k.Key(ctx, name)
	if err != nil {
		return nil, err
	}
	path := k.transit + "/keys/" + name
	switch {
	case ki.Algorithm == hsm.AlgorithmUnknown:
		return nil, fmt.Errorf("%w: %s is of type %q; want ecdsa-p256, ecdsa-p384 or ed25519", ErrKeyAttributes, path, clip(ki.Type))
	case ki.Exportable:
		return nil, fmt.Errorf("%w: %s is exportable", ErrKeyAttributes, path)
	case ki.AllowPlaintextBackup:
		return nil, fmt.Errorf("%w: %s allows plaintext backup", ErrKeyAttributes, path)
	}
	return &signer{
		k:       k,
		alg:     ki.Algorithm,
		pub:     ki.Public,
		path:    k.transit + "/sign/" + name,
		version: ki.LatestVersion,
		prefix:  "vault:v" + strconv.Itoa(ki.LatestVersion) + ":",
	}, nil
}
