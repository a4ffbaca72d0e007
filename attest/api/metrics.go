package api

import (
	"crypto"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rootline/rootline/attest"
)

// Metrics are the verifier's Prometheus metrics:
//
//	rootline_attest_attestations_total{status}    attestations answered, by ear.status
//	rootline_attest_refusals_total{reason}        reasons of results not affirming, by attest.Code
//	rootline_attest_bad_requests_total{problem}   requests refused before the verifier, by Problem
//	rootline_attest_duration_seconds              latency of POST /v1/attest (decoding to encoding)
//	rootline_attest_ear_sign_duration_seconds     EAR signing time (through Signer)
//	rootline_attest_endorsement_updates_total     endorsement updates accepted
type Metrics struct {
	reg          *prometheus.Registry
	attestations *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	bad          *prometheus.CounterVec
	latency      prometheus.Histogram
	earSign      prometheus.Histogram
	endorsements prometheus.Counter

	byStatus map[attest.Status]prometheus.Counter
}

// NewMetrics returns a new set of metrics, in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rootline_attest_attestations_total", Help: "Attestations answered, by status.",
		}, []string{"status"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rootline_attest_refusals_total", Help: "Reasons of attestation results not affirming, by reason code.",
		}, []string{"reason"}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rootline_attest_bad_requests_total", Help: "Requests refused before reaching the verifier, by problem.",
		}, []string{"problem"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rootline_attest_duration_seconds", Help: "Latency of POST /v1/attest.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		earSign: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rootline_attest_ear_sign_duration_seconds", Help: "Time to sign one EAR.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 16),
		}),
		endorsements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rootline_attest_endorsement_updates_total", Help: "Endorsement updates accepted.",
		}),
		byStatus: map[attest.Status]prometheus.Counter{},
	}
	for _, s := range []attest.Status{attest.StatusAffirming, attest.StatusWarning, attest.StatusContraindicated} {
		m.byStatus[s] = m.attestations.WithLabelValues(string(s))
	}
	m.reg.MustRegister(m.attestations, m.refusals, m.bad, m.latency, m.earSign, m.endorsements,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry returns the registry the metrics are in, to add others.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) attested(res *attest.Result, d time.Duration) {
	if c := m.byStatus[res.Status]; c != nil {
		c.Inc()
	}
	if res.Status != attest.StatusAffirming {
		for _, r := range res.Reasons {
			m.refusals.WithLabelValues(string(r.Code)).Inc()
		}
	}
	m.latency.Observe(d.Seconds())
}

func (m *Metrics) problem(p Problem) { m.bad.WithLabelValues(string(p)).Inc() }

// Signer returns s, timing each signature into
// rootline_attest_ear_sign_duration_seconds: give it to attest.Config as
// the EAR signer.
func (m *Metrics) Signer(s crypto.Signer) crypto.Signer { return &timedSigner{s, m.earSign} }

type timedSigner struct {
	crypto.Signer
	h prometheus.Histogram
}

func (t *timedSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := t.Signer.Sign(rand, digest, opts)
	t.h.Observe(time.Since(start).Seconds())
	return sig, err
}
