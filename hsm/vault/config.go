package vault

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config says how to reach Vault and log in. Exactly one of Token and
// AppRole is set. Nothing is read from the environment (VAULT_ADDR,
// VAULT_TOKEN and the like are ignored): the caller passes what it means.
type Config struct {
	// Address of Vault, "https://vault.example:8200". Plain http is
	// accepted only for a loopback address (a development server).
	Address string
	// Token authenticates every request. It is never logged.
	Token string
	// AppRole logs in with the AppRole auth method instead of a token;
	// the token it gives is renewed by logging in again when Vault
	// refuses it.
	AppRole *AppRole
	// TransitMount is the path of the transit secrets engine. Default:
	// "transit".
	TransitMount string
	// CACert is a PEM file of the CA certificates that vouch for Vault's
	// TLS certificate. Empty: the system's roots.
	CACert string
	// Timeout bounds each request to Vault. Default: 30 s.
	Timeout time.Duration
	// Logger receives connection, login and key events (never a token, a
	// secret ID or a PIN). Default: discard.
	Logger *slog.Logger
}

// AppRole are the credentials of an AppRole login (Vault's auth/approle).
type AppRole struct {
	// RoleID is the role's role_id. It is not a secret on its own.
	RoleID string
	// SecretIDFile is the path of a file that holds the secret_id (one
	// line), readable only by its owner: a file that others may write is
	// refused. It is read at each login.
	SecretIDFile string
	// Mount is the auth method's path. Default: "approle".
	Mount string
}

// Defaults.
const (
	defaultTransitMount = "transit"
	defaultAppRoleMount = "approle"
	defaultTimeout      = 30 * time.Second
)

// Bounds on configuration and names.
const (
	maxNameLen  = 128  // a transit key name, a KV field
	maxPathLen  = 512  // a mount or KV path
	maxTokenLen = 4096 // a Vault token (batch tokens are long)
)

// Validate reports whether the configuration is usable.
func (c *Config) Validate() error {
	if c == nil {
		return errors.New("vault: nil Config")
	}
	if err := validateAddress(c.Address); err != nil {
		return err
	}
	switch {
	case c.Token != "" && c.AppRole != nil:
		return errors.New("vault: Config sets both Token and AppRole; set one")
	case c.Token == "" && c.AppRole == nil:
		return errors.New("vault: Config sets neither Token nor AppRole")
	case len(c.Token) > maxTokenLen:
		return fmt.Errorf("vault: Config.Token is longer than %d bytes", maxTokenLen)
	case strings.ContainsFunc(c.Token, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return errors.New("vault: Config.Token holds spaces or control characters")
	}
	if a := c.AppRole; a != nil {
		if a.RoleID == "" || len(a.RoleID) > maxNameLen*2 {
			return fmt.Errorf("vault: Config.AppRole.RoleID must be 1 to %d bytes", maxNameLen*2)
		}
		if a.SecretIDFile == "" {
			return errors.New("vault: Config.AppRole.SecretIDFile is empty")
		}
		if a.Mount != "" {
			if err := validatePath("Config.AppRole.Mount", a.Mount); err != nil {
				return err
			}
		}
	}
	if c.TransitMount != "" {
		if err := validatePath("Config.TransitMount", c.TransitMount); err != nil {
			return err
		}
	}
	if c.Timeout < 0 {
		return errors.New("vault: Config.Timeout is negative")
	}
	return nil
}

// validateAddress takes https URLs, and http ones only to a loopback
// address, with no path, query, fragment or user information.
func validateAddress(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("vault: Config.Address: %v", err)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("vault: Config.Address %q is not scheme://host[:port]", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("vault: Config.Address %q: plain http is refused except on loopback; use https", s)
	}
	return fmt.Errorf("vault: Config.Address %q: scheme must be https (or http on loopback)", s)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validatePath checks a Vault API path given in configuration: segments of
// letters, digits and "_-.@", no empty, "." or ".." segment, no leading or
// trailing slash. It keeps a mount or secret path from reaching another
// part of the API ("../sys/seal").
func validatePath(what, p string) error {
	if p == "" || len(p) > maxPathLen {
		return fmt.Errorf("vault: %s must be 1 to %d bytes", what, maxPathLen)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("vault: %s %q has an empty, \".\" or \"..\" segment", what, clip(p))
		}
		for _, c := range []byte(seg) {
			if !isNameChar(c) {
				return fmt.Errorf("vault: %s %q holds %q; segments take letters, digits and _-.@", what, clip(p), c)
			}
		}
	}
	return nil
}

// validateKeyName checks a transit key name against Vault's
// framework.GenericNameRegex, \w(([\w-.@]+)?\w)?, with a length bound.
func validateKeyName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("vault: key name must be 1 to %d bytes", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isNameChar(c) || (i == 0 || i == len(name)-1) && !isWordChar(c) {
			return fmt.Errorf("vault: key name %q: letters, digits and _ at both ends, -.@ also inside", clip(name))
		}
	}
	return nil
}

func isWordChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

func isNameChar(c byte) bool { return isWordChar(c) || c == '-' || c == '.' || c == '@' }

// clip bounds untrusted text quoted in an error message.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
