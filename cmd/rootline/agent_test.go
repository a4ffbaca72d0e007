package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/attest/api"
	"github.com/rootline/rootline/internal/strictcbor"
)

// provisionedChip is a booted chip with an IDevID from a software CA.
func provisionedChip(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	fw, err := newFactoryFirmware("sku-a")
	if err != nil {
		t.Fatal(err)
	}
	local, _, err := benchCA(ctx, "sku-a")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "chip")
	d, err := fw.bootChip(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, _, err := giveIDevID(ctx, d, local, "sku-a"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestAgentRenews runs the agent's loop against a stub verifier that
// fails once, then answers with certificates due for renewal: the agent backs
// off, stores each answer, renews, and stops with its context.
func TestAgentRenews(t *testing.T) {
	chip := provisionedChip(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var calls atomic.Int64
	var lastCert atomic.Value
	enc := strictcbor.EncMode()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.MediaCBOR)
		switch r.URL.Path {
		case api.PathNonce:
			b, _ := enc.Marshal(&api.NonceResponse{Nonce: bytes.Repeat([]byte{7}, 32)})
			w.Write(b)
		case api.PathAttest:
			if calls.Add(1) == 1 {
				b, _ := enc.Marshal(&api.ErrorBody{Problem: api.ProblemBusy, Message: "busy"})
				w.WriteHeader(503)
				w.Write(b)
				return
			}
			// A certificate past 2/3 of its lifetime: renewed after MinWait.
			now := time.Now()
			der, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(calls.Load()), Subject: pkix.Name{CommonName: "op"},
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Minute)}, &x509.Certificate{Subject: pkix.Name{CommonName: "ca"}}, key.Public(), key)
			lastCert.Store(der)
			b, _ := enc.Marshal(&api.AttestResponse{Status: attest.StatusAffirming, EAR: "e.a.r", Certificate: [][]byte{der}})
			w.Write(b)
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for calls.Load() < 4 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runAgent(ctx, &agentOptions{State: chip, Verifier: srv.URL, CA: pool, Out: &out,
			MinWait: 10 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			Rand: mrand.New(mrand.NewPCG(1, 2))})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not renew and stop")
	}
	if n := calls.Load(); n < 4 {
		t.Fatalf("%d attestations, want at least 4", n)
	}
	ear, err := os.ReadFile(filepath.Join(chip, agentEARFile))
	if err != nil || string(ear) != "e.a.r\n" {
		t.Fatalf("EAR %q, %v", ear, err)
	}
	b, err := os.ReadFile(filepath.Join(chip, agentCertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("certificate file %q", b)
	}
	if !bytes.Contains(out.Bytes(), []byte("status: affirming")) {
		t.Fatalf("output %s", &out)
	}
}

// TestAgentOnceContraindicated: --once exits 2 when the verifier
// contraindicates the device, after storing the EAR.
func TestAgentOnceContraindicated(t *testing.T) {
	chip := provisionedChip(t)
	enc := strictcbor.EncMode()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.MediaCBOR)
		var v any = &api.NonceResponse{Nonce: bytes.Repeat([]byte{7}, 32)}
		if r.URL.Path == api.PathAttest {
			v = &api.AttestResponse{Status: attest.StatusContraindicated, EAR: "x.y.z",
				Reasons: []api.Reason{{Code: attest.CodeRevoked, Detail: "IDevID revoked"}}}
		}
		b, _ := enc.Marshal(v)
		w.Write(b)
	}))
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	var out bytes.Buffer
	err := runAgent(t.Context(), &agentOptions{State: chip, Verifier: srv.URL, CA: pool, Out: &out, Once: true})
	ee, ok := err.(*exitError)
	if !ok || ee.code != 2 || !bytes.Contains(out.Bytes(), []byte("reason: revoked IDevID revoked")) {
		t.Fatalf("%v\n%s", err, &out)
	}
	if _, err := os.Stat(filepath.Join(chip, agentEARFile)); err != nil {
		t.Fatal(err)
	}
}

func TestRenewIn(t *testing.T) {
	rnd := mrand.New(mrand.NewPCG(1, 2))
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: now, NotAfter: now.Add(24 * time.Hour)}
	for range 100 {
		d := renewIn(leaf, now, rnd, time.Minute)
		if d < 16*time.Hour-72*time.Minute || d > 16*time.Hour+72*time.Minute {
			t.Fatalf("renew in %s, want 16h ± 5%% of 24h", d)
		}
	}
	// An expired certificate: as soon as allowed.
	if d := renewIn(leaf, now.Add(48*time.Hour), rnd, time.Minute); d != time.Minute {
		t.Fatalf("expired: renew in %s", d)
	}
}
