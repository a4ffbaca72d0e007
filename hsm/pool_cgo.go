//go:build cgo && !nopkcs11

package hsm

import (
	"context"

	"github.com/miekg/pkcs11"
)

// pool keeps up to max read-write sessions on one token. A caller borrows
// one (get), uses it alone (a session runs one operation of a kind at a
// time), and gives it back (put) or, if the token lost it, drops it
// (discard). When all max are borrowed, get waits.
type pool struct {
	p      *pkcs11.Ctx
	slot   uint
	idle   chan pkcs11.SessionHandle // sessions open and free; capacity max
	open   chan struct{}             // one token per open session; capacity max
	onOpen func(context.Context, pkcs11.SessionHandle) error
}

func newPool(p *pkcs11.Ctx, slot uint, max int, onOpen func(context.Context, pkcs11.SessionHandle) error) *pool {
	return &pool{
		p:      p,
		slot:   slot,
		idle:   make(chan pkcs11.SessionHandle, max),
		open:   make(chan struct{}, max),
		onOpen: onOpen,
	}
}

// get returns a free session: an idle one, else a new one if fewer than max
// are open, else the first one given back.
func (pl *pool) get(ctx context.Context) (pkcs11.SessionHandle, error) {
	select {
	case sh := <-pl.idle:
		return sh, nil
	default:
	}
	select {
	case sh := <-pl.idle:
		return sh, nil
	case pl.open <- struct{}{}:
		sh, err := pl.p.OpenSession(pl.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			<-pl.open
			return 0, wrapCKR("C_OpenSession", "", err)
		}
		if err := pl.onOpen(ctx, sh); err != nil {
			pl.p.CloseSession(sh)
			<-pl.open
			return 0, err
		}
		return sh, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// put gives a session back. It never blocks: at most max sessions exist.
func (pl *pool) put(sh pkcs11.SessionHandle) { pl.idle <- sh }

// discard forgets a session, closing it first if asked (not when the token
// already lost it: the handle may since name another session).
func (pl *pool) discard(sh pkcs11.SessionHandle, close bool) {
	if close {
		pl.p.CloseSession(sh)
	}
	<-pl.open
}

// sweep checks the idle sessions after one was found lost, and drops the
// ones the token lost too (C_CloseAllSessions, a token reset, or the
// module's own recovery lose them all at once).
func (pl *pool) sweep() {
	for range len(pl.idle) {
		var sh pkcs11.SessionHandle
		select {
		case sh = <-pl.idle:
		default:
			return
		}
		if _, err := pl.p.GetSessionInfo(sh); err != nil {
			pl.discard(sh, false)
			continue
		}
		pl.put(sh)
	}
}

// closeAll closes the idle sessions; with no call in progress, that is all.
func (pl *pool) closeAll() {
	for {
		select {
		case sh := <-pl.idle:
			pl.discard(sh, true)
		default:
			return
		}
	}
}

// size reports how many sessions are open (borrowed or idle).
func (pl *pool) size() int { return len(pl.open) }
