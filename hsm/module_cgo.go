//go:build cgo && !nopkcs11

package hsm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// A library is a loaded, initialised PKCS#11 module. C_Initialize may be
// called once per process until C_Finalize (PKCS#11 v3.0, C_Initialize), and a
// module's state (its login, its configuration) is per process, so every
// Module on the same library shares one, counted by refs. This registry is
// the only mutable global of the package, and it mirrors one inside the
// dynamic loader.
type library struct {
	path  string
	p     *pkcs11.Ctx
	refs  int
	owned bool // our C_Initialize succeeded: C_Finalize when the last Module closes
}

var libraries = struct {
	sync.Mutex
	m map[string]*library
}{m: map[string]*library{}}

func loadLibrary(path string, log *slog.Logger) (*library, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%w: module path %q is not absolute", ErrBadURI, path)
	}
	key := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		key = real
	}
	libraries.Lock()
	defer libraries.Unlock()
	if l := libraries.m[key]; l != nil {
		l.refs++
		return l, nil
	}
	p := pkcs11.New(path)
	if p == nil {
		return nil, fmt.Errorf("%w: cannot load %s (dlopen failed, or it is not a PKCS#11 module)", ErrModuleNotFound, path)
	}
	owned := true
	if err := p.Initialize(); err != nil {
		if ckr(err) != ckrCryptokiAlreadyInit {
			p.Destroy()
			return nil, wrapCKR("C_Initialize", "", err)
		}
		// Someone else in this process initialised it: share, and leave
		// C_Finalize to them.
		owned = false
	}
	l := &library{path: key, p: p, refs: 1, owned: owned}
	libraries.m[key] = l
	log.Debug("hsm: module loaded", "module", path)
	return l, nil
}

func (l *library) release() {
	libraries.Lock()
	defer libraries.Unlock()
	l.refs--
	if l.refs > 0 {
		return
	}
	delete(libraries.m, l.path)
	if l.owned {
		l.p.Finalize()
	}
	l.p.Destroy()
}

// ckr returns the CK_RV of a miekg/pkcs11 error, or 0.
func ckr(err error) uint {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e)
	}
	var he *Error
	if errors.As(err, &he) {
		return he.Code
	}
	return 0
}

// wrapCKR turns a miekg/pkcs11 error into an *Error.
func wrapCKR(op, token string, err error) error {
	if err == nil {
		return nil
	}
	var e pkcs11.Error
	if errors.As(err, &e) {
		return &Error{Op: op, Code: uint(e), Token: token}
	}
	return fmt.Errorf("hsm: %s: %w", op, err)
}

// Module is an open token: a loaded PKCS#11 module, the one token a URI
// selects in it, a login as the normal user, and a pool of sessions. It is
// safe for concurrent use. Close it when done.
type Module struct {
	lib        *library
	p          *pkcs11.Ctx
	slot       uint
	token      pkcs11.TokenInfo
	info       pkcs11.Info
	slotInfo   pkcs11.SlotInfo
	modulePath string
	pinSource  string // the URI's pin-source, copied into key URIs
	maxSess    int
	log        *slog.Logger
	opts       Options
	pin        PINSource // nil when the token needs no login
	mechs      map[uint]bool

	pool    *pool
	life    sync.RWMutex // shared by every operation, exclusive in Close
	closed  bool         // guarded by life
	loginMu sync.Mutex
	epoch   atomic.Uint64 // counts logins; object handles are refound after one
	// createMu guards the token's objects: creating or destroying a
	// token object takes it exclusively (lockObjects), every other
	// operation shares it (do). SoftHSM2 2.6.1 answered CKR_GENERAL_ERROR
	// now and then to a key generation that ran while another session
	// created or destroyed a token object; a real HSM loses little, as
	// objects are created rarely (keys, and a device key per injected
	// chip).
	createMu sync.RWMutex

	testBreakPCT      func() bool    // tests only: fail the pairwise-consistency test
	testTamperKeyInfo func(*KeyInfo) // tests only: change what CreateKey reads back
}

// Open loads the PKCS#11 module a URI names (module-path, module-name, or
// SoftHSM2 when it names none), finds the one initialised token its path
// attributes select, and logs in as the normal user with the PIN from its
// pin-source (or opts.PIN). Object attributes in the URI are ignored, so a
// key's URI opens its token.
//
// A wrong PIN fails with an *[Error] matching [ErrPINIncorrect]; no
// matching token with [ErrTokenNotFound]; several with
// [ErrAmbiguousToken].
//
// SoftHSM2 reads its configuration (SOFTHSM2_CONF) when a process first
// opens it, and again only after every Module on it has been closed.
func Open(ctx context.Context, uri string, opts *Options) (*Module, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path, err := modulePath(u)
	if err != nil {
		return nil, err
	}
	lib, err := loadLibrary(path, o.Logger)
	if err != nil {
		return nil, err
	}
	m, err := open(ctx, lib, path, u, &o)
	if err != nil {
		lib.release()
		return nil, err
	}
	return m, nil
}

func open(ctx context.Context, lib *library, path string, u *URI, o *Options) (*Module, error) {
	p := lib.p
	m := &Module{lib: lib, p: p, modulePath: path, pinSource: u.PINSource, log: o.Logger, opts: *o}
	info, err := p.GetInfo()
	if err != nil {
		return nil, wrapCKR("C_GetInfo", "", err)
	}
	m.info = info
	if !libraryMatches(u, info) {
		return nil, fmt.Errorf("%w: module %s (%s %s %d.%d) does not match the URI's library attributes", ErrTokenNotFound, path,
			info.ManufacturerID, info.LibraryDescription, info.LibraryVersion.Major, info.LibraryVersion.Minor)
	}
	// Select the token: RFC 7512, 2.5 — every attribute given must match,
	// and attributes not given match anything.
	slots, err := p.GetSlotList(true)
	if err != nil {
		return nil, wrapCKR("C_GetSlotList", "", err)
	}
	type found struct {
		slot uint
		si   pkcs11.SlotInfo
		ti   pkcs11.TokenInfo
	}
	var matches []found
	for _, s := range slots {
		if u.SlotID != nil && *u.SlotID != s {
			continue
		}
		si, err := p.GetSlotInfo(s)
		if err != nil {
			continue
		}
		ti, err := p.GetTokenInfo(s)
		if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		if slotMatches(u, si) && tokenMatches(u, ti) {
			matches = append(matches, found{s, si, ti})
		}
	}
	sel := tokenSelector(u)
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("%w: no initialised token in %s matches %s", ErrTokenNotFound, path, sel)
	case 1:
	default:
		var names []string
		for _, f := range matches {
			names = append(names, fmt.Sprintf("%q (serial %s, slot %d)", f.ti.Label, f.ti.SerialNumber, f.slot))
		}
		return nil, fmt.Errorf("%w: %s matches %s; add serial= to the URI", ErrAmbiguousToken, sel, strings.Join(names, ", "))
	}
	m.slot, m.slotInfo, m.token = matches[0].slot, matches[0].si, matches[0].ti

	mechs, err := p.GetMechanismList(m.slot)
	if err != nil {
		return nil, m.wrap("C_GetMechanismList", err)
	}
	m.mechs = map[uint]bool{}
	for _, mech := range mechs {
		m.mechs[mech.Mechanism] = true
	}

	if m.token.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0 {
		if m.token.Flags&pkcs11.CKF_USER_PIN_INITIALIZED == 0 {
			return nil, &Error{Op: "open", Code: ckrUserPINNotInitialized, Token: m.token.Label}
		}
		switch {
		case u.PINSource != "":
			if m.pin, err = ResolvePINSource(u.PINSource, o); err != nil {
				return nil, err
			}
		case o.PIN != nil:
			m.pin = o.PIN
		default:
			return nil, fmt.Errorf("%w: token %q needs a login: give pin-source in the URI or Options.PIN", ErrPINSource, m.token.Label)
		}
	}

	m.maxSess = sessionLimit(o.MaxSessions, u.MaxSessions, m.token.MaxRwSessionCount)
	m.pool = newPool(p, m.slot, m.maxSess, m.ensureLogin)
	// Open the first session now: it logs in, so a wrong PIN fails here.
	sh, err := m.pool.get(ctx)
	if err != nil {
		m.pool.closeAll()
		return nil, err
	}
	m.pool.put(sh)
	m.log.Info("hsm: token opened", "module", path, "token", m.token.Label, "serial", m.token.SerialNumber,
		"slot", m.slot, "max_sessions", m.maxSess)
	return m, nil
}

// sessionLimit picks the pool size: the caller's, else the URI's, else
// 2*NumCPU; never more than the token's ulMaxRwSessionCount, unless that is
// CK_EFFECTIVELY_INFINITE (0) or CK_UNAVAILABLE_INFORMATION (PKCS#11 v3.0,
// CK_TOKEN_INFO).
func sessionLimit(opt, uri int, tokenMax uint) int {
	n := 2 * runtime.NumCPU()
	switch {
	case opt > 0:
		n = opt
	case uri > 0:
		n = uri
	}
	if tokenMax != pkcs11.CK_EFFECTIVELY_INFINITE && tokenMax != pkcs11.CK_UNAVAILABLE_INFORMATION && uint(n) > tokenMax {
		n = int(tokenMax)
	}
	return max(n, 1)
}

func libraryMatches(u *URI, info pkcs11.Info) bool {
	return (u.LibraryManufacturer == "" || u.LibraryManufacturer == info.ManufacturerID) &&
		(u.LibraryDescription == "" || u.LibraryDescription == info.LibraryDescription) &&
		(u.LibraryVersion == nil || u.LibraryVersion.Major == info.LibraryVersion.Major && u.LibraryVersion.Minor == info.LibraryVersion.Minor)
}

func slotMatches(u *URI, si pkcs11.SlotInfo) bool {
	return (u.SlotDescription == "" || u.SlotDescription == si.SlotDescription) &&
		(u.SlotManufacturer == "" || u.SlotManufacturer == si.ManufacturerID)
}

func tokenMatches(u *URI, ti pkcs11.TokenInfo) bool {
	return (u.Token == "" || u.Token == ti.Label) &&
		(u.Manufacturer == "" || u.Manufacturer == ti.ManufacturerID) &&
		(u.Serial == "" || u.Serial == ti.SerialNumber) &&
		(u.Model == "" || u.Model == ti.Model)
}

// tokenSelector is the part of u that selects a token, for messages: no
// object, no query.
func tokenSelector(u *URI) string {
	t := &URI{Token: u.Token, Manufacturer: u.Manufacturer, Serial: u.Serial, Model: u.Model,
		LibraryManufacturer: u.LibraryManufacturer, LibraryDescription: u.LibraryDescription, LibraryVersion: u.LibraryVersion,
		SlotDescription: u.SlotDescription, SlotManufacturer: u.SlotManufacturer, SlotID: u.SlotID}
	return t.String()
}

// selects reports whether a key URI's token, slot and library attributes
// allow this Module's token.
func (m *Module) selects(u *URI) bool {
	return libraryMatches(u, m.info) && slotMatches(u, m.slotInfo) && tokenMatches(u, m.token) &&
		(u.SlotID == nil || *u.SlotID == m.slot)
}

func (m *Module) wrap(op string, err error) error { return wrapCKR(op, m.token.Label, err) }

// TokenURI returns the URI of the open token: its label and serial, the
// module path and the pin-source it was opened with.
func (m *Module) TokenURI() *URI {
	return &URI{Token: m.token.Label, Serial: m.token.SerialNumber, ModulePath: m.modulePath, PINSource: m.pinSource}
}

// keyURI names a private key on this token.
func (m *Module) keyURI(label string, id []byte) *URI {
	u := m.TokenURI()
	u.Object, u.ID, u.Type = label, id, "private"
	return u
}

// ensureLogin logs the token in if the session shows it is not. Login
// state is shared by every session of the process (PKCS#11 v3.0, C_Login), and
// is lost when the last session closes.
func (m *Module) ensureLogin(ctx context.Context, sh pkcs11.SessionHandle) error {
	if m.pin == nil {
		return nil
	}
	si, err := m.p.GetSessionInfo(sh)
	if err != nil {
		return m.wrap("C_GetSessionInfo", err)
	}
	if si.State == pkcs11.CKS_RO_USER_FUNCTIONS || si.State == pkcs11.CKS_RW_USER_FUNCTIONS {
		return nil
	}
	return m.login(ctx, sh)
}

// login logs in as CKU_USER with a PIN fresh from the PIN source, and wipes
// it after. A login made by another session meanwhile
// (CKR_USER_ALREADY_LOGGED_IN) is success.
func (m *Module) login(ctx context.Context, sh pkcs11.SessionHandle) error {
	m.loginMu.Lock()
	defer m.loginMu.Unlock()
	pin, err := m.pin.PIN(ctx)
	if err != nil {
		return err
	}
	defer clear(pin)
	if len(pin) == 0 {
		return fmt.Errorf("%w: empty PIN", ErrPINSource)
	}
	// miekg/pkcs11 takes the PIN as a string and copies it into C memory
	// for the call. unsafe.String avoids a second Go copy that clear could
	// not reach; the string does not outlive the call.
	err = m.p.Login(sh, pkcs11.CKU_USER, unsafe.String(&pin[0], len(pin)))
	switch ckr(err) {
	case ckrOK:
		m.epoch.Add(1)
		m.log.Info("hsm: logged in", "token", m.token.Label)
		return nil
	case ckrUserAlreadyLoggedIn:
		return nil
	}
	return m.wrap("C_Login", err)
}

// do runs f on a pooled session, and recovers, up to maxAttempts-1 times,
// from what a long-lived process meets: a session the token closed
// (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED: open another, which logs
// in again if needed), a lost login (CKR_USER_NOT_LOGGED_IN: log in again),
// and object handles gone stale (CKR_OBJECT_HANDLE_INVALID,
// CKR_KEY_HANDLE_INVALID: log in if needed, then refresh). f's errors must
// keep the CK_RV (wrapCKR).
func (m *Module) do(ctx context.Context, refresh func(context.Context, pkcs11.SessionHandle) error, f func(pkcs11.SessionHandle) error) error {
	m.life.RLock()
	defer m.life.RUnlock()
	if ctx.Value(objectsLockedKey{}) != m {
		m.createMu.RLock()
		defer m.createMu.RUnlock()
	}
	if m.closed {
		return ErrClosed
	}
	const maxAttempts = 3
	var err error
	for range maxAttempts {
		sh, gerr := m.pool.get(ctx)
		if gerr != nil {
			return gerr
		}
		err = f(sh)
		if err == nil {
			m.pool.put(sh)
			return nil
		}
		switch code := ckr(err); code {
		case ckrSessionHandleInvalid, ckrSessionClosed:
			m.log.Warn("hsm: session lost; opening another", "token", m.token.Label, "error", CKRName(code))
			m.pool.discard(sh, false)
			m.pool.sweep()
		case ckrOperationActive:
			m.log.Warn("hsm: session has an operation active; replacing it", "token", m.token.Label)
			m.pool.discard(sh, true)
		case ckrUserNotLoggedIn:
			m.log.Warn("hsm: token logged out; logging in again", "token", m.token.Label)
			lerr := m.login(ctx, sh)
			m.pool.put(sh)
			if lerr != nil {
				return lerr
			}
		case ckrObjectHandleInvalid, ckrKeyHandleInvalid:
			if refresh == nil {
				m.pool.put(sh)
				return err
			}
			m.log.Warn("hsm: key handle stale; looking the key up again", "token", m.token.Label)
			rerr := m.ensureLogin(ctx, sh)
			if rerr == nil {
				rerr = refresh(ctx, sh)
			}
			m.pool.put(sh)
			if rerr != nil {
				return rerr
			}
		default:
			m.pool.put(sh)
			return err
		}
	}
	return err
}

// Close closes the Module's sessions, once every call in progress has
// returned, and unloads the module when no other Module uses it. Signers
// from this Module fail with [ErrClosed] afterwards.
func (m *Module) Close() error {
	m.life.Lock()
	defer m.life.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.pool.closeAll()
	m.lib.release()
	m.log.Info("hsm: token closed", "token", m.token.Label)
	return nil
}

// objectsLockedKey marks a context whose caller holds createMu
// exclusively (lockObjects), so that do does not take it again.
type objectsLockedKey struct{}

// lockObjects takes the token objects' lock exclusively, for creating or
// destroying token objects, and returns the context to pass to do while
// holding it, and the function that releases it.
func (m *Module) lockObjects(ctx context.Context) (context.Context, func()) {
	m.createMu.Lock()
	return context.WithValue(ctx, objectsLockedKey{}, m), m.createMu.Unlock
}
