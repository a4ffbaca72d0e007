package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rootline/rootline/internal/benchratio"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
)

// benchSetup is a verifier and a device whose tokens look like an
// emulated device's (three Alias layers and the DeviceID certificate, its
// counters, registers and event log), signed by keys the benchmark holds so
// that it can make many of them quickly.
type benchSetup struct {
	e *env
	s *synthDevice
}

func newBenchSetup(b *testing.B, memory bool) *benchSetup {
	e := newEnv(b, &envOptions{memoryStore: memory})
	d := e.newDevice(2)
	real, err := evidence.Parse(e.evidence(d.Device))
	if err != nil {
		b.Fatal(err)
	}
	s := e.newSynthN(3)
	c := *real.Claims
	c.UEID = s.ueid
	s.claims = &c
	return &benchSetup{e: e, s: s}
}

// tokens makes n tokens over fresh nonces, on every core.
func (bs *benchSetup) tokens(b *testing.B, n int) [][]byte {
	out := make([][]byte, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				nonce, err := bs.e.v.Nonce(bs.e.ctx)
				if err != nil {
					b.Error(err)
					return
				}
				out[i] = bs.s.sign(b, nonce, bs.s.chain)
			}
		})
	}
	wg.Wait()
	return out
}

// attestOnce is the library's work for one attestation, as the server
// does it: Verify, Appraise, sign the EAR.
func (bs *benchSetup) attestOnce(tok []byte) error {
	v := bs.e.v
	ver, err := v.Verify(bs.e.ctx, &Request{Evidence: tok})
	if err != nil {
		return err
	}
	a := v.Appraise(ver)
	if a.Status != StatusAffirming {
		return &Error{Reason: a.Reasons[0]}
	}
	_, err = v.SignEAR(a, ver.tok.Claims.Nonce, ver.tok.Claims.UEID)
	return err
}

// BenchmarkVerify is Verify + Appraise + SignEAR per attestation, with the
// device's chains cached (as they are from its second attestation on).
// "ratio" compares it with the raw signature work each attestation needs:
// one P-256 verification (the token) and one ES256 signature (the EAR).
func BenchmarkVerify(b *testing.B) {
	bs := newBenchSetup(b, true)
	if err := bs.attestOnce(bs.tokens(b, 1)[0]); err != nil { // fill the caches
		b.Fatal(err)
	}
	b.Run("parallel", func(b *testing.B) {
		toks := bs.tokens(b, b.N)
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := bs.attestOnce(toks[next.Add(1)-1]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("ratio", func(b *testing.B) {
		toks := bs.tokens(b, b.N)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		msg := []byte("token to be signed")
		der, _ := key.Sign(rand.Reader, pluton.ECDSAP256.Digest(msg), crypto.SHA256)
		sig, _ := pluton.ECDSASignatureToP1363(pluton.ECDSAP256, der)
		i := 0
		benchratio.Compare(b,
			func() error { i++; return bs.attestOnce(toks[i-1]) },
			func() error {
				if err := pluton.VerifyP1363(&key.PublicKey, pluton.ECDSAP256, msg, sig); err != nil {
					return err
				}
				h := sha256.Sum256(msg)
				_, err := key.Sign(rand.Reader, h[:], crypto.SHA256)
				return err
			})
	})
}

// BenchmarkAttestSQLite is the whole Attest per attestation, 32
// concurrent callers, with the SQLite store (each verdict and state
// committed durably; concurrent writes share a transaction).
func BenchmarkAttestSQLite(b *testing.B) {
	bs := newBenchSetup(b, false)
	toks := bs.tokens(b, b.N+1)
	if res := bs.e.attest(&Request{Evidence: toks[b.N]}); res.Status != StatusAffirming {
		b.Fatal(res.Reasons)
	}
	var next atomic.Int64
	b.SetParallelism(16) // many requests in flight, as behind an HTTP server
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := bs.e.v.Attest(bs.e.ctx, &Request{Evidence: toks[next.Add(1)-1]})
			if err != nil || res.Status != StatusAffirming {
				b.Error(err, res.Reasons)
				return
			}
		}
	})
}
