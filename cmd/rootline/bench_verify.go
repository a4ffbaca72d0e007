package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/spf13/cobra"

	"github.com/rootline/rootline/attest"
	"github.com/rootline/rootline/attest/api"
	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/provision/export"
)

// Bounds of rootline bench verify's flags.
const (
	benchMaxDevices     = 100000
	benchMaxConcurrency = 1024
	benchMaxDuration    = time.Hour
)

// benchVerifyOptions configures runBenchVerify.
type benchVerifyOptions struct {
	Devices, Concurrency int
	Duration             time.Duration
	// Dir holds the devices, the export, the store.
	Dir string
	// Store is "sqlite" (default) or "memory".
	Store string
	// JSON makes the clients speak JSON rather than CBOR; HTTP2 makes them
	// share HTTP/2 connections rather than one HTTP/1.1 connection each.
	JSON, HTTP2 bool
	// Profile, if set, receives CPU, block and mutex profiles of the timed
	// phase.
	Profile string
	// DeviceIDAlg is the chips' DICE algorithm (DeviceID and Alias keys,
	// so the evidence's signature): ECDSA P-256 (the default), P-384 or
	// Ed25519.
	DeviceIDAlg   pluton.Algorithm
	Out, Progress io.Writer
	Logger        *slog.Logger
}

// benchVerifyResult is what runBenchVerify measured.
type benchVerifyResult struct {
	Attestations int
	Elapsed      time.Duration
	Latencies    []time.Duration // sorted
	VerifyRate   float64         // raw ECDSA P-256 verifications/s, all cores
	SignRate     float64         // raw ECDSA P-256 signatures/s, all cores
	// HTTPS is the CPU time of one attestation's two HTTPS exchanges
	// alone, on a bare net/http server (httpsFloor).
	HTTPS time.Duration
	// Ceiling is the attestations/s these cores could reach if they did
	// nothing but the signatures and the HTTPS exchanges.
	Ceiling float64
}

// Rate is the attestations per second.
func (r *benchVerifyResult) Rate() float64 { return float64(r.Attestations) / r.Elapsed.Seconds() }

func newBenchVerifyCommand(g *globals) *cobra.Command {
	opts := &benchVerifyOptions{}
	var keep bool
	var deviceIDAlg string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Attest emulated devices to the verifier over HTTPS and report attestations/s and latency",
		Long: `Set up in-process, in a temporary directory: a factory CA (software keys),
--devices emulated chips fused, booted with signed firmware and given their
IDevIDs by the CA, the registry export of them, the firmware's endorsements,
and the attestation verifier (SQLite store) served over HTTPS on 127.0.0.1
(none of this is timed). Then --concurrency clients, each with its own TLS
connection, attest for --duration: each picks its next device round-robin,
asks a nonce, has the device sign evidence over it, posts it (CBOR) and
checks that the answer is affirming.

It prints the attestations per second and their latency (nonce to verdict)
at the 50th, 90th and 99th percentiles and the maximum, the CPU time per
attestation, then what bounds it on this machine, measured in the same
run: this machine's raw ECDSA P-256 rates (crypto/ecdsa, every core) and
the ratio of the evidence's one verification to it; the floor set by the
signatures alone (with its chains cached the verifier checks one, the
evidence's, and makes one, the EAR; the load generator, on the same
cores, does the device's work too: it signs the evidence with its Alias
key and checks that signature against faults; the Alias key is derived
at the first attestation of a boot, not timed, as an MCU's app layer
derives it once per boot), each timed with Go's crypto as process CPU
per call; the floor set by the two HTTPS exchanges alone (a bare net/http
server and as many clients, TLS 1.3, one kept-alive connection each, the
same sizes up and down, nothing parsed); and the ceiling both floors set
together, with the ratio of the achieved rate to it. Every attestation
has a fresh nonce from the verifier and fresh evidence signed over it.

Progress goes to stderr, results to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd)
			if err != nil {
				return err
			}
			if opts.DeviceIDAlg, err = pluton.ParseAlgorithm(deviceIDAlg); err != nil || opts.DeviceIDAlg == pluton.MLDSA65 {
				return fmt.Errorf("bench: --deviceid-alg %q: want p256, p384 or ed25519", deviceIDAlg)
			}
			if opts.Dir == "" {
				d, err := os.MkdirTemp("", "rootline-bench-verify-")
				if err != nil {
					return err
				}
				opts.Dir = d
				if !keep {
					defer os.RemoveAll(d)
				}
			} else if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
				return err
			}
			opts.Out, opts.Progress, opts.Logger = cmd.OutOrStdout(), cmd.ErrOrStderr(), log
			_, err = runBenchVerify(cmd.Context(), opts)
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Devices, "devices", 100, "number of emulated devices")
	f.DurationVar(&opts.Duration, "duration", 10*time.Second, "how long to attest")
	f.IntVar(&opts.Concurrency, "concurrency", 2*runtime.GOMAXPROCS(0), "number of concurrent clients")
	f.StringVar(&opts.Store, "store", "sqlite", "the verifier's store: sqlite or memory")
	f.BoolVar(&opts.JSON, "json", false, "clients speak JSON instead of CBOR")
	f.BoolVar(&opts.HTTP2, "http2", false, "clients share HTTP/2 connections instead of one HTTP/1.1 connection each")
	f.StringVar(&opts.Dir, "dir", "", "directory for the devices and the store (default: a temporary directory, removed afterwards)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory")
	f.StringVar(&opts.Profile, "profile", "", "write CPU, block and mutex profiles of the timed phase to this directory (go tool pprof reads them)")
	f.StringVar(&deviceIDAlg, "deviceid-alg", "p256", "the chips' DICE algorithm (DeviceID and Alias keys, evidence): p256, p384 or ed25519")
	return cmd
}

// benchDevice is an emulated device the load generator drives; mu makes
// its use by one client at a time.
type benchDevice struct {
	mu    sync.Mutex
	d     *device.Device
	chain [][]byte
}

func runBenchVerify(ctx context.Context, opts *benchVerifyOptions) (*benchVerifyResult, error) {
	switch {
	case opts.Devices < 1 || opts.Devices > benchMaxDevices:
		return nil, fmt.Errorf("bench: --devices must be 1 to %d", benchMaxDevices)
	case opts.Concurrency < 1 || opts.Concurrency > benchMaxConcurrency:
		return nil, fmt.Errorf("bench: --concurrency must be 1 to %d", benchMaxConcurrency)
	case opts.Duration <= 0 || opts.Duration > benchMaxDuration:
		return nil, fmt.Errorf("bench: --duration must be more than 0 and at most %s", benchMaxDuration)
	case opts.Store != "" && opts.Store != "sqlite" && opts.Store != "memory":
		return nil, fmt.Errorf("bench: --store %q: want sqlite or memory", opts.Store)
	case opts.DeviceIDAlg == pluton.MLDSA65 || opts.DeviceIDAlg != pluton.AlgorithmUnknown && !opts.DeviceIDAlg.Valid():
		return nil, fmt.Errorf("bench: DICE algorithm %v: want P-256, P-384 or Ed25519", opts.DeviceIDAlg)
	}
	alg := opts.DeviceIDAlg
	if alg == pluton.AlgorithmUnknown {
		alg = pluton.ECDSAP256
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out, prog := opts.Out, opts.Progress
	if out == nil {
		out = io.Discard
	}
	if prog == nil {
		prog = io.Discard
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const product = "sku-a"

	// 1. The factory CA, with software keys: it is not what is measured.
	fmt.Fprintf(prog, "bench: setting up the factory and the verifier in %s\n", dir)
	local, root, err := benchCA(ctx, product)
	if err != nil {
		return nil, err
	}
	crl, err := local.CRLFor(ctx, product)
	if err != nil {
		return nil, err
	}
	fw, err := newFactoryFirmware(product)
	if err != nil {
		return nil, err
	}
	fw.deviceIDAlg = alg

	// 2. The devices: fused, booted, given their IDevIDs (not timed).
	devs := make([]*benchDevice, opts.Devices)
	defer func() {
		for _, d := range devs {
			if d != nil {
				d.d.Close()
			}
		}
	}()
	p := newProgress(prog, "preparing devices", opts.Devices)
	var exp []exportDevice
	for i := range devs {
		d, err := fw.bootChip(ctx, filepath.Join(dir, "devices", fmt.Sprintf("device-%d", i+1)), log)
		if err != nil {
			p.done()
			return nil, fmt.Errorf("bench: device %d: %w", i+1, err)
		}
		devs[i] = &benchDevice{d: d}
		chain, ueid, err := giveIDevID(ctx, d, local, product)
		if err != nil {
			p.done()
			return nil, fmt.Errorf("bench: device %d: %w", i+1, err)
		}
		devs[i].chain = chain
		exp = append(exp, exportDevice{UEID: ueid, Product: product, Chain: chain})
		p.add()
	}
	p.done()

	// 3. The registry export of them, read back as the verifier does.
	exportFile := filepath.Join(dir, "devices.json")
	if err := writeExportFile(exportFile, exp, map[string]*factoryFirmware{product: fw}); err != nil {
		return nil, err
	}
	registry, _, err := readRegistryExport(exportFile, []*x509.Certificate{root}, log)
	if err != nil {
		return nil, err
	}
	refs, err := firmwareEndorsements(map[string]*factoryFirmware{product: fw})
	if err != nil {
		return nil, err
	}

	// 4. The verifier over HTTPS.
	var store attest.Store = attest.NewMemoryStore()
	if opts.Store != "memory" {
		s, err := attest.OpenSQLite(ctx, &attest.SQLiteConfig{Path: filepath.Join(dir, "verdicts.db")})
		if err != nil {
			return nil, err
		}
		store = s
	}
	defer store.Close()
	earKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var nonceKey [32]byte
	rand.Read(nonceKey[:])
	metrics := api.NewMetrics()
	v, err := attest.New(&attest.Config{
		Roots: []*x509.Certificate{root}, CRLs: [][]byte{crl}, Devices: registry, Store: store, Endorsements: refs,
		Signer: metrics.Signer(earKey), Issuer: local, NonceKey: nonceKey[:], Logger: log,
		VerifierID: attest.VerifierID{Developer: "rootline", Build: version},
	})
	clear(nonceKey[:])
	if err != nil {
		return nil, err
	}
	defer v.Close()
	h, err := api.NewHandler(&api.HandlerConfig{Verifier: v, Store: store, Metrics: metrics, Logger: log})
	if err != nil {
		return nil, err
	}
	tlsCA, serverCert, err := demoTLSCertificates()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() {
		served <- api.ServeListener(sctx, ln, &api.ServerConfig{Listen: ln.Addr().String(), Certificate: serverCert, Logger: log}, h)
	}()
	defer func() { stopServing(); <-served }()
	serverCA := x509.NewCertPool()
	serverCA.AddCert(tlsCA)

	clients := make([]*api.Client, opts.Concurrency)
	var shared *api.Client
	for i := range clients {
		if opts.HTTP2 && shared != nil {
			clients[i] = shared
			continue
		}
		c, err := api.Dial(&api.ClientConfig{URL: "https://" + ln.Addr().String(), ServerCA: serverCA, JSON: opts.JSON, HTTP1: !opts.HTTP2})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		clients[i], shared = c, c
	}
	// One attestation per device first (not timed): the verifier's chain
	// caches fill as they would in the field, where a device attests daily.
	p = newProgress(prog, "first attestations", opts.Devices)
	var sample *api.AttestResponse // an answer, and the size of its evidence
	var evidenceSize int
	for _, d := range devs {
		if sample, evidenceSize, err = benchAttest(ctx, clients[0], d); err != nil {
			p.done()
			return nil, err
		}
		p.add()
	}
	p.done()

	// 5. The load, timed.
	stopProfile, err := startProfiles(opts.Profile)
	if err != nil {
		return nil, err
	}
	lat := make([][]time.Duration, opts.Concurrency)
	errs := make([]error, opts.Concurrency)
	var count atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(opts.Duration)
	done := make(chan struct{})
	go func() { // progress, once a second
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		start, last := time.Now(), int64(0)
		for {
			select {
			case <-done:
				return
			case t := <-tick.C:
				n := count.Load()
				fmt.Fprintf(prog, "\rattesting %4.0fs  %9d attestations  %8.0f/s", t.Sub(start).Seconds(), n, float64(n-last))
				last = n
			}
		}
	}()
	cpu0 := sampleCPU("self")
	start := time.Now()
	for w := range opts.Concurrency {
		wg.Go(func() {
			lat[w] = make([]time.Duration, 0, 1<<14)
			for i := w; ctx.Err() == nil; i += opts.Concurrency {
				t := time.Now()
				if !t.Before(deadline) {
					return
				}
				d := devs[i%len(devs)]
				if _, _, err := benchAttest(ctx, clients[w], d); err != nil {
					errs[w] = err
					cancel()
					return
				}
				lat[w] = append(lat[w], time.Since(t))
				count.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu, others := sampleCPU("self").since(cpu0)
	close(done)
	fmt.Fprintln(prog)
	if err := stopProfile(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	res := &benchVerifyResult{Attestations: int(count.Load()), Elapsed: elapsed, Latencies: slices.Concat(lat...)}
	slices.Sort(res.Latencies)
	if res.Attestations == 0 {
		return nil, errors.New("bench: no attestation completed")
	}

	// 6. The floors: what the signatures alone, and the two HTTPS
	// exchanges alone, cost on this machine, measured now.
	fmt.Fprintf(prog, "bench: measuring Go's raw signature costs and bare HTTPS on %d cores\n", benchCores())
	work := attestSignatures(alg)
	// (Shorter for short runs: a test's.)
	costs, err := measureSigCosts(append(work, sigWork{Alg: pluton.ECDSAP256}), min(500*time.Millisecond, opts.Duration/4))
	if err != nil {
		return nil, err
	}
	sigCPU, _ := costs.floor(work)
	cores := float64(benchCores())
	res.VerifyRate, res.SignRate = cores/costs[pluton.ECDSAP256][1].Seconds(), cores/costs[pluton.ECDSAP256][0].Seconds()
	up, err := cbor.Marshal(&api.AttestRequest{Evidence: make([]byte, evidenceSize)})
	if err != nil {
		return nil, err
	}
	down, err := cbor.Marshal(sample)
	if err != nil {
		return nil, err
	}
	const nonceReply = 48 // {1: nonce} with a 32-byte nonce, and room
	res.HTTPS, err = httpsFloor(ctx, opts.Concurrency, min(2*time.Second, opts.Duration), serverCert, serverCA, nonceReply, len(up), len(down))
	if err != nil {
		return nil, err
	}
	res.Ceiling = cores / (sigCPU + res.HTTPS).Seconds()

	storeName, mode := "SQLite", "CBOR"
	if opts.Store == "memory" {
		storeName = "memory"
	}
	if opts.JSON {
		mode = "JSON"
	}
	proto := "HTTP/1.1, a connection per client"
	if opts.HTTP2 {
		proto = "HTTP/2, one shared connection"
	}
	rate := res.Rate()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
	fmt.Fprintf(out, "devices         %d\n", opts.Devices)
	fmt.Fprintf(out, "concurrency     %d (%s, %s, TLS 1.3)\n", opts.Concurrency, mode, proto)
	fmt.Fprintf(out, "store           %s\n", storeName)
	fmt.Fprintf(out, "deviceid-alg    %s (the chips' DICE keys: DeviceID, Alias, evidence signature)\n", alg)
	fmt.Fprintf(out, "cores           %d (GOMAXPROCS %d)\n", benchCores(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "attestations    %d in %s\n", res.Attestations, res.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "attestations/s  %.0f (verifier and load generator on the same cores)\n", rate)
	printLatency(out, res.Latencies)
	printCPU(out, "attestation", res.Attestations, res.Elapsed, cpu, others, "this process: verifier, devices, clients")
	fmt.Fprintf(out, "ecdsa verify/s  %.0f (P-256, crypto/ecdsa.VerifyASN1, all cores)\n", res.VerifyRate)
	fmt.Fprintf(out, "ecdsa sign/s    %.0f (P-256, crypto/ecdsa.SignASN1, all cores)\n", res.SignRate)
	fmt.Fprintf(out, "ratio           %.2f of verify/s ÷ 1 (the evidence's signature alone)\n", rate/res.VerifyRate)
	fmt.Fprintf(out, "floor           %.3f ms of CPU per attestation in signatures alone (%s)\n", ms(sigCPU), describe(work))
	fmt.Fprintf(out, "https           %.3f ms of CPU per attestation for its two HTTPS exchanges alone (bare net/http, same TLS and connections, %d-byte evidence request, %d-byte answer)\n",
		ms(res.HTTPS), len(up), len(down))
	fmt.Fprintf(out, "ceiling         %.0f attestations/s on these cores if they did nothing but those signatures and exchanges\n", res.Ceiling)
	fmt.Fprintf(out, "ratio           %.2f (attestations/s / that ceiling)\n", rate/res.Ceiling)
	return res, nil
}

// benchAttest has one device attest through c; the answer must be
// affirming. It returns the answer and the size of the evidence.
func benchAttest(ctx context.Context, c *api.Client, d *benchDevice) (*api.AttestResponse, int, error) {
	n, err := c.Nonce(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("bench: nonce: %w", err)
	}
	d.mu.Lock()
	tok, err := d.d.Attest(ctx, n)
	d.mu.Unlock()
	if err != nil {
		return nil, 0, fmt.Errorf("bench: device: %w", err)
	}
	res, err := c.Attest(ctx, &api.AttestRequest{Evidence: tok})
	if err != nil {
		return nil, 0, fmt.Errorf("bench: attest: %w", err)
	}
	if res.Status != attest.StatusAffirming {
		return nil, 0, fmt.Errorf("bench: the verifier answered %s: %s", res.Status, reasonList(res.Reasons))
	}
	return res, len(tok), nil
}

// benchCA makes a root and product's issuing CA with software P-256 keys.
func benchCA(ctx context.Context, product string) (*ca.Local, *x509.Certificate, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	root, err := ca.NewRoot(ctx, rootKey, pkix.Name{Organization: []string{"Rootline Bench"}, CommonName: "Rootline Bench Device Root CA"}, nil)
	if err != nil {
		return nil, nil, err
	}
	inter, err := ca.NewIntermediate(ctx, root, rootKey, interKey.Public(), pkix.Name{Organization: []string{"Rootline Bench"}, CommonName: product + " Issuing CA"}, nil)
	if err != nil {
		return nil, nil, err
	}
	local, err := ca.NewLocal(&ca.LocalOptions{Root: root, Organization: "Rootline Bench", Products: []ca.Product{{
		Name: product, HWType: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1},
		Authority: ca.Authority{Certificate: inter, Signer: interKey},
	}}})
	if err != nil {
		return nil, nil, err
	}
	return local, root, nil
}

// giveIDevID has issuer issue d's IDevID directly (no station) and
// installs it; it returns the chain (DER, leaf first, root last) and the
// UEID.
func giveIDevID(ctx context.Context, d *device.Device, issuer ca.Issuer, product string) ([][]byte, []byte, error) {
	fr, err := d.FactoryRequest(ctx, []byte("rootline bench factory nonce"))
	if err != nil {
		return nil, nil, err
	}
	iss, err := issuer.Issue(ctx, &ca.IssueRequest{Profile: ca.ProfileIDevID, Product: product, UEID: fr.UEID, CSR: fr.CSR})
	if err != nil {
		return nil, nil, err
	}
	chain := [][]byte{iss.Certificate.Raw}
	for _, c := range iss.Chain {
		chain = append(chain, c.Raw)
	}
	if err := d.InstallIdentity(ctx, chain); err != nil {
		return nil, nil, err
	}
	if err := d.Confirm(ctx); err != nil {
		return nil, nil, err
	}
	if err := d.Flush(); err != nil {
		return nil, nil, err
	}
	return chain, fr.UEID, nil
}

// exportDevice is one device of writeExportFile.
type exportDevice struct {
	UEID    []byte
	Product string
	Chain   [][]byte // leaf first, root last
}

// writeExportFile writes a registry export (provision/export, version 2)
// of devs, all complete DICE devices, with the factory test firmware's
// reference values of each product. (export.Write needs a registry; the
// bench gives IDevIDs without one.)
func writeExportFile(path string, devs []exportDevice, fws map[string]*factoryFirmware) error {
	type wireDevice struct {
		UEID    string   `json:"ueid"`
		Product string   `json:"product"`
		State   string   `json:"state"`
		Chain   []string `json:"chain"`
		Issued  string   `json:"issued"`
		Kind    string   `json:"kind"`
		// DeviceIDKey is the IDevID's key (DER SPKI) for a DICE device.
		DeviceIDKey string `json:"deviceIDKey"`
	}
	type wireLayer struct {
		Digests []string `json:"digests"`
		MinSVN  uint64   `json:"minSVN"`
	}
	type wireProduct struct {
		ReferenceValues map[string]wireLayer `json:"referenceValues"`
	}
	doc := struct {
		Version   int                    `json:"version"`
		Generated string                 `json:"generated"`
		Devices   []wireDevice           `json:"devices"`
		Products  map[string]wireProduct `json:"products"`
	}{Version: 2, Generated: time.Now().UTC().Format(time.RFC3339), Devices: []wireDevice{}, Products: map[string]wireProduct{}}
	sorted := slices.Clone(devs)
	slices.SortFunc(sorted, func(a, b exportDevice) int { return bytes.Compare(a.UEID, b.UEID) })
	for _, d := range sorted {
		leaf, err := x509.ParseCertificate(d.Chain[0])
		if err != nil {
			return err
		}
		w := wireDevice{UEID: hex.EncodeToString(d.UEID), Product: d.Product, State: "complete", Issued: doc.Generated,
			Kind: string(export.KindDICE), DeviceIDKey: base64.StdEncoding.EncodeToString(leaf.RawSubjectPublicKeyInfo)}
		for _, c := range d.Chain {
			w.Chain = append(w.Chain, base64.StdEncoding.EncodeToString(c))
		}
		doc.Devices = append(doc.Devices, w)
	}
	for name, fw := range fws {
		p := wireProduct{ReferenceValues: map[string]wireLayer{}}
		for _, l := range boot.Layers() {
			img, err := boot.ParseImage(fw.images[l])
			if err != nil {
				return err
			}
			p.ReferenceValues[string(l)] = wireLayer{Digests: []string{hex.EncodeToString(img.Manifest.Digest)}, MinSVN: img.Manifest.SVN}
		}
		doc.Products[name] = p
	}
	b, err := json.Marshal(&doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// firmwareEndorsements are the reference values of the factory firmware
// of each product, as one release "factory-1".
func firmwareEndorsements(fws map[string]*factoryFirmware) (*attest.Endorsements, error) {
	e := &attest.Endorsements{Version: attest.EndorsementsVersion}
	for _, name := range slices.Sorted(maps.Keys(fws)) {
		r := attest.Release{Name: "factory-1"}
		for _, l := range boot.Layers() {
			img, err := boot.ParseImage(fws[name].images[l])
			if err != nil {
				return nil, err
			}
			m := img.Manifest
			alg, ok := digestAlgName(m.DigestAlg)
			if !ok || len(m.SignerKeyIDs) == 0 {
				return nil, fmt.Errorf("bench: layer %s: digest %v, %d signers", l, m.DigestAlg, len(m.SignerKeyIDs))
			}
			r.Layers = append(r.Layers, attest.LayerReference{Layer: string(m.Layer), Version: m.Version, MinSVN: m.SVN,
				Signer: m.SignerKeyIDs[0], Digests: []attest.Digest{{Alg: alg, Value: m.Digest}}})
		}
		e.Products = append(e.Products, attest.ProductEndorsements{Product: name, Releases: []attest.Release{r}})
	}
	return e, e.Validate()
}

// digestAlgName is the IANA Named Information name of a digest
// algorithm (RFC 6920, §9.4), as endorsements spell it.
func digestAlgName(h crypto.Hash) (string, bool) {
	switch h {
	case crypto.SHA256:
		return "sha-256", true
	case crypto.SHA384:
		return "sha-384", true
	case crypto.SHA512:
		return "sha-512", true
	}
	return "", false
}
