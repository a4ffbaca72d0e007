package ca_test

import (
	"crypto/x509/pkix"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/catest"
)

// BenchmarkIssue measures a whole IDevID issuance: the CSR's checks (parse,
// key, proof-of-possession signature, extensions, the DiceTcbInfo), the
// template, the intermediate's signature (and crypto/x509's check of it),
// and parsing the result. "local-softhsm" signs in SoftHSM2 through
// package hsm, "local-software" with an ecdsa.PrivateKey in memory. The
// "/goroutines=N" variants issue from N goroutines; certs/s is the
// throughput over all of them.
func BenchmarkIssue(b *testing.B) {
	b.Run("local-software", func(b *testing.B) {
		h := catest.NewHierarchy(b, "sku-a")
		benchIssuer(b, newLocal(b, h, nil, nil))
	})
	b.Run("local-softhsm", func(b *testing.B) {
		h, _ := softHSMHierarchy(b, "sku-a")
		benchIssuer(b, newLocal(b, h, nil, nil))
	})
	// As the provisioning service asks: with the CSR it checked itself
	// (IssueRequest.CheckedCSR), whose signature Check does not verify
	// again.
	b.Run("local-software-checked-csr", func(b *testing.B) {
		h := catest.NewHierarchy(b, "sku-a")
		benchIssuer(b, checkedCSRs{newLocal(b, h, nil, nil)})
	})
}

// checkedCSRs passes each request's CSR as checked by ca.CheckCSR, made
// once per request outside the timed Issue (the caller checked it before).
type checkedCSRs struct{ ca.Issuer }

func (c checkedCSRs) prepare(b *testing.B, req *ca.IssueRequest) {
	checked, err := ca.CheckCSR(req.CSR)
	if err != nil {
		b.Fatal(err)
	}
	req.CheckedCSR = checked
}

// benchIssuer issues IDevIDs from pre-made CSRs (a chip signs its own CSR;
// that is not the CA's work) with 1 and 2 goroutines.
func benchIssuer(b *testing.B, iss ca.Issuer) {
	const nCSR = 64
	reqs := make([]*ca.IssueRequest, nCSR)
	tcb := catest.TcbInfo(b)
	for i := range reqs {
		reqs[i] = &ca.IssueRequest{
			Profile: ca.ProfileIDevID, Product: "sku-a", UEID: catest.UEID(b),
			CSR: catest.CSR(b, catest.Key(b), pkix.Name{}, pkix.Extension{Id: ca.OIDDiceTcbInfo, Value: tcb}),
		}
		if c, ok := iss.(checkedCSRs); ok {
			c.prepare(b, reqs[i])
		}
	}
	for _, g := range []int{1, 2} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			ctx := b.Context()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			cpu0 := processCPU()
			for range g {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := iss.Issue(ctx, reqs[i%nCSR]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			cpu := processCPU() - cpu0
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
			// CPU time per certificate (Go and C: SoftHSM2 signs in this
			// process): what throughput the machine's cores would give were
			// they all this benchmark's, whatever else runs meanwhile.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
