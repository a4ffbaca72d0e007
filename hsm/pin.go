package hsm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// PINSource gives the PIN of a token's user. It is asked each time the
// Module logs in (at Open, and again when the token forgot the login), so a
// rotated PIN is picked up and the PIN is not kept in memory in between.
//
// PIN returns a new slice that the caller owns and wipes with clear once
// used. A failure wraps [ErrPINSource], and never quotes the PIN or any
// part of the secret's contents.
type PINSource interface {
	PIN(ctx context.Context) ([]byte, error)
}

// maxPINLen bounds a PIN read from any source. PKCS#11 does not fix a
// maximum; tokens report theirs in CK_TOKEN_INFO.ulMaxPinLen (SoftHSM2:
// 255).
const maxPINLen = 256

// FilePIN reads the PIN from a file: the whole file, less one trailing
// line ending ("\n" or "\r\n"). A file of more than one line, an empty PIN,
// a file that is not a regular file, or one that others may write is
// refused; a file that others may read is used with a warning.
type FilePIN struct {
	Path   string
	Logger *slog.Logger // receives the permission warning; nil: none
}

// PIN implements [PINSource].
func (f *FilePIN) PIN(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPINSource, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPINSource, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrPINSource, f.Path)
	}
	if perm := fi.Mode().Perm(); perm&0o002 != 0 {
		return nil, fmt.Errorf("%w: %s is writable by anyone (mode %04o); chmod 600 it", ErrPINSource, f.Path, perm)
	} else if perm&0o077 != 0 && f.Logger != nil {
		f.Logger.Warn("hsm: PIN file is accessible to group or others; chmod 600 it", "path", f.Path, "mode", fmt.Sprintf("%04o", perm))
	}
	// Read at most maxPINLen plus a line ending, and one byte more to
	// detect a longer file.
	buf := make([]byte, maxPINLen+3)
	n, err := io.ReadFull(fh, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		clear(buf)
		return nil, fmt.Errorf("%w: %s: %v", ErrPINSource, f.Path, err)
	}
	pin, err := trimPIN(buf[:n])
	if err != nil {
		clear(buf)
		return nil, fmt.Errorf("%w: %s: %v", ErrPINSource, f.Path, err)
	}
	out := bytes.Clone(pin)
	clear(buf)
	return out, nil
}

// trimPIN removes one trailing line ending and checks what is left. Its
// errors never quote the PIN.
func trimPIN(b []byte) ([]byte, error) {
	if bytes.HasSuffix(b, []byte("\r\n")) {
		b = b[:len(b)-2]
	} else if bytes.HasSuffix(b, []byte("\n")) {
		b = b[:len(b)-1]
	}
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("the PIN is empty")
	case len(b) > maxPINLen:
		return nil, fmt.Errorf("the PIN is longer than %d bytes", maxPINLen)
	case bytes.ContainsAny(b, "\r\n\x00"):
		return nil, fmt.Errorf("the PIN holds a line break or NUL (only one trailing line ending is removed)")
	}
	return b, nil
}

// EnvPIN reads the PIN from an environment variable. The variable stays in
// the process environment (readable by the same user through
// /proc/PID/environ): prefer a file readable only by the service.
type EnvPIN struct {
	Name string
	// LookupEnv reads the variable; nil: os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// PIN implements [PINSource].
func (e *EnvPIN) PIN(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lookup := e.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(e.Name)
	if !ok {
		return nil, fmt.Errorf("%w: environment variable %s is not set", ErrPINSource, e.Name)
	}
	pin, err := trimPIN([]byte(v))
	if err != nil {
		return nil, fmt.Errorf("%w: environment variable %s: %v", ErrPINSource, e.Name, err)
	}
	return pin, nil
}

// PINSourceFunc makes a [PINSource] for one pin-source reference: the part
// after "scheme:". Register one per scheme in [Options.PINSources].
type PINSourceFunc func(ref string) (PINSource, error)

// splitPINSource splits a pin-source value into its scheme and reference.
// RFC 7512, 2.4 leaves the format to implementations; this package takes:
//
//	file:/abs/path, file:///abs/path or /abs/path  the PIN file
//	env:NAME                                       an environment variable
//	SCHEME:REF                                     a source registered in Options.PINSources
func splitPINSource(s string) (scheme, ref string, err error) {
	if strings.HasPrefix(s, "/") {
		return "file", filepath.Clean(s), nil
	}
	scheme, ref, ok := strings.Cut(s, ":")
	if !ok || !isSchemeName(scheme) || ref == "" {
		return "", "", fmt.Errorf("pin-source %q is not file:/PATH, env:NAME or SCHEME:REF", clip(s))
	}
	switch scheme {
	case "file":
		// file:///abs is the RFC 8089 form; file:/abs its short form.
		if strings.HasPrefix(ref, "//") {
			ref = strings.TrimPrefix(ref, "//")
			if !strings.HasPrefix(ref, "/") {
				return "", "", fmt.Errorf("pin-source %q names a remote host; only local files are read", clip(s))
			}
		}
		if !filepath.IsAbs(ref) {
			return "", "", fmt.Errorf("pin-source %q is not an absolute path", clip(s))
		}
		ref = filepath.Clean(ref)
	case "env":
		if !isEnvName(ref) {
			return "", "", fmt.Errorf("pin-source %q: %q is not an environment variable name", clip(s), clip(ref))
		}
	}
	return scheme, ref, nil
}

// isSchemeName: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986, 3.1),
// lower case only.
func isSchemeName(s string) bool {
	if s == "" || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isEnvName(s string) bool {
	if s == "" || len(s) > 255 || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ResolvePINSource returns the [PINSource] for a pin-source value:
// file:/PATH (or /PATH) is a [FilePIN], env:NAME an [EnvPIN], and any other
// scheme is looked up in opts.PINSources. opts may be nil.
func ResolvePINSource(s string, opts *Options) (PINSource, error) {
	scheme, ref, err := splitPINSource(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPINSource, err)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	switch scheme {
	case "file":
		return &FilePIN{Path: ref, Logger: o.Logger}, nil
	case "env":
		return &EnvPIN{Name: ref, LookupEnv: o.LookupEnv}, nil
	}
	f := o.PINSources[scheme]
	if f == nil {
		return nil, fmt.Errorf("%w: no pin-source scheme %q (add it to Options.PINSources)", ErrPINSource, scheme)
	}
	src, err := f(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrPINSource, scheme, err)
	}
	return src, nil
}
