//go:build cgo && !nopkcs11

package hsm_test

import (
	"crypto"
	"crypto/sha256"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/hsm/hsmtest"
)

// BenchmarkHSMSign compares ECDSA P-256 signing through this package's
// crypto.Signer (session pool, cached handle, DER output) with bare
// miekg/pkcs11 calls (C_SignInit and C_Sign on a session of its own per
// goroutine, raw r||s output), with 1 and 2 goroutines. The figure to
// compare is sigs/s; the target is rootline >= 0.9x raw.
func BenchmarkHSMSign(b *testing.B) {
	uri, pinFile := hsmtest.NewSoftHSM(b)
	m, err := hsm.Open(b.Context(), uri, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	_, ku, err := m.CreateKey(b.Context(), &hsm.CreateKeyRequest{Label: "bench", Algorithm: hsm.P256})
	if err != nil {
		b.Fatal(err)
	}
	s, err := m.Signer(b.Context(), ku.String())
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("rootline benchmark"))

	for _, n := range []int{1, 2} {
		b.Run("softhsm/rootline-"+itoa(n), func(b *testing.B) {
			runWorkers(b, n, func(int) func() error {
				return func() error {
					_, err := s.Sign(nil, digest[:], crypto.SHA256)
					return err
				}
			})
		})
	}

	// The raw baseline: its own PKCS#11 context on the same (already
	// initialised) module, one session per goroutine, the key's handle
	// found once.
	p := pkcs11.New(m.ModulePathForTest())
	if err := p.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		b.Fatal(err)
	}
	defer p.Destroy() // no Finalize: the hsm package owns the initialisation
	slot := findSlot(b, p)
	pin, _ := os.ReadFile(pinFile)
	for _, n := range []int{1, 2} {
		b.Run("softhsm/raw-"+itoa(n), func(b *testing.B) {
			sessions := make([]pkcs11.SessionHandle, n)
			var key pkcs11.ObjectHandle
			for i := range sessions {
				sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
				if err != nil {
					b.Fatal(err)
				}
				defer p.CloseSession(sh)
				sessions[i] = sh
			}
			if err := p.Login(sessions[0], pkcs11.CKU_USER, strings.TrimSpace(string(pin))); err != nil && err != pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
				b.Fatal(err)
			}
			p.FindObjectsInit(sessions[0], []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, "bench"),
			})
			hs, _, err := p.FindObjects(sessions[0], 1)
			p.FindObjectsFinal(sessions[0])
			if err != nil || len(hs) != 1 {
				b.Fatalf("finding the key: %v, %d", err, len(hs))
			}
			key = hs[0]
			mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
			runWorkers(b, n, func(w int) func() error {
				sh := sessions[w]
				return func() error {
					if err := p.SignInit(sh, mech, key); err != nil {
						return err
					}
					_, err := p.Sign(sh, digest[:])
					return err
				}
			})
		})
	}
}

// runWorkers runs b.N calls spread over n goroutines, each with its own
// function from mk, and reports signatures per second.
func runWorkers(b *testing.B, n int, mk func(worker int) func() error) {
	fns := make([]func() error, n)
	for i := range fns {
		fns[i] = mk(i)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range n {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := fns[w](); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}

func findSlot(b *testing.B, p *pkcs11.Ctx) uint {
	slots, err := p.GetSlotList(true)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range slots {
		if ti, _ := p.GetTokenInfo(s); ti.Label == hsmtest.Label {
			return s
		}
	}
	b.Fatal("token not found")
	return 0
}

func itoa(n int) string { return string(rune('0' + n)) }
