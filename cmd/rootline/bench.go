package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/ca/stepca"
	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/hsminject"
	"github.com/rootline/rootline/provision/registry"
	"github.com/rootline/rootline/provision/station"
	"github.com/rootline/rootline/provision/translog"

	"github.com/spf13/cobra"
)

// Bounds of rootline bench provision's flags.
const (
	benchMaxChips    = 100000
	benchMaxStations = 256
	benchMaxSecrets  = 16
)

func newBenchCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load tools: measure the factory's and the verifier's throughput",
	}
	cmd.AddCommand(newBenchProvisionCommand(g), newBenchVerifyCommand(g))
	return cmd
}

// benchProvisionOptions configures runBenchProvision.
type benchProvisionOptions struct {
	Chips, Stations int
	// Dir holds the SoftHSM2 token, CA, log, registry and chips.
	Dir string
	// Out receives the results; Progress the progress lines.
	Out, Progress io.Writer
	Logger        *slog.Logger
	// StepCA, if set, is the step-ca binary: in the same run, step-ca
	// issues as many equivalent IDevIDs with as many clients.
	StepCA string
	// Profile, if set, is a directory that receives Go profiles of the
	// timed phase: cpu.pprof, block.pprof and mutex.pprof.
	Profile string
	// ChipsDir holds the emulated chips' state directories (default: Dir's
	// "chips"): their flash, not the factory's disk.
	ChipsDir string
	// RootAlg is the factory root key's algorithm (default P-384).
	RootAlg hsm.Algorithm
	// DeviceIDAlg is the chips' DICE algorithm (DeviceID and Alias keys,
	// their certificates and evidence); default P-256.
	DeviceIDAlg pluton.Algorithm
	// Identity is the product's identity: provision.OnChip (the default)
	// or provision.Injected, whose device keys the SoftHSM2 token makes
	// and wraps, with Secrets per-device secrets each.
	Identity provision.IdentityMode
	Secrets  int
}

// benchProvisionResult is what runBenchProvision measured.
type benchProvisionResult struct {
	Chips, Stations int
	Prepare         time.Duration   // preparing the chips (not timed)
	Elapsed         time.Duration   // provisioning them
	Latencies       []time.Duration // sorted
	// CPU is the CPU time this process used while provisioning (the
	// service, the stations, the chips and SoftHSM2 all run in it), and
	// Others what the rest of the machine used meanwhile; both zero where
	// /proc cannot tell.
	CPU, Others time.Duration
	// StepCA is step-ca's run, if there was one.
	StepCA *stepCABenchResult
	// StepCACPU is the CPU time of the step-ca server while it issued.
	StepCACPU time.Duration
}

// cpuSample is the CPU time used so far by one process and by the whole
// machine, read from Linux's /proc (in USER_HZ ticks, 100 a second): the
// machine is shared, so chips/s alone does not say how much of it a run
// had. ok is false where /proc cannot be read.
type cpuSample struct {
	proc, machine time.Duration
	ok            bool
}

const userHZ = 100 // sysconf(_SC_CLK_TCK) on every Linux port

// sampleCPU samples the process pid ("self" for this one).
func sampleCPU(pid string) cpuSample {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return cpuSample{}
	}
	// pid (comm) state ppid … utime stime: fields 14 and 15 (proc(5)),
	// counted after the command name, which may hold spaces.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 13 {
		return cpuSample{}
	}
	var s cpuSample
	for _, v := range f[11:13] {
		var n int64
		if _, err := fmt.Sscan(v, &n); err != nil {
			return cpuSample{}
		}
		s.proc += time.Duration(n) * time.Second / userHZ
	}
	all, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	// cpu user nice system idle iowait irq softirq steal …: busy is all
	// but idle and iowait.
	line, _, _ := strings.Cut(string(all), "\n")
	f = strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuSample{}
	}
	for j, v := range f[1:9] {
		var n int64
		if _, err := fmt.Sscan(v, &n); err != nil {
			return cpuSample{}
		}
		if j != 3 && j != 4 {
			s.machine += time.Duration(n) * time.Second / userHZ
		}
	}
	s.ok = true
	return s
}

// since returns the CPU time of the process and of the rest of the
// machine from s0 to s.
func (s cpuSample) since(s0 cpuSample) (proc, others time.Duration) {
	if !s.ok || !s0.ok {
		return 0, 0
	}
	return s.proc - s0.proc, max(0, (s.machine-s0.machine)-(s.proc-s0.proc))
}

func newBenchProvisionCommand(g *globals) *cobra.Command {
	opts := &benchProvisionOptions{}
	var keep, withStepCA bool
	var rootAlg, identity, deviceIDAlg string
	stepCABin := findStepCA()
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Provision emulated chips through the factory over mutual TLS and report chips/s and latency",
		Long: `Set up the factory of part 4 of the demo on 127.0.0.1 (a SoftHSM2 token,
the CA ceremony with keys in it, one station certificate per station, the
issuance log with tree heads signed in the token, a SQLite registry, the
provisioning API over mutual TLS), fuse and boot --chips emulated chips with
the signed factory test firmware (not timed), then let --stations stations,
each with a TLS client of its own, provision them concurrently.

It prints the chips per second and the latency of one chip's provisioning
(nonce, evidence, request, IDevID written to the chip, confirmation)
at the 50th, 90th and 99th percentiles and the maximum, and checks that
the registry holds --chips COMPLETE records and the log --chips leaves.
Then, for on-chip identities, the floor the signatures alone set: the
signatures one chip's provisioning makes and checks (the service checks
seven, the chip makes two and checks four, the HSM makes one), timed with
Go's crypto on every core of this machine in the same run, the CPU they
take per chip and the chips/s they would allow if nothing else ran, and
the ratio of the achieved rate to it.

With --stepca (the default when step-ca is on PATH or in rootline's tool
cache, where make deps builds it), a step-ca under the same root then
issues --chips equivalent IDevIDs (P-256 CSRs with a UEID and a DICE
TcbInfo, made before the clock starts) to --stations concurrent clients of
package ca/stepca, and the ratio of the two rates is printed. step-ca only
signs; the factory also verifies evidence, records the chip in the
registry, appends to the log and writes the chip.

With --identity injected the product's identity is injected: for each
chip, the station sends its evidence and DeviceID-signed transport key,
the token makes a P-256 device key and wraps it (and --secrets per-device
secrets derived from a product master) for that chip, the CA certifies
it, the chip unwraps and installs it, and once it confirms the token's
copy is destroyed; the token is checked to hold no device key at the end.
(--identity tpm is not offered: a TPM per chip, one swtpm process each,
would measure swtpm.)

Progress goes to stderr, results to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd)
			if err != nil {
				return err
			}
			if opts.Dir == "" {
				d, err := os.MkdirTemp("", "rootline-bench-")
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
			if opts.RootAlg, err = hsm.ParseAlgorithm(rootAlg); err != nil {
				return fmt.Errorf("bench: --root-alg: %w", err)
			}
			if opts.DeviceIDAlg, err = pluton.ParseAlgorithm(deviceIDAlg); err != nil || opts.DeviceIDAlg == pluton.MLDSA65 {
				return fmt.Errorf("bench: --deviceid-alg %q: want p256, p384 or ed25519", deviceIDAlg)
			}
			switch identity {
			case "on-chip":
				opts.Identity = provision.OnChip
			case "injected":
				opts.Identity = provision.Injected
			case "tpm":
				return errors.New("bench: --identity tpm is not offered (one swtpm process per chip would measure swtpm); use on-chip or injected")
			default:
				return fmt.Errorf("bench: --identity %q: want on-chip or injected", identity)
			}
			if opts.Identity != provision.Injected && cmd.Flags().Changed("secrets") {
				return errors.New("bench: --secrets goes with --identity injected")
			}
			opts.Out, opts.Progress, opts.Logger = cmd.OutOrStdout(), cmd.ErrOrStderr(), log
			if withStepCA {
				if stepCABin == "" {
					return errors.New("bench: --stepca: step-ca is neither on PATH nor in rootline's tool cache (make deps builds it)")
				}
				opts.StepCA = stepCABin
			}
			res, err := runBenchProvision(cmd.Context(), opts)
			if err != nil || opts.Identity != provision.Injected {
				return err
			}
			// The same run again with on-chip identity, so that the
			// injected figure is read next to the on-chip one measured
			// on the same machine at the same time.
			onChip := *opts
			onChip.Identity, onChip.Secrets, onChip.StepCA, onChip.Profile = provision.OnChip, 0, "", ""
			onChip.Dir = filepath.Join(opts.Dir, "on-chip")
			if onChip.ChipsDir != "" {
				onChip.ChipsDir = filepath.Join(onChip.ChipsDir, "on-chip")
			}
			if err := os.MkdirAll(onChip.Dir, 0o700); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\nthe same with on-chip identity:\n")
			ref, err := runBenchProvision(cmd.Context(), &onChip)
			if err != nil {
				return err
			}
			in, on := float64(res.Chips)/res.Elapsed.Seconds(), float64(ref.Chips)/ref.Elapsed.Seconds()
			fmt.Fprintf(cmd.OutOrStdout(), "\ninjected   %.1f chips/s, on-chip %.1f chips/s (ratio %.2f)\n", in, on, in/on)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Chips, "chips", 200, "number of chips to provision")
	f.IntVar(&opts.Stations, "stations", 2, "number of concurrent stations")
	f.StringVar(&opts.Dir, "dir", "", "directory for the factory's state (default: a temporary directory, removed afterwards)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory")
	f.StringVar(&rootAlg, "root-alg", "p384", "algorithm of the factory root key: p256, p384 or ed25519 (each chip verifies the root's signature on the intermediate)")
	f.StringVar(&deviceIDAlg, "deviceid-alg", "p256", "the chips' DICE algorithm (DeviceID and Alias keys, evidence): p256, p384 or ed25519")
	f.StringVar(&opts.ChipsDir, "chips-dir", "", "directory for the emulated chips' state, their flash (default: chips/ under --dir); a tmpfs keeps the chips' writes off the factory's disk")
	f.StringVar(&opts.Profile, "profile", "", "write CPU, block and mutex profiles of the timed phase to this directory (go tool pprof reads them)")
	f.BoolVar(&withStepCA, "stepca", stepCABin != "", "also measure step-ca issuing as many IDevIDs (default: on when step-ca is found)")
	f.StringVar(&identity, "identity", "on-chip", "the product's identity: on-chip (the chip makes its key) or injected (the token makes and wraps it)")
	f.IntVar(&opts.Secrets, "secrets", 1, "with --identity injected: per-device secrets wrapped for each chip (0 to 16)")
	return cmd
}

// progress writes a \r-updated line "what n/total" to w, at most every
// 100 ms, and a final newline from done.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	what  string
	total int
	n     int
	last  time.Time
	start time.Time
}

func newProgress(w io.Writer, what string, total int) *progress {
	p := &progress{w: w, what: what, total: total, start: time.Now()}
	p.print()
	return p
}

func (p *progress) print() {
	width := 30
	filled := 0
	if p.total > 0 {
		filled = p.n * width / p.total
	}
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < filled {
			bar[i] = '='
		}
	}
	fmt.Fprintf(p.w, "\r%s [%s] %d/%d %.1fs", p.what, bar, p.n, p.total, time.Since(p.start).Seconds())
}

func (p *progress) add() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond || p.n == p.total {
		p.last = now
		p.print()
	}
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.print()
	fmt.Fprintln(p.w)
}

// percentile is the nearest-rank percentile q (0 < q ≤ 100) of sorted.
func percentile(sorted []time.Duration, q int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (q*len(sorted)+99)/100 - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// runBenchProvision sets up the factory in opts.Dir and provisions
// opts.Chips chips with opts.Stations concurrent stations. It points
// SOFTHSM2_CONF at a configuration in opts.Dir (os.Setenv), so it must run
// before anything else in the process loads SoftHSM2.
func runBenchProvision(ctx context.Context, opts *benchProvisionOptions) (*benchProvisionResult, error) {
	if opts.Chips < 1 || opts.Chips > benchMaxChips {
		return nil, fmt.Errorf("bench: --chips must be 1 to %d", benchMaxChips)
	}
	if opts.Stations < 1 || opts.Stations > benchMaxStations {
		return nil, fmt.Errorf("bench: --stations must be 1 to %d", benchMaxStations)
	}
	if opts.Secrets < 0 || opts.Secrets > benchMaxSecrets {
		return nil, fmt.Errorf("bench: --secrets must be 0 to %d", benchMaxSecrets)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.RootAlg == 0 {
		opts.RootAlg = hsm.P384
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

	// 1. The SoftHSM2 token, as in part 3 of the demo.
	module, err := hsm.FindSoftHSM()
	if err != nil {
		return nil, fmt.Errorf("bench: needs SoftHSM2 (make deps installs it): %w", err)
	}
	const label = "rootline-bench"
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		return nil, err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	var pin [12]byte
	if _, err := rand.Read(pin[:]); err != nil {
		return nil, err
	}
	pinFile := filepath.Join(dir, "user.pin")
	err = os.WriteFile(pinFile, []byte(hex.EncodeToString(pin[:])+"\n"), 0o600)
	clear(pin[:])
	if err != nil {
		return nil, err
	}
	if _, err := hsm.InitToken(ctx, &hsm.InitTokenRequest{ModulePath: module, Label: label, PIN: &hsm.FilePIN{Path: pinFile}, Logger: log}); err != nil {
		return nil, err
	}
	uri := func(object string) string {
		return "pkcs11:token=" + label + ";object=" + object + "?pin-source=file:" + pinFile
	}

	// 2. The service, as in part 4 of the demo.
	fmt.Fprintf(prog, "bench: setting up the factory in %s\n", dir)
	caDir := filepath.Join(dir, "ca")
	hwType := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}
	kr := newKeyring(log)
	defer kr.Close()
	res, err := caInit(ctx, kr, &initParams{out: caDir, org: "Rootline Bench", rootKey: uri("factory-root"), interKey: uri("factory-sku-a"),
		stationKey: uri("factory-stations"), product: "sku-a", hwType: hwType, generate: true, rootAlg: opts.RootAlg, interAlg: hsm.P256})
	if err != nil {
		return nil, err
	}
	local, err := openLocal(ctx, caDir, res.cfg, kr, log, "sku-a", ca.StationsIssuer)
	if err != nil {
		return nil, err
	}
	stationCerts := make([]tls.Certificate, opts.Stations)
	for i := range stationCerts {
		name := fmt.Sprintf("line-%d", i+1)
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, k)
		if err != nil {
			return nil, err
		}
		iss, err := local.Issue(ctx, &ca.IssueRequest{CSR: csr, Profile: ca.ProfileStation, Station: name, Products: []string{"sku-a"}})
		if err != nil {
			return nil, err
		}
		c := tls.Certificate{Certificate: [][]byte{iss.Certificate.Raw}, PrivateKey: k, Leaf: iss.Certificate}
		for _, ic := range iss.Chain[:len(iss.Chain)-1] {
			c.Certificate = append(c.Certificate, ic.Raw)
		}
		stationCerts[i] = c
	}
	tlsCA, serverCert, err := demoTLSCertificates()
	if err != nil {
		return nil, err
	}
	logKey, _, err := kr.create(ctx, "issuance log", uri("factory-log"), hsm.Ed25519)
	if err != nil {
		return nil, err
	}
	logSigner, err := translog.NewSigner("log.factory.rootline.bench", logKey)
	if err != nil {
		return nil, err
	}
	st, err := translog.OpenFileStore(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	tl, err := translog.New(st, logSigner)
	if err != nil {
		return nil, err
	}
	reg, err := registry.OpenSQLite(ctx, &registry.SQLiteConfig{Path: filepath.Join(dir, "registry.db")})
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	fw, err := newFactoryFirmware("sku-a")
	if err != nil {
		return nil, err
	}
	fw.deviceIDAlg = opts.DeviceIDAlg
	// The chips pin the factory root, as production chips should
	// (device.InitRequest.FactoryRootHash).
	if fw.factoryRoot, err = device.FactoryRootHash(res.root, crypto.SHA256); err != nil {
		return nil, err
	}
	refs := map[string]provision.LayerReference{}
	for _, l := range boot.Layers() {
		img, err := boot.ParseImage(fw.images[l])
		if err != nil {
			return nil, err
		}
		refs[string(l)] = provision.LayerReference{Digests: [][]byte{img.Manifest.Digest}, MinSVN: img.Manifest.SVN}
	}
	var nonceKey [32]byte
	if _, err := rand.Read(nonceKey[:]); err != nil {
		return nil, err
	}
	policy := &provision.ProductPolicy{HWType: hwType, Chain: []*x509.Certificate{res.inter, res.root}, ReferenceValues: refs}
	var injectModule *hsm.Module
	if opts.Identity == provision.Injected {
		if injectModule, _, err = kr.module(ctx, uri("factory-sku-a")); err != nil {
			return nil, err
		}
		in := &provision.InjectionPolicy{Injector: hsminject.New(injectModule, nil)}
		if opts.Secrets > 0 {
			master, err := injectModule.CreateSecretMaster(ctx, "factory-sku-a-master")
			if err != nil {
				return nil, err
			}
			in.SecretMaster = master.String()
			for i := range opts.Secrets {
				in.Secrets = append(in.Secrets, fmt.Sprintf("secret-%d", i+1))
			}
		}
		policy.Identity, policy.Injection = provision.Injected, in
	}
	svc, err := provision.New(&provision.Config{
		Registry: reg, Issuer: local, Log: tl, NonceKey: nonceKey[:], Logger: log,
		Products: map[string]*provision.ProductPolicy{"sku-a": policy},
	})
	clear(nonceKey[:])
	if err != nil {
		return nil, err
	}
	addr, stopServing, err := serveInProcess(ctx, svc, serverCert, res.stations, log)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer stopServing()
	serverCA := x509.NewCertPool()
	serverCA.AddCert(tlsCA)

	// 3. The chips, fused and booted before the clock starts.
	chipsDir := opts.ChipsDir
	if chipsDir == "" {
		chipsDir = filepath.Join(dir, "chips")
	}
	result := &benchProvisionResult{Chips: opts.Chips, Stations: opts.Stations}
	devs := make([]*device.Device, opts.Chips)
	defer func() {
		for _, d := range devs {
			if d != nil {
				d.Close()
			}
		}
	}()
	start := time.Now()
	p := newProgress(prog, "preparing chips   ", opts.Chips)
	for i := range devs {
		if devs[i], err = fw.bootChip(ctx, filepath.Join(chipsDir, fmt.Sprintf("chip-%d", i+1)), log); err != nil {
			p.done()
			return nil, fmt.Errorf("bench: chip %d: %w", i+1, err)
		}
		p.add()
	}
	p.done()
	result.Prepare = time.Since(start)

	// 4. The stations, timed.
	clients := make([]*station.Client, opts.Stations)
	for i, c := range stationCerts {
		if clients[i], err = station.Dial(&station.Config{URL: "https://" + addr.String(), Certificate: c, ServerCA: serverCA, Timeout: time.Minute}); err != nil {
			return nil, err
		}
		defer clients[i].Close()
	}
	result.Latencies = make([]time.Duration, opts.Chips)
	var next atomic.Int64
	errs := make([]error, opts.Stations)
	var wg sync.WaitGroup
	stopProfile, err := startProfiles(opts.Profile)
	if err != nil {
		return nil, err
	}
	p = newProgress(prog, "provisioning chips", opts.Chips)
	cpu0 := sampleCPU("self")
	start = time.Now()
	for s, client := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(devs) || ctx.Err() != nil {
					return
				}
				t := time.Now()
				var err error
				if opts.Identity == provision.Injected {
					_, err = station.ProvisionInjectedChip(ctx, client, devs[i], "sku-a", "lot-1")
				} else {
					_, err = station.ProvisionChip(ctx, client, devs[i], "sku-a", "lot-1")
				}
				if err == nil {
					err = devs[i].Flush()
				}
				result.Latencies[i] = time.Since(t)
				if err != nil {
					errs[s] = fmt.Errorf("bench: station line-%d, chip %d: %w", s+1, i+1, err)
					cancel()
					return
				}
				p.add()
			}
		})
	}
	wg.Wait()
	result.Elapsed = time.Since(start)
	result.CPU, result.Others = sampleCPU("self").since(cpu0)
	p.done()
	if err := stopProfile(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// 5. The results, and the registry and log checked.
	slices.Sort(result.Latencies)
	sorted := result.Latencies
	fmt.Fprintf(out, "chips      %d\n", result.Chips)
	fmt.Fprintf(out, "stations   %d\n", result.Stations)
	fmt.Fprintf(out, "root       %s (intermediate P-256, keys in SoftHSM2); chips' DICE keys %s\n", opts.RootAlg, opts.DeviceIDAlg)
	if opts.Identity == provision.Injected {
		fmt.Fprintf(out, "identity   injected (P-256 device keys made and wrapped in SoftHSM2; per-device secrets: %d)\n", opts.Secrets)
	} else {
		fmt.Fprintf(out, "identity   on-chip\n")
	}
	fmt.Fprintf(out, "prepare    %s (not timed)\n", result.Prepare.Round(time.Millisecond))
	fmt.Fprintf(out, "elapsed    %s\n", result.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "chips/s    %.1f\n", float64(result.Chips)/result.Elapsed.Seconds())
	printLatency(out, sorted)
	printCPU(out, "chip", result.Chips, result.Elapsed, result.CPU, result.Others, "this process: service, stations, chips, SoftHSM2")
	stats, err := reg.Stats(ctx)
	if err != nil {
		return nil, err
	}
	size, err := tl.Size(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "registry   %d COMPLETE, %d ISSUING, %d ISSUED, %d incidents\n", stats.Complete, stats.Issuing, stats.Issued, stats.Incidents)
	fmt.Fprintf(out, "log        %d leaves\n", size)
	if stats.Complete != int64(opts.Chips) || stats.Issuing != 0 || stats.Issued != 0 || stats.Incidents != 0 {
		return nil, fmt.Errorf("bench: the registry has %d COMPLETE, %d ISSUING, %d ISSUED records and %d incidents, want %d COMPLETE and nothing else",
			stats.Complete, stats.Issuing, stats.Issued, stats.Incidents, opts.Chips)
	}
	if size != int64(opts.Chips) {
		return nil, fmt.Errorf("bench: the log has %d leaves, want %d", size, opts.Chips)
	}
	if injectModule != nil {
		keys, err := injectModule.List(ctx)
		if err != nil {
			return nil, err
		}
		left := 0
		for _, k := range keys {
			if strings.HasPrefix(k.Label, "rootline-idevid-") {
				left++
			}
		}
		fmt.Fprintf(out, "hsm        %d device keys left\n", left)
		if left != 0 {
			return nil, fmt.Errorf("bench: %d injected device keys left in the token after confirmation", left)
		}
	}

	// The floor the signatures alone set, measured now on these cores.
	if opts.Identity != provision.Injected {
		fmt.Fprintf(prog, "bench: measuring Go's raw signature rates on %d cores\n", benchCores())
		dice := opts.DeviceIDAlg
		if dice == pluton.AlgorithmUnknown {
			dice = pluton.ECDSAP256 // the chips' default
		}
		work := onChipSignatures(dice, pluton.ECDSAP256, hsmToPluton(opts.RootAlg))
		costs, err := measureSigCosts(work, 300*time.Millisecond)
		if err != nil {
			return nil, err
		}
		printFloor(out, "chip", work, costs, float64(result.Chips)/result.Elapsed.Seconds())
	}

	// 6. step-ca, under the same root.
	if opts.StepCA == "" {
		return result, nil
	}
	rootKey, err := kr.signer(ctx, "root", res.cfg.Root.Key)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(prog, "bench: starting %s\n", opts.StepCA)
	sca, provKey, kid, err := startStepCA(ctx, opts.StepCA, filepath.Join(dir, "step-ca"), res.root, rootKey, res.cfg.Organization)
	if err != nil {
		return nil, err
	}
	defer sca.stop()
	scc, err := stepca.New(&stepca.Config{URL: sca.url, Root: res.root, Products: ca.Products{"sku-a": hwType},
		Key: provKey, KeyID: kid, Organization: res.cfg.Organization, Logger: log})
	if err != nil {
		return nil, err
	}
	defer scc.Close()
	pid := fmt.Sprint(sca.cmd.Process.Pid)
	scpu0 := sampleCPU(pid)
	if result.StepCA, err = runStepCABench(ctx, scc, opts.Chips, opts.Stations, prog); err != nil {
		return nil, err
	}
	// The server's CPU, from before the clients made their CSRs to after
	// the last answer: the server did nothing else meanwhile.
	result.StepCACPU, _ = sampleCPU(pid).since(scpu0)
	ours := float64(result.Chips) / result.Elapsed.Seconds()
	theirs := float64(result.Chips) / result.StepCA.Elapsed.Seconds()
	fmt.Fprintf(out, "step-ca    %d IDevIDs, %d clients, %s\n", result.Chips, result.Stations, result.StepCA.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "certs/s    %.1f\n", theirs)
	printLatency(out, result.StepCA.Latencies)
	if result.StepCACPU > 0 {
		fmt.Fprintf(out, "cpu        %s, %.2f ms per cert (the step-ca server alone; its clients not counted)\n",
			result.StepCACPU.Round(10*time.Millisecond), float64(result.StepCACPU.Microseconds())/1e3/float64(result.Chips))
	}
	fmt.Fprintf(out, "ratio      %.2f (chips/s / step-ca certs/s)\n", ours/theirs)
	return result, nil
}

// printCPU prints the CPU time of a timed phase of n items, per item, and
// how many cores the rest of the machine used meanwhile (nothing if /proc
// could not tell).
func printCPU(w io.Writer, item string, n int, elapsed, cpu, others time.Duration, who string) {
	if cpu <= 0 {
		return
	}
	fmt.Fprintf(w, "cpu        %s, %.2f ms per %s (%s); other processes used %.2f cores meanwhile\n",
		cpu.Round(10*time.Millisecond), float64(cpu.Microseconds())/1e3/float64(n), item, who, others.Seconds()/elapsed.Seconds())
}

// printLatency prints the percentiles of sorted (not empty).
func printLatency(w io.Writer, sorted []time.Duration) {
	const r = 10 * time.Microsecond
	fmt.Fprintf(w, "latency    p50 %s  p90 %s  p99 %s  max %s\n",
		percentile(sorted, 50).Round(r), percentile(sorted, 90).Round(r), percentile(sorted, 99).Round(r), sorted[len(sorted)-1].Round(r))
}
