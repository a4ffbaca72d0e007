package main

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/provision/translog"
)

// maxCertFile bounds a certificate file given to rootline log.
const maxCertFile = 2 * translog.MaxLeafSize

func newLogCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "The issuance log: a transparency log of issued certificates",
		Long: `The factory's issuance log is a transparency log (the Go checksum
database's, golang.org/x/mod/sumdb/tlog) whose leaves are the DER of every
issued certificate. Its tree heads are notes (golang.org/x/mod/sumdb/note)
signed with an Ed25519 key, normally in an HSM.

Anyone holding a signed tree head and the log's verifier key can check
that a certificate was logged, and that a newer tree head extends an
older one (the log was never rewritten):

  rootline log verify --key KEY --head head.note --cert cert.pem --index N --proof incl.bin
  rootline log verify --key KEY --old old.note --new new.note --proof cons.bin

The files come from the log's HTTP API (rootline log serve, or the
provisioning service; download with rootline log fetch) or, on the log's
own host, from rootline log head and rootline log prove.`,
	}
	cmd.AddCommand(
		newLogKeygenCommand(),
		newLogAppendCommand(),
		newLogHeadCommand(g),
		newLogProveCommand(),
		newLogVerifyCommand(),
		newLogServeCommand(g),
		newLogFetchCommand(),
	)
	return cmd
}

func openLogStore(dir string) (*translog.FileStore, error) {
	if dir == "" {
		return nil, errors.New("--dir DIR is required")
	}
	return translog.OpenFileStore(dir)
}

func writeOut(cmd *cobra.Command, out string, b []byte) error {
	if out == "" || out == "-" {
		_, err := cmd.OutOrStdout().Write(b)
		return err
	}
	return atomicfile.Write(out, b, 0o644)
}

func newLogKeygenCommand() *cobra.Command {
	var name, out string
	cmd := &cobra.Command{
		Use:   "keygen --name NAME --out FILE",
		Short: "Generate a software tree-head signing key (development only)",
		Long: `Generate an Ed25519 note signing key in software and write it to FILE
(mode 0600) in the note format "PRIVATE+KEY+NAME+HASH+KEY"; print the
verifier key. For development and tests: a factory keeps the log's key in
an HSM (rootline hsm keygen --alg ed25519; then --hsm-key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || out == "" {
				return errors.New("--name and --out are required")
			}
			skey, vkey, err := note.GenerateKey(rand.Reader, name)
			if err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := f.WriteString(skey + "\n"); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "verifier key: %s\n", vkey)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the log (required)")
	cmd.Flags().StringVar(&out, "out", "", "file for the private key, created mode 0600 (required)")
	return cmd
}

// readLogCert reads a certificate file, PEM or DER, and returns its DER.
func readLogCert(path string) ([]byte, error) {
	b, err := readFileLimited(path, maxCertFile)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %q, want CERTIFICATE", path, blk.Type)
		}
		return blk.Bytes, nil
	}
	return b, nil
}

func newLogAppendCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "append --dir DIR CERT...",
		Short: "Append certificates (PEM or DER) to a log in DIR",
		Long: `Append each certificate's DER to the log stored in DIR (created if
missing) and print its index. The provisioning service appends as it
issues; this command is for tests and repairs.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openLogStore(dir)
			if err != nil {
				return err
			}
			defer st.Close()
			l, err := translog.New(st, nil)
			if err != nil {
				return err
			}
			for _, a := range args {
				der, err := readLogCert(a)
				if err != nil {
					return err
				}
				i, err := l.Append(cmd.Context(), der)
				if err != nil {
					return fmt.Errorf("%s: %w", a, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d %s\n", i, a)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the log (required)")
	return cmd
}

// logKeyFlags name the key that signs tree heads.
type logKeyFlags struct{ keyFile, hsmKey, name string }

func (k *logKeyFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.keyFile, "signing-key", "", "file holding a note private key (see rootline log keygen)")
	cmd.Flags().StringVar(&k.hsmKey, "hsm-key", "", "PKCS#11 URI of an Ed25519 key, with pin-source")
	cmd.Flags().StringVar(&k.name, "name", "", "name of the log, with --hsm-key")
}

// openLog opens the log in dir with the tree-head signer of k; the
// function it returns closes both.
func (k *logKeyFlags) openLog(cmd *cobra.Command, g *globals, dir string) (*translog.Log, func(), error) {
	signer, closeKey, err := k.open(cmd, g)
	if err != nil {
		return nil, nil, err
	}
	st, err := openLogStore(dir)
	if err != nil {
		closeKey()
		return nil, nil, err
	}
	l, err := translog.New(st, signer)
	if err != nil {
		st.Close()
		closeKey()
		return nil, nil, err
	}
	return l, func() { st.Close(); closeKey() }, nil
}

// open returns the signer and a function that releases it. With an HSM
// key, it prints the verifier key on stderr.
func (k *logKeyFlags) open(cmd *cobra.Command, g *globals) (note.Signer, func(), error) {
	ctx := cmd.Context()
	switch {
	case k.keyFile != "" && k.hsmKey == "":
		b, err := readFileLimited(k.keyFile, 1024)
		if err != nil {
			return nil, nil, fmt.Errorf("--signing-key: %w", err)
		}
		s, err := note.NewSigner(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, nil, fmt.Errorf("--signing-key: %w", err)
		}
		return s, func() {}, nil
	case k.hsmKey != "" && k.keyFile == "":
		log, err := g.logger(cmd)
		if err != nil {
			return nil, nil, err
		}
		m, err := hsm.Open(ctx, k.hsmKey, &hsm.Options{Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("--hsm-key: %w", err)
		}
		key, err := m.Signer(ctx, k.hsmKey)
		if err != nil {
			m.Close()
			return nil, nil, fmt.Errorf("--hsm-key: %w", err)
		}
		s, err := translog.NewSigner(k.name, key)
		if err != nil {
			m.Close()
			return nil, nil, fmt.Errorf("--hsm-key: %w", err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "verifier key: %s\n", s.VerifierKey())
		return s, func() { m.Close() }, nil
	}
	return nil, nil, errors.New("want one of --signing-key FILE or --hsm-key URI")
}

func newLogHeadCommand(g *globals) *cobra.Command {
	var dir, out string
	var k logKeyFlags
	cmd := &cobra.Command{
		Use:   "head --dir DIR (--signing-key FILE | --hsm-key URI --name NAME) [--out FILE]",
		Short: "Sign and print the log's current tree head",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			l, closeLog, err := k.openLog(cmd, g, dir)
			if err != nil {
				return err
			}
			defer closeLog()
			h, err := l.TreeHead(ctx)
			if err != nil {
				return err
			}
			return writeOut(cmd, out, h)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the log (required)")
	k.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "output file (default stdout)")
	return cmd
}

func newLogProveCommand() *cobra.Command {
	var dir, out string
	var index, size, oldSize, newSize int64
	cmd := &cobra.Command{
		Use:   "prove --dir DIR (--index I --size N | --old M --new N) --out FILE",
		Short: "Write an inclusion or consistency proof",
		Long: `Write the inclusion proof of leaf I in the tree of N leaves, or the
consistency proof from the tree of M leaves to the tree of N leaves, as
the HTTP API serves it: 32-byte hashes, concatenated.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			incl := cmd.Flags().Changed("index") || cmd.Flags().Changed("size")
			cons := cmd.Flags().Changed("old") || cmd.Flags().Changed("new")
			if incl == cons {
				return errors.New("want --index and --size, or --old and --new")
			}
			st, err := openLogStore(dir)
			if err != nil {
				return err
			}
			defer st.Close()
			l, err := translog.New(st, nil)
			if err != nil {
				return err
			}
			var p []tlog.Hash
			if incl {
				p, err = l.InclusionProof(cmd.Context(), index, size)
			} else {
				p, err = l.ConsistencyProof(cmd.Context(), oldSize, newSize)
			}
			if err != nil {
				return err
			}
			return writeOut(cmd, out, translog.MarshalProof(p))
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the log (required)")
	cmd.Flags().StringVar(&out, "out", "", "output file (default stdout)")
	cmd.Flags().Int64Var(&index, "index", 0, "index of the leaf")
	cmd.Flags().Int64Var(&size, "size", 0, "tree size of the inclusion proof")
	cmd.Flags().Int64Var(&oldSize, "old", 0, "older tree size")
	cmd.Flags().Int64Var(&newSize, "new", 0, "newer tree size")
	return cmd
}

func newLogVerifyCommand() *cobra.Command {
	var key, head, cert, proof, oldHead, newHead string
	var index int64
	cmd := &cobra.Command{
		Use:   "verify --key KEY (--head F --cert F --index N | --old F --new F) --proof F",
		Short: "Check that a certificate was logged, or that a log was never rewritten",
		Long: `With --head, --cert and --index: check that the certificate (PEM or DER)
is leaf N of the tree whose signed head is in --head.

With --old and --new: check that the tree of the newer signed head extends
the older one, that is, that every certificate logged before is still
there, unchanged.

Both check the heads' signatures with the verifier key KEY (the note
format NAME+HASH+KEY, or @FILE holding it) and the proof (32-byte hashes,
concatenated, as the log's HTTP API serves it). Exit status 1 when the
check fails.`,
		Example: `  rootline log verify --key @log.vkey --head head.note --cert dev.pem --index 41 --proof incl.bin
  rootline log verify --key @log.vkey --old monday.note --new head.note --proof cons.bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name, ok := strings.CutPrefix(key, "@"); ok {
				b, err := readFileLimited(name, 1024)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				key = strings.TrimSpace(string(b))
			}
			if key == "" || proof == "" {
				return errors.New("--key and --proof are required")
			}
			pb, err := readFileLimited(proof, translog.MaxProofHashes*tlog.HashSize)
			if err != nil {
				return fmt.Errorf("--proof: %w", err)
			}
			p, err := translog.ParseProof(pb)
			if err != nil {
				return fmt.Errorf("--proof: %w", err)
			}
			readHead := func(flag, path string) ([]byte, error) {
				b, err := readFileLimited(path, translog.MaxHeadSize)
				if err != nil {
					return nil, fmt.Errorf("--%s: %w", flag, err)
				}
				return b, nil
			}
			w := cmd.OutOrStdout()
			switch {
			case head != "" && cert != "" && oldHead == "" && newHead == "":
				if !cmd.Flags().Changed("index") {
					return errors.New("--index is required with --cert")
				}
				h, err := readHead("head", head)
				if err != nil {
					return err
				}
				der, err := readLogCert(cert)
				if err != nil {
					return err
				}
				t, err := translog.VerifyInclusion(key, h, der, index, p)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "OK: certificate is leaf %d of the log's tree of %d leaves (root %s)\n", index, t.N, t.Hash)
			case oldHead != "" && newHead != "" && head == "" && cert == "":
				o, err := readHead("old", oldHead)
				if err != nil {
					return err
				}
				n, err := readHead("new", newHead)
				if err != nil {
					return err
				}
				ot, nt, err := translog.VerifyConsistency(key, o, n, p)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "OK: the tree of %d leaves extends the tree of %d leaves\n", nt.N, ot.N)
			default:
				return errors.New("want --head, --cert and --index, or --old and --new")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the log's verifier key, or @FILE (required)")
	cmd.Flags().StringVar(&head, "head", "", "signed tree head file")
	cmd.Flags().StringVar(&cert, "cert", "", "certificate file, PEM or DER")
	cmd.Flags().Int64Var(&index, "index", 0, "index of the certificate in the log")
	cmd.Flags().StringVar(&oldHead, "old", "", "older signed tree head file")
	cmd.Flags().StringVar(&newHead, "new", "", "newer signed tree head file")
	cmd.Flags().StringVar(&proof, "proof", "", "proof file (required)")
	return cmd
}

func newLogFetchCommand() *cobra.Command {
	var base, dir string
	var index, oldSize int64
	cmd := &cobra.Command{
		Use:   "fetch --url URL --out DIR [--index N] [--old M]",
		Short: "Download the tree head, and proofs, from a log's HTTP API",
		Long: `Download the current signed tree head into DIR/head.note; with --index N
also the certificate (DIR/cert.der) and its inclusion proof in that tree
(DIR/inclusion.bin); with --old M the consistency proof from the tree of
M leaves to that tree (DIR/consistency.bin). Nothing is trusted until
rootline log verify has checked it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := url.Parse(base)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return errors.New("--url: want http(s)://HOST[:PORT][/PREFIX]")
			}
			if dir == "" {
				return errors.New("--out DIR is required")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			get := func(path string, q url.Values, max int64, file string) ([]byte, error) {
				v := *u
				v.Path = strings.TrimSuffix(v.Path, "/") + path
				v.RawQuery = q.Encode()
				b, err := httpGet(ctx, v.String(), max)
				if err != nil {
					return nil, err
				}
				return b, atomicfile.Write(filepath.Join(dir, file), b, 0o644)
			}
			h, err := get(translog.PathHead, nil, translog.MaxHeadSize, "head.note")
			if err != nil {
				return err
			}
			// The size the proofs are for: the head's, read unverified.
			size, err := headSize(h)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "head: %d leaves\n", size)
			num := func(n int64) string { return fmt.Sprint(n) }
			if cmd.Flags().Changed("index") {
				if _, err := get(translog.PathLeaf, url.Values{"index": {num(index)}}, translog.MaxLeafSize, "cert.der"); err != nil {
					return err
				}
				if _, err := get(translog.PathInclusion, url.Values{"index": {num(index)}, "size": {num(size)}},
					translog.MaxProofHashes*tlog.HashSize, "inclusion.bin"); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("old") {
				if _, err := get(translog.PathConsistency, url.Values{"old": {num(oldSize)}, "new": {num(size)}},
					translog.MaxProofHashes*tlog.HashSize, "consistency.bin"); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&base, "url", "", "base URL of the log's API (required)")
	cmd.Flags().StringVar(&dir, "out", "", "directory for the downloaded files (required)")
	cmd.Flags().Int64Var(&index, "index", 0, "also fetch this leaf and its inclusion proof")
	cmd.Flags().Int64Var(&oldSize, "old", 0, "also fetch the consistency proof from this tree size")
	return cmd
}

// headSize reads the tree size of an untrusted signed head without
// checking its signature (the proofs fetched for it are checked with it).
func headSize(h []byte) (int64, error) {
	_, err := note.Open(h, note.VerifierList())
	var unv *note.UnverifiedNoteError
	if !errors.As(err, &unv) {
		return 0, fmt.Errorf("tree head: %w", translog.ErrMalformedHead)
	}
	t, err := tlog.ParseTree([]byte(unv.Note.Text))
	if err != nil {
		return 0, fmt.Errorf("tree head: %w", translog.ErrMalformedHead)
	}
	return t.N, nil
}

func httpGet(ctx context.Context, u string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("GET %s: body longer than %d bytes", u, max)
	}
	return b, nil
}

func newLogServeCommand(g *globals) *cobra.Command {
	var dir, listen, addrFile string
	var k logKeyFlags
	cmd := &cobra.Command{
		Use:   "serve --dir DIR --listen ADDR (--signing-key FILE | --hsm-key URI --name NAME)",
		Short: "Serve the log's tree head, proofs and certificates over HTTP",
		Long: `Serve the log in DIR read-only over HTTP, until interrupted:

  GET /v1/log/head                              the signed tree head (a note)
  GET /v1/log/proof/inclusion?index=I&size=N    inclusion proof of leaf I
  GET /v1/log/proof/consistency?old=M&new=N     consistency proof, M to N leaves
  GET /v1/log/leaf?index=I                      certificate I (DER)

Proofs are 32-byte hashes, concatenated. The store is locked: append
with the provisioning service, not with rootline log append, while it
runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log, err := g.logger(cmd)
			if err != nil {
				return err
			}
			l, closeLog, err := k.openLog(cmd, g, dir)
			if err != nil {
				return err
			}
			defer closeLog()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			if addrFile != "" {
				if err := atomicfile.Write(addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
					ln.Close()
					return err
				}
			}
			srv := &http.Server{
				Handler:           translog.Handler(l, log),
				ReadHeaderTimeout: 10 * time.Second,
				ReadTimeout:       30 * time.Second,
				WriteTimeout:      30 * time.Second,
				IdleTimeout:       2 * time.Minute,
				MaxHeaderBytes:    16 << 10,
				ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}
			log.Info("log: serving", "addr", ln.Addr().String())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the log (required)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8088", "TCP address to listen on")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the address listened on to this file (for --listen :0)")
	k.register(cmd)
	return cmd
}
