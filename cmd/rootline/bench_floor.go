package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/pluton"
)

// sigWork is a number of signatures of one algorithm, made (Sign) or
// checked, by one party of a flow.
type sigWork struct {
	Who  string
	Alg  pluton.Algorithm
	Sign bool
	N    int
}

// onChipSignatures lists the signatures one chip's on-chip provisioning
// makes and checks, counted call by call in the code (and by counting
// crypto/ecdsa and crypto/ed25519 calls in an instrumented build):
//
//   - the service checks the evidence's signature by the app Alias key,
//     the three certificates from the app Alias up to the DeviceID, the
//     DeviceID certificate's self-signature and the CSR's signature (six,
//     in the chips' DICE algorithm), and the IDevID the HSM signed, before
//     handing it out (one, the intermediate's algorithm);
//   - the chip signs the evidence and the CSR and checks each signature it
//     made, against faults (two signatures, two checks, its DICE
//     algorithm), then checks the IDevID's signature by the intermediate
//     and the intermediate's by the root before installing them;
//   - the HSM signs the IDevID.
//
// The station checks none per chip (TLS checks certificates once per
// connection). Key derivations, hashing, TLS records and the rest are not
// counted: this is a floor, not an estimate.
func onChipSignatures(dice, inter, root pluton.Algorithm) []sigWork {
	return []sigWork{
		{"service", dice, false, 6},
		{"service", inter, false, 1},
		{"chip", dice, true, 2},
		{"chip", dice, false, 2},
		{"chip", inter, false, 1},
		{"chip", root, false, 1},
		{"hsm", inter, true, 1},
	}
}

// sigCosts holds, per algorithm, the CPU time one signature and one
// verification take with Go's crypto on this machine: the process's CPU
// time while every core signs (or verifies) for a while, divided by the
// count, so that other processes sharing the machine do not inflate it.
type sigCosts map[pluton.Algorithm][2]time.Duration // [sign, verify]

// measureSigCosts measures the algorithms work names, about d each.
func measureSigCosts(work []sigWork, d time.Duration) (sigCosts, error) {
	costs := make(sigCosts)
	for _, w := range work {
		if _, ok := costs[w.Alg]; ok {
			continue
		}
		sign, verify, err := rawSigner(w.Alg)
		if err != nil {
			return nil, err
		}
		costs[w.Alg] = [2]time.Duration{cpuPerCall(d, sign), cpuPerCall(d, verify)}
	}
	return costs, nil
}

// floor is the CPU time the signatures of work take, and how many flows
// per second this machine's cores could run if they did nothing else.
func (c sigCosts) floor(work []sigWork) (cpu time.Duration, perSecond float64) {
	for _, w := range work {
		op := c[w.Alg][1]
		if w.Sign {
			op = c[w.Alg][0]
		}
		cpu += time.Duration(w.N) * op
	}
	return cpu, float64(benchCores()) / cpu.Seconds()
}

// describe says what work is, party by party, adding up the entries of
// one party, algorithm and operation: "service: 7 p256 verif.; chip: ...".
func describe(work []sigWork) string {
	var merged []sigWork
	for _, w := range work {
		i := slices.IndexFunc(merged, func(m sigWork) bool { return m.Who == w.Who && m.Alg == w.Alg && m.Sign == w.Sign })
		if i < 0 {
			merged = append(merged, w)
			continue
		}
		merged[i].N += w.N
	}
	var b strings.Builder
	last := ""
	for _, w := range merged {
		if w.Who != last {
			if last != "" {
				b.WriteString("; ")
			}
			b.WriteString(w.Who + ":")
			last = w.Who
		} else {
			b.WriteString(",")
		}
		what := "verif."
		if w.Sign {
			what = "sign."
		}
		fmt.Fprintf(&b, " %d %s %s", w.N, w.Alg, what)
	}
	return b.String()
}

// printFloor prints the signature floor of work next to the achieved rate.
func printFloor(out io.Writer, item string, work []sigWork, costs sigCosts, achieved float64) {
	cpu, most := costs.floor(work)
	fmt.Fprintf(out, "floor      %.2f ms of CPU per %s in signatures alone (Go's crypto on %d cores; %s): at most %.0f %ss/s\n",
		float64(cpu.Microseconds())/1e3, item, benchCores(), describe(work), most, item)
	fmt.Fprintf(out, "ratio      %.2f (%ss/s / that floor's limit)\n", achieved/most, item)
}

// rawSigner returns a signature and a verification of alg with a fresh
// software key, over a fixed message, for measuring.
func rawSigner(alg pluton.Algorithm) (sign, verify func(), err error) {
	msg := []byte("rootline bench: a message of the size of a to-be-signed certificate, more or less; its length hardly matters")
	switch alg {
	case pluton.ECDSAP256, pluton.ECDSAP384:
		curve, h := elliptic.P256(), crypto.SHA256
		if alg == pluton.ECDSAP384 {
			curve, h = elliptic.P384(), crypto.SHA384
		}
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		digest := func() []byte {
			if h == crypto.SHA384 {
				d := sha512.Sum384(msg)
				return d[:]
			}
			d := sha256.Sum256(msg)
			return d[:]
		}
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest())
		if err != nil {
			return nil, nil, err
		}
		return func() { ecdsa.SignASN1(rand.Reader, key, digest()) },
			func() {
				if !ecdsa.VerifyASN1(&key.PublicKey, digest(), sig) {
					panic("bench: ECDSA self-check failed")
				}
			}, nil
	case pluton.Ed25519:
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		sig := ed25519.Sign(key, msg)
		return func() { ed25519.Sign(key, msg) },
			func() {
				if !ed25519.Verify(pub, msg, sig) {
					panic("bench: Ed25519 self-check failed")
				}
			}, nil
	}
	return nil, nil, fmt.Errorf("bench: no raw rate for %s", alg)
}

// cpuPerCall runs f on every core for about d and returns the CPU time of
// one call: the process's CPU time over the calls made (or, where /proc
// cannot be read, the wall time of all cores over them).
func cpuPerCall(d time.Duration, f func()) time.Duration {
	var n atomic.Int64
	var wg sync.WaitGroup
	cpu0 := sampleCPU("self")
	start := time.Now()
	end := start.Add(d)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for time.Now().Before(end) {
				for range 16 {
					f()
				}
				n.Add(16)
			}
		})
	}
	wg.Wait()
	cpu, _ := sampleCPU("self").since(cpu0)
	if cpu <= 0 {
		cpu = time.Since(start) * time.Duration(benchCores())
	}
	return cpu / time.Duration(n.Load())
}

// hsmToPluton names an HSM key algorithm as pluton does.
func hsmToPluton(a hsm.Algorithm) pluton.Algorithm {
	switch a {
	case hsm.P256:
		return pluton.ECDSAP256
	case hsm.P384:
		return pluton.ECDSAP384
	case hsm.Ed25519:
		return pluton.Ed25519
	}
	return pluton.AlgorithmUnknown
}

// attestSignatures lists the signatures one attestation makes and checks
// with the verifier's chain caches warm: the verifier checks the
// evidence's signature by the Alias key and signs the EAR (ES256); the
// device signs the evidence and checks the signature it made, against
// faults. The Alias key is derived once per boot, not per attestation.
func attestSignatures(dice pluton.Algorithm) []sigWork {
	return []sigWork{
		{"verifier", dice, false, 1},
		{"verifier", pluton.ECDSAP256, true, 1},
		{"device", dice, true, 1},
		{"device", dice, false, 1},
	}
}

// httpsFloor measures the CPU time of one attestation's two HTTPS
// exchanges on this machine's stack alone: a bare net/http server and
// clients, TLS 1.3 with cert, HTTP/1.1 with a kept-alive connection per
// client as rootline bench verify's clients have, each client asking for
// a nonce (an empty POST, nonceSize bytes back) then posting up bytes and reading
// down bytes back, for about d. Nothing is parsed, checked or signed.
func httpsFloor(ctx context.Context, clients int, d time.Duration, cert tls.Certificate, roots *x509.CertPool, nonceSize, up, down int) (time.Duration, error) {
	nonce, reply, body := make([]byte, nonceSize), make([]byte, down), make([]byte, up)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /nonce", func(w http.ResponseWriter, _ *http.Request) { w.Write(nonce) })
	mux.HandleFunc("POST /attest", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(reply)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	base := "https://" + ln.Addr().String()

	exchange := func(c *http.Client, req *http.Request) error {
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("bench: bare HTTPS server: %s", res.Status)
		}
		return nil
	}
	var pairs atomic.Int64
	errs := make([]error, clients)
	var wg sync.WaitGroup
	var cpu0 cpuSample
	var start time.Time
	ready := make(chan struct{})
	for i := range clients {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13},
			MaxIdleConnsPerHost: 1, TLSHandshakeTimeout: 10 * time.Second}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		// The connection is made before the clock starts, as bench
		// verify's are by the untimed first attestations.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/nonce", nil)
		if err := exchange(c, req); err != nil {
			return 0, err
		}
		wg.Go(func() {
			<-ready
			for end := start.Add(d); time.Now().Before(end); {
				get, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/nonce", nil)
				post, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/attest", bytes.NewReader(body))
				post.Header.Set("Content-Type", "application/cbor")
				if err := exchange(c, get); err != nil {
					errs[i] = err
					return
				}
				if err := exchange(c, post); err != nil {
					errs[i] = err
					return
				}
				pairs.Add(1)
			}
		})
	}
	cpu0, start = sampleCPU("self"), time.Now()
	close(ready)
	wg.Wait()
	cpu, _ := sampleCPU("self").since(cpu0)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	n := pairs.Load()
	if n == 0 {
		return 0, errors.New("bench: no bare HTTPS exchange completed")
	}
	if cpu <= 0 {
		cpu = time.Since(start) * time.Duration(benchCores())
	}
	return cpu / time.Duration(n), nil
}

// benchCores is the number of cores the process can run on at once: its
// GOMAXPROCS, or fewer if the machine has fewer CPUs (GOMAXPROCS set above
// them runs more threads, not more cores).
func benchCores() int { return min(runtime.GOMAXPROCS(0), runtime.NumCPU()) }
