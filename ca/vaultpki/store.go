package vaultpki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/rootline/rootline/ca"
)

// Store keeps a CA's state in Vault's KV engine (version 2): the root and
// issuing-CA certificates with the names of their transit keys, and the
// revocations with the CRL numbers. Several replicas of a service share it;
// every update is a check-and-set on the secret's version (KV v2, "cas"),
// so concurrent updates neither lose nor duplicate anything. It implements
// [ca.RevocationStore]. It is safe for concurrent use.
//
// Layout, under Mount/data/Prefix:
//
//	root              {"certificate": PEM}
//	issuers/NAME      {"certificate": PEM, "key": transit key name, "hwType": "1.3.6..."}
//	revocations       {"state": JSON of the revocations and CRL numbers}
type Store struct {
	client *api.Client
	mount  string
	prefix string
}

var _ ca.RevocationStore = (*Store)(nil)

// Bounds on what is read from Vault.
const (
	maxStateSize  = 16 << 20 // the revocations document
	maxRevoked    = 100000   // revocations in it
	maxCertPEM    = 64 << 10 // a certificate record
	maxIssuers    = 1024     // issuing CAs listed
	maxCASRetries = 32       // check-and-set attempts of one update
)

// NewStore returns the store at mount (a KV version 2 engine, "secret"
// by default) under prefix ("rootline/ca" by default). client must be
// logged in with a token that may read, list and write there.
func NewStore(client *api.Client, mount, prefix string) (*Store, error) {
	if client == nil {
		return nil, errors.New("vaultpki: nil Vault client")
	}
	if mount == "" {
		mount = "secret"
	}
	if prefix == "" {
		prefix = "rootline/ca"
	}
	if err := checkPath("KV mount", mount); err != nil {
		return nil, err
	}
	if err := checkPath("KV prefix", prefix); err != nil {
		return nil, err
	}
	return &Store{client: client, mount: mount, prefix: prefix}, nil
}

func (s *Store) dataPath(p string) string { return s.mount + "/data/" + s.prefix + "/" + p }

// kvSecret is a KV v2 secret as read: its fields (nil when it does not
// exist or its current version is deleted) and its current version (0
// when it does not exist).
type kvSecret struct {
	data    map[string]any
	version int64
}

// get reads a secret (KV v2, "Read Secret Version").
func (s *Store) get(ctx context.Context, p string) (*kvSecret, error) {
	path := s.dataPath(p)
	sec, err := s.client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, vaultError(ctx, "read", path, err)
	}
	if sec == nil || sec.Data == nil {
		return &kvSecret{}, nil
	}
	out := &kvSecret{}
	if md, ok := sec.Data["metadata"].(map[string]any); ok {
		v, err := jsonInt(md["version"])
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%w: %s: metadata has no version", ca.ErrRevocationStore, path)
		}
		out.version = v
	} else {
		return nil, fmt.Errorf("%w: %s is not a KV version 2 secret", ca.ErrRevocationStore, path)
	}
	out.data, _ = sec.Data["data"].(map[string]any)
	return out, nil
}

// errCASMismatch: another writer changed the secret since it was read.
var errCASMismatch = errors.New("vaultpki: check-and-set mismatch")

// put writes a secret if its current version is still version (0: if it
// does not exist).
func (s *Store) put(ctx context.Context, p string, version int64, data map[string]any) error {
	path := s.dataPath(p)
	_, err := s.client.Logical().WriteWithContext(ctx, path, map[string]any{
		"options": map[string]any{"cas": version},
		"data":    data,
	})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest &&
			strings.Contains(strings.Join(re.Errors, " "), "check-and-set") {
			return errCASMismatch
		}
		return vaultError(ctx, "write", path, err)
	}
	return nil
}

// update reads the secret at p, lets change make its new content from the
// current one (nil if none), and writes it with check-and-set, again from
// the read if another writer came first. change may return an error to
// write nothing.
func (s *Store) update(ctx context.Context, p string, change func(cur map[string]any) (map[string]any, error)) error {
	for range maxCASRetries {
		cur, err := s.get(ctx, p)
		if err != nil {
			return err
		}
		next, err := change(cur.data)
		if err != nil {
			return err
		}
		err = s.put(ctx, p, cur.version, next)
		if err != errCASMismatch {
			return err
		}
	}
	return fmt.Errorf("%w: %s: %d check-and-set conflicts in a row", ca.ErrRevocationStore, s.dataPath(p), maxCASRetries)
}

// PutRoot records the root certificate. Recording the same root again does
// nothing; another root is refused.
func (s *Store) PutRoot(ctx context.Context, root *x509.Certificate) error {
	if root == nil || !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return fmt.Errorf("%w: the root is not a self-signed CA certificate", ca.ErrInvalidCA)
	}
	return s.update(ctx, "root", func(cur map[string]any) (map[string]any, error) {
		if cur != nil {
			have, err := certField(cur, "certificate")
			if err != nil {
				return nil, err
			}
			if !have.Equal(root) {
				return nil, fmt.Errorf("%w: the store holds another root (%s)", ca.ErrInvalidCA, have.Subject)
			}
		}
		return map[string]any{"certificate": string(pemCert(root))}, nil
	})
}

// Root returns the recorded root certificate.
func (s *Store) Root(ctx context.Context) (*x509.Certificate, error) {
	sec, err := s.get(ctx, "root")
	if err != nil {
		return nil, err
	}
	if sec.data == nil {
		return nil, fmt.Errorf("%w: no root in %s", ca.ErrInvalidCA, s.dataPath("root"))
	}
	return certField(sec.data, "certificate")
}

// IssuerRecord is an issuing CA as the store keeps it.
type IssuerRecord struct {
	// Name is a product's name, or ca.StationsIssuer.
	Name        string
	Certificate *x509.Certificate
	// Key names the issuing CA's key in the key store (the transit key).
	Key string
	// HWType is the product's hardware type; none for the stations' CA.
	HWType asn1.ObjectIdentifier
}

// PutIssuer records an issuing CA. A name that is recorded already is
// refused (a CA is never replaced in place: revoke and install another).
// Its certificate must be a CA certificate that the recorded root signed.
func (s *Store) PutIssuer(ctx context.Context, rec *IssuerRecord) error {
	if rec == nil || rec.Certificate == nil {
		return fmt.Errorf("%w: no issuing CA certificate", ca.ErrInvalidCA)
	}
	if err := checkName(rec.Name); err != nil {
		return err
	}
	if err := checkKeyName(rec.Key); err != nil {
		return err
	}
	if (rec.Name == ca.StationsIssuer) != (len(rec.HWType) == 0) {
		return fmt.Errorf("%w: %s: a product has an hwType, the stations' CA none", ca.ErrInvalidCA, rec.Name)
	}
	root, err := s.Root(ctx)
	if err != nil {
		return err
	}
	if !rec.Certificate.IsCA || rec.Certificate.CheckSignatureFrom(root) != nil {
		return fmt.Errorf("%w: %s: not a CA certificate signed by the recorded root", ca.ErrInvalidCA, rec.Name)
	}
	data := map[string]any{"certificate": string(pemCert(rec.Certificate)), "key": rec.Key}
	if len(rec.HWType) != 0 {
		data["hwType"] = rec.HWType.String()
	}
	return s.update(ctx, "issuers/"+rec.Name, func(cur map[string]any) (map[string]any, error) {
		if cur != nil {
			return nil, fmt.Errorf("%w: issuing CA %s is recorded already", ca.ErrInvalidCA, rec.Name)
		}
		return data, nil
	})
}

// Issuers returns the recorded issuing CAs, sorted by name.
func (s *Store) Issuers(ctx context.Context) ([]*IssuerRecord, error) {
	path := s.mount + "/metadata/" + s.prefix + "/issuers"
	sec, err := s.client.Logical().ListWithContext(ctx, path)
	if err != nil {
		return nil, vaultError(ctx, "list", path, err)
	}
	var names []string
	if sec != nil && sec.Data != nil {
		keys, _ := sec.Data["keys"].([]any)
		if len(keys) > maxIssuers {
			return nil, fmt.Errorf("%w: %s lists %d issuing CAs, at most %d", ca.ErrInvalidCA, path, len(keys), maxIssuers)
		}
		for _, k := range keys {
			n, _ := k.(string)
			if strings.HasSuffix(n, "/") {
				continue // a folder: not written by this package
			}
			if err := checkName(n); err != nil {
				return nil, err
			}
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := make([]*IssuerRecord, 0, len(names))
	for _, n := range names {
		sec, err := s.get(ctx, "issuers/"+n)
		if err != nil {
			return nil, err
		}
		if sec.data == nil {
			continue // deleted
		}
		rec := &IssuerRecord{Name: n}
		if rec.Certificate, err = certField(sec.data, "certificate"); err != nil {
			return nil, err
		}
		rec.Key, _ = sec.data["key"].(string)
		if err := checkKeyName(rec.Key); err != nil {
			return nil, fmt.Errorf("%w: issuing CA %s: %v", ca.ErrInvalidCA, n, err)
		}
		if hw, _ := sec.data["hwType"].(string); hw != "" {
			if rec.HWType, err = parseOID(hw); err != nil {
				return nil, fmt.Errorf("%w: issuing CA %s: hwType: %v", ca.ErrInvalidCA, n, err)
			}
		}
		out = append(out, rec)
	}
	return out, nil
}

// certField parses the one PEM certificate in an untrusted field.
func certField(d map[string]any, field string) (*x509.Certificate, error) {
	text, _ := d[field].(string)
	if text == "" || len(text) > maxCertPEM {
		return nil, fmt.Errorf("%w: no certificate, or one over %d bytes", ca.ErrInvalidCA, maxCertPEM)
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: the %s field is not one PEM certificate", ca.ErrInvalidCA, field)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ca.ErrInvalidCA, err)
	}
	return c, nil
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// parseOID parses a dotted OID of at most 32 arcs, each fitting an int.
func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 32 {
		return nil, fmt.Errorf("%q is not a dotted OID", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 31)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		oid[i] = int(n)
	}
	if oid[0] > 2 || oid[0] < 2 && oid[1] > 39 {
		return nil, fmt.Errorf("%q is not a dotted OID", s)
	}
	return oid, nil
}

// The revocations document. Serial numbers are written as ca.Hex writes
// them.
type state struct {
	Version    int               `json:"version"`
	Revoked    []revokedEntry    `json:"revoked"`
	CRLNumbers map[string]uint64 `json:"crlNumbers"`
}

type revokedEntry struct {
	Serial string    `json:"serial"`
	Reason int       `json:"reason"`
	Time   time.Time `json:"time"`
}

const stateVersion = 1

// parseState reads the untrusted revocations document: version 1, at
// most maxRevoked entries, each a valid serial number (ca.ParseHex) with
// a reason ca.CheckReason accepts, no serial twice, CRL numbers of issuer
// names, below 2^63.
func parseState(text string) (*state, error) {
	if len(text) > maxStateSize {
		return nil, fmt.Errorf("revocations document of %d bytes, at most %d", len(text), maxStateSize)
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	var st state
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("revocations document: %v", err)
	}
	if dec.More() {
		return nil, errors.New("revocations document: data after the JSON object")
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("revocations document version %d, want %d", st.Version, stateVersion)
	}
	if len(st.Revoked) > maxRevoked {
		return nil, fmt.Errorf("%d revocations, at most %d", len(st.Revoked), maxRevoked)
	}
	seen := make(map[string]bool, len(st.Revoked))
	for i, r := range st.Revoked {
		n, err := ca.ParseHex(r.Serial)
		if err != nil {
			return nil, fmt.Errorf("revocation %d: %v", i, err)
		}
		if ca.Hex(n) != r.Serial {
			return nil, fmt.Errorf("revocation %d: serial %q is not in canonical form", i, r.Serial)
		}
		if seen[r.Serial] {
			return nil, fmt.Errorf("serial %s revoked twice", r.Serial)
		}
		seen[r.Serial] = true
		if err := ca.CheckReason(r.Reason); err != nil {
			return nil, fmt.Errorf("revocation %d: %v", i, err)
		}
		if r.Time.IsZero() {
			return nil, fmt.Errorf("revocation %d: no time", i)
		}
		if _, err := r.Time.MarshalJSON(); err != nil {
			return nil, fmt.Errorf("revocation %d: time: %v", i, err)
		}
	}
	for name, n := range st.CRLNumbers {
		if checkName(name) != nil || n == 0 || n >= 1<<63 {
			return nil, fmt.Errorf("CRL number %d of %q", n, name)
		}
	}
	if st.CRLNumbers == nil {
		st.CRLNumbers = map[string]uint64{}
	}
	return &st, nil
}

func (st *state) marshal() (map[string]any, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ca.ErrRevocationStore, err)
	}
	return map[string]any{"state": string(b)}, nil
}

// readState reads the revocations document out of a secret's fields.
func (s *Store) readState(cur map[string]any) (*state, error) {
	if cur == nil {
		return &state{Version: stateVersion, CRLNumbers: map[string]uint64{}}, nil
	}
	text, _ := cur["state"].(string)
	st, err := parseState(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ca.ErrRevocationStore, s.dataPath("revocations"), err)
	}
	return st, nil
}

// Revoke implements [ca.RevocationStore].
func (s *Store) Revoke(ctx context.Context, r ca.Revocation) error {
	if _, err := ca.ParseHex(ca.Hex(r.Serial)); err != nil {
		return err
	}
	if err := ca.CheckReason(r.Reason); err != nil {
		return err
	}
	serial := ca.Hex(r.Serial)
	return s.update(ctx, "revocations", func(cur map[string]any) (map[string]any, error) {
		st, err := s.readState(cur)
		if err != nil {
			return nil, err
		}
		for _, e := range st.Revoked {
			if e.Serial == serial {
				return nil, fmt.Errorf("%w: serial %s", ca.ErrAlreadyRevoked, serial)
			}
		}
		if len(st.Revoked) >= maxRevoked {
			return nil, fmt.Errorf("%w: %d revocations already, at most %d", ca.ErrRevocationStore, len(st.Revoked), maxRevoked)
		}
		st.Revoked = append(st.Revoked, revokedEntry{Serial: serial, Reason: r.Reason, Time: r.Time.UTC().Truncate(time.Second)})
		return st.marshal()
	})
}

// Revoked implements [ca.RevocationStore].
func (s *Store) Revoked(ctx context.Context) ([]ca.Revocation, error) {
	sec, err := s.get(ctx, "revocations")
	if err != nil {
		return nil, err
	}
	st, err := s.readState(sec.data)
	if err != nil {
		return nil, err
	}
	out := make([]ca.Revocation, len(st.Revoked))
	for i, e := range st.Revoked {
		n, _ := ca.ParseHex(e.Serial) // parseState checked it
		out[i] = ca.Revocation{Serial: n, Reason: e.Reason, Time: e.Time}
	}
	return out, nil
}

// NextCRLNumber implements [ca.RevocationStore].
func (s *Store) NextCRLNumber(ctx context.Context, issuer string) (*big.Int, error) {
	if err := checkName(issuer); err != nil {
		return nil, err
	}
	var n uint64
	err := s.update(ctx, "revocations", func(cur map[string]any) (map[string]any, error) {
		st, err := s.readState(cur)
		if err != nil {
			return nil, err
		}
		n = st.CRLNumbers[issuer] + 1
		if n >= 1<<63 {
			return nil, fmt.Errorf("%w: CRL numbers of %s are spent", ca.ErrRevocationStore, issuer)
		}
		st.CRLNumbers[issuer] = n
		return st.marshal()
	})
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetUint64(n), nil
}

// jsonInt reads a JSON number the API client decoded (json.Number).
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
