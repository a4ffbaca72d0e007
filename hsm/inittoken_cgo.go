//go:build cgo && !nopkcs11

package hsm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// InitToken initialises a new SoftHSM2 token, for development and tests:
// C_InitToken on the free slot SoftHSM2 always keeps, then C_InitPIN for the
// user PIN as the Security Officer. The PINs go from their sources to the
// module through the PKCS#11 API, never through a command line. Any module
// other than SoftHSM2 is refused ([ErrUnsupported]): on a real HSM, token
// initialisation is a ceremony with its own tools. A label a token has
// already is refused ([ErrTokenExists]).
//
// SoftHSM2 keeps tokens in the directory its configuration file names
// (SOFTHSM2_CONF); set it before the first Open or InitToken of the
// process. The URI returned names the token by label and serial, with its
// module-path; add a pin-source to use it.
func InitToken(ctx context.Context, req *InitTokenRequest) (*URI, error) {
	if req == nil || req.PIN == nil {
		return nil, fmt.Errorf("hsm: InitToken needs a PIN source")
	}
	label := req.Label
	if label == "" || len(label) > maxLabelLen || !utf8.ValidString(label) || strings.IndexByte(label, 0) >= 0 || strings.HasSuffix(label, " ") {
		return nil, fmt.Errorf("hsm: token label must be 1 to %d bytes of UTF-8, without NUL or trailing spaces", maxLabelLen)
	}
	log := req.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rnd := req.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	path := req.ModulePath
	if path == "" {
		var err error
		if path, err = FindSoftHSM(); err != nil {
			return nil, err
		}
	}
	lib, err := loadLibrary(path, log)
	if err != nil {
		return nil, err
	}
	defer lib.release()
	p := lib.p
	info, err := p.GetInfo()
	if err != nil {
		return nil, wrapCKR("C_GetInfo", "", err)
	}
	if !strings.HasPrefix(info.ManufacturerID, "SoftHSM") {
		return nil, fmt.Errorf("%w: InitToken is for SoftHSM2 only; %s is %q", ErrUnsupported, path, info.ManufacturerID)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return nil, wrapCKR("C_GetSlotList", "", err)
	}
	free := -1
	var freeInfo pkcs11.TokenInfo
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			if free < 0 {
				free, freeInfo = int(s), ti
			}
			continue
		}
		if ti.Label == label {
			return nil, fmt.Errorf("%w: %q (serial %s)", ErrTokenExists, label, ti.SerialNumber)
		}
	}
	if free < 0 {
		return nil, fmt.Errorf("hsm: SoftHSM2 has no free slot")
	}
	slot := uint(free)

	pin, err := req.PIN.PIN(ctx)
	if err != nil {
		return nil, err
	}
	defer clear(pin)
	if l := uint(len(pin)); l < freeInfo.MinPinLen || l > freeInfo.MaxPinLen {
		return nil, fmt.Errorf("%w: the PIN has %d bytes; the token takes %d to %d", ErrPINSource, l, freeInfo.MinPinLen, freeInfo.MaxPinLen)
	}
	var so []byte
	if req.SOPIN != nil {
		if so, err = req.SOPIN.PIN(ctx); err != nil {
			return nil, err
		}
	} else {
		// A random SO PIN, used for C_InitPIN below and forgotten.
		r := make([]byte, 16)
		if _, err := io.ReadFull(rnd, r); err != nil {
			return nil, fmt.Errorf("hsm: drawing an SO PIN: %w", err)
		}
		so = []byte(hex.EncodeToString(r))
		clear(r)
	}
	defer clear(so)
	if l := uint(len(so)); l < freeInfo.MinPinLen || l > freeInfo.MaxPinLen {
		return nil, fmt.Errorf("%w: the SO PIN has %d bytes; the token takes %d to %d", ErrPINSource, l, freeInfo.MinPinLen, freeInfo.MaxPinLen)
	}
	str := func(b []byte) string { return unsafe.String(&b[0], len(b)) }

	if err := p.InitToken(slot, str(so), label); err != nil {
		return nil, wrapCKR("C_InitToken", label, err)
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, wrapCKR("C_OpenSession", label, err)
	}
	defer p.CloseSession(sh)
	if err := p.Login(sh, pkcs11.CKU_SO, str(so)); err != nil {
		return nil, wrapCKR("C_Login", label, err)
	}
	if err := p.InitPIN(sh, str(pin)); err != nil {
		p.Logout(sh)
		return nil, wrapCKR("C_InitPIN", label, err)
	}
	if err := p.Logout(sh); err != nil {
		return nil, wrapCKR("C_Logout", label, err)
	}
	ti, err := p.GetTokenInfo(slot)
	if err != nil {
		return nil, wrapCKR("C_GetTokenInfo", label, err)
	}
	log.Info("hsm: token initialised", "module", path, "token", label, "serial", ti.SerialNumber, "slot", slot)
	return &URI{Token: label, Serial: ti.SerialNumber, ModulePath: path}, nil
}
