package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/boot"
)

// newImageCommand is the signing tool of the OS vendor and the device
// maker, and a verifier that does what the boot ROM does.
func newImageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Sign and verify boot images and trust policies (pluton/boot)",
		Long: `Sign and verify the images of the secure boot chain.

An image is a manifest (layer, product, version, security version number
(SVN), payload digest, signer key ids) signed as a COSE_Sign1 (RFC 9052),
followed by the payload. A hybrid image carries two signatures, ECDSA and
ML-DSA-65, as a COSE_Sign. The device maker's root key signs a trust policy:
which keys may sign each layer (bootloader, os, app), which layers require
hybrid signatures, and which keys are revoked. The chip fuses the hash of
the root key, and verifies the policy, then each layer's image, before
running it: signature by an authorized, unrevoked signer, and an SVN at
least the chip's counter for the layer.

A typical flow:

  rootline image keygen --alg p384 --out root          # device maker
  rootline image keygen --alg ed25519 --out os         # OS vendor
  rootline image policy --root-key root.key --product sku-a --version 1 \
      --signer os=os.pub --out policy.cbor
  rootline image roothash --pub root.pub               # the hash to fuse
  rootline image sign --key os.key --layer os --product sku-a \
      --version 1.4.0 --svn 3 --in kernel.bin --out os.img
  rootline image inspect os.img
  rootline image verify --policy policy.cbor --root-key-hash HEX \
      --product sku-a --layer os --min-svn 3 os.img`,
	}
	cmd.AddCommand(
		newImageKeygenCommand(),
		newImageSignCommand(),
		newImagePolicyCommand(),
		newImageRootHashCommand(),
		newImageInspectCommand(),
		newImageVerifyCommand(),
	)
	return cmd
}

func newImageKeygenCommand() *cobra.Command {
	var alg, out string
	cmd := &cobra.Command{
		Use:   "keygen --alg ALG --out NAME",
		Short: "Generate a signing key: NAME.key (private, mode 0600) and NAME.pub",
		Long: `Generate a signing key for images or trust policies. The private key is
written to NAME.key as PKCS#8 PEM, mode 0600 (ML-DSA-65 in the seed form of
RFC 9881); the public key to NAME.pub as SubjectPublicKeyInfo PEM. Existing
files are never overwritten. The key id printed is the SHA-256 of the
public key's SubjectPublicKeyInfo: the id manifests and policies use.`,
		Example: `  rootline image keygen --alg p384 --out root
  rootline image keygen --alg mldsa65 --out os-pq`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := pluton.ParseAlgorithm(alg)
			if err != nil {
				return fmt.Errorf("--alg: %w", err)
			}
			if out == "" {
				return errors.New("--out NAME is required")
			}
			for _, f := range []string{out + ".key", out + ".pub"} {
				if _, err := os.Lstat(f); err == nil {
					return fmt.Errorf("%s exists: refusing to overwrite a key", f)
				}
			}
			privPEM, pub, err := boot.GenerateKey(rand.Reader, a)
			if err != nil {
				return err
			}
			defer clear(privPEM)
			pubPEM, err := boot.MarshalPublicKeyPEM(pub)
			if err != nil {
				return err
			}
			id, err := boot.KeyID(pub)
			if err != nil {
				return err
			}
			if err := imageWriteNew(out+".key", privPEM, 0o600); err != nil {
				return err
			}
			if err := imageWriteNew(out+".pub", pubPEM, 0o644); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "algorithm:   %s\nkey id:      %x\nprivate key: %s.key\npublic key:  %s.pub\n", a, id, out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&alg, "alg", "p256", "algorithm: p256, p384, ed25519 or mldsa65")
	cmd.Flags().StringVar(&out, "out", "", "file name prefix: writes NAME.key and NAME.pub (required)")
	return cmd
}

func newImageSignCommand() *cobra.Command {
	var (
		keyFiles                    []string
		layer, product, version, in string
		out, digest                 string
		svn                         uint64
	)
	cmd := &cobra.Command{
		Use:   "sign --key K [--key K2] --layer L --product P --version V --svn N --in FILE --out IMAGE",
		Short: "Sign a payload into a boot image",
		Long: `Sign a payload into a boot image for one layer (bootloader, os or app).

With one --key the manifest is signed as a COSE_Sign1. With two (one ECDSA
and one ML-DSA-65 key) it is a hybrid image, signed as a COSE_Sign with both
signatures, for layers whose trust policy requires it.

--version is the release's semantic version (SemVer 2.0.0); --svn is its
security version number, which anti-rollback compares: raise it when a
release fixes a vulnerability that older releases must not be allowed to
bring back.`,
		Example: `  rootline image sign --key os.key --layer os --product sku-a --version 1.4.0 --svn 3 --in kernel.bin --out os.img
  rootline image sign --key bl-ec.key --key bl-pq.key --layer bootloader --product sku-a --version 2.0.0 --svn 1 --in bl.bin --out bl.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := boot.ParseLayer(layer)
			if err != nil {
				return fmt.Errorf("--layer: %w", err)
			}
			h, err := imageParseHash(digest)
			if err != nil {
				return fmt.Errorf("--digest: %w", err)
			}
			if len(keyFiles) == 0 || len(keyFiles) > 2 {
				return errors.New("--key: give one key, or two (ECDSA and ML-DSA-65) for a hybrid image")
			}
			if product == "" {
				product = os.Getenv("ROOTLINE_PRODUCT")
			}
			if product == "" {
				return errors.New("--product is required (or set ROOTLINE_PRODUCT): a chip refuses images made for another product, so every image names its product")
			}
			if in == "" || out == "" {
				return errors.New("--in FILE and --out IMAGE are required")
			}
			var signers []crypto.Signer
			for _, k := range keyFiles {
				s, err := imageReadPrivateKey(k)
				if err != nil {
					return err
				}
				signers = append(signers, s)
			}
			payload, err := imageReadFile(in, boot.MaxPayloadSize)
			if err != nil {
				return err
			}
			img, err := boot.SignImage(rand.Reader, signers, &boot.Manifest{
				Layer: l, Product: product, Version: version, SVN: svn, DigestAlg: h,
			}, payload)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, img, 0o644); err != nil {
				return err
			}
			im, err := boot.ParseImage(img)
			if err != nil {
				return fmt.Errorf("the image just signed does not parse: %w", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s: %d bytes (signed header %d, payload %d)\n", out, len(img), im.HeaderSize, len(im.Payload))
			imagePrintManifest(w, im)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "private key file (PEM); twice for a hybrid image")
	cmd.Flags().StringVar(&layer, "layer", "", "layer: bootloader, os or app (required)")
	cmd.Flags().StringVar(&product, "product", "", "product identifier (required; default $ROOTLINE_PRODUCT)")
	cmd.Flags().StringVar(&version, "version", "", "semantic version, e.g. 1.4.0 (required)")
	cmd.Flags().Uint64Var(&svn, "svn", 0, "security version number (0 to 4294967295)")
	cmd.Flags().StringVar(&in, "in", "", "payload file (required)")
	cmd.Flags().StringVar(&out, "out", "", "image file to write (required)")
	cmd.Flags().StringVar(&digest, "digest", "sha256", "payload digest: sha256 or sha384")
	return cmd
}

func newImagePolicyCommand() *cobra.Command {
	var (
		rootKey, product, out string
		version               uint64
		signers, hybrid       []string
		revoke                []string
	)
	cmd := &cobra.Command{
		Use:   "policy --root-key root.key --product P --version N --signer LAYER=KEY.pub … --out policy.cbor",
		Short: "Sign a trust policy with the root key",
		Long: `Sign a trust policy with the product's root key: for each layer, the public
keys allowed to sign its images (--signer LAYER=FILE.pub, repeated), the
layers that require hybrid ECDSA + ML-DSA-65 signatures (--hybrid LAYER),
and the revoked keys (--revoke, a key id in hex or a FILE.pub). --version
must increase with every new policy: chips refuse a policy older than the
newest one they have accepted, so a revoked key cannot come back with an
old policy.

It prints the root key hash to fuse into the product's chips.`,
		Example: `  rootline image policy --root-key root.key --product sku-a --version 2 \
      --signer bootloader=bl-ec.pub --signer bootloader=bl-pq.pub --hybrid bootloader \
      --signer os=os.pub --signer app=app.pub --revoke os-old.pub --out policy.cbor`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rootKey == "" || out == "" {
				return errors.New("--root-key FILE and --out FILE are required")
			}
			root, err := imageReadPrivateKey(rootKey)
			if err != nil {
				return err
			}
			rootAlg, err := pluton.AlgorithmOf(root.Public())
			if err != nil {
				return err
			}
			pc := &boot.PolicyContent{Version: version, Product: product, Layers: map[boot.Layer]boot.LayerRule{}}
			for _, s := range signers {
				name, file, ok := strings.Cut(s, "=")
				if !ok {
					return fmt.Errorf("--signer %q: want LAYER=FILE.pub", s)
				}
				l, err := boot.ParseLayer(name)
				if err != nil {
					return fmt.Errorf("--signer: %w", err)
				}
				pub, err := imageReadPublicKey(file)
				if err != nil {
					return err
				}
				r := pc.Layers[l]
				r.Signers = append(r.Signers, pub)
				pc.Layers[l] = r
			}
			for _, name := range hybrid {
				l, err := boot.ParseLayer(name)
				if err != nil {
					return fmt.Errorf("--hybrid: %w", err)
				}
				r, ok := pc.Layers[l]
				if !ok {
					return fmt.Errorf("--hybrid %s: the layer has no --signer", l)
				}
				r.Hybrid = true
				pc.Layers[l] = r
			}
			for _, r := range revoke {
				id, err := imageKeyIDArg(r)
				if err != nil {
					return fmt.Errorf("--revoke: %w", err)
				}
				pc.Revoked = append(pc.Revoked, id)
			}
			b, err := boot.SignPolicy(rand.Reader, root, rootAlg, pc)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			h, err := boot.RootKeyHash(root.Public(), crypto.SHA256)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s: trust policy version %d for %s (%d bytes)\n", out, version, product, len(b))
			layers := make([]string, 0, len(pc.Layers))
			for l, r := range pc.Layers {
				s := fmt.Sprintf("%s: %d signer(s)", l, len(r.Signers))
				if r.Hybrid {
					s += ", hybrid required"
				}
				layers = append(layers, s)
			}
			sort.Strings(layers)
			for _, s := range layers {
				fmt.Fprintf(w, "  %s\n", s)
			}
			if len(pc.Revoked) > 0 {
				fmt.Fprintf(w, "  revoked: %d key(s)\n", len(pc.Revoked))
			}
			fmt.Fprintf(w, "root key hash (SHA-256, to fuse): %x\n", h)
			return nil
		},
	}
	cmd.Flags().StringVar(&rootKey, "root-key", "", "the root private key file (required)")
	cmd.Flags().StringVar(&product, "product", "", "product identifier (required)")
	cmd.Flags().Uint64Var(&version, "version", 0, "policy version: must increase with every new policy")
	cmd.Flags().StringArrayVar(&signers, "signer", nil, "LAYER=FILE.pub: a key allowed to sign LAYER's images (repeatable)")
	cmd.Flags().StringArrayVar(&hybrid, "hybrid", nil, "LAYER: require ECDSA + ML-DSA-65 signatures (repeatable)")
	cmd.Flags().StringArrayVar(&revoke, "revoke", nil, "a revoked key: key id (hex) or FILE.pub (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "policy file to write (required)")
	return cmd
}

func newImageRootHashCommand() *cobra.Command {
	var pubFile, certFile, hash string
	cmd := &cobra.Command{
		Use:   "roothash (--pub root.pub | --cert root.pem) [--hash sha256|sha384]",
		Short: "Print the root key hash to fuse into chips",
		Long: `Print the hash of a root public key's SubjectPublicKeyInfo, in hex: the
value to fuse into the product's chips. For the image-signing root (--pub,
rootline image keygen's public key file) it is rootline device init
--root-key-hash; for the factory CA root (--cert, the root certificate of
rootline ca init) it is --factory-root-hash, which pins the root of the
IDevID chain the chip accepts. SHA-256 by default; SHA-384 for a 48-byte
fuse.`,
		Example: `  rootline image roothash --pub root.pub
  rootline image roothash --cert ca/root.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (pubFile == "") == (certFile == "") {
				return errors.New("give exactly one of --pub FILE and --cert FILE")
			}
			h, err := imageParseHash(hash)
			if err != nil {
				return fmt.Errorf("--hash: %w", err)
			}
			var pub crypto.PublicKey
			if certFile != "" {
				certs, err := readCertificates(certFile)
				if err != nil {
					return err
				}
				if len(certs) != 1 {
					return fmt.Errorf("--cert %s: %d certificates, want the root alone", certFile, len(certs))
				}
				pub = certs[0].PublicKey
			} else if pub, err = imageReadPublicKey(pubFile); err != nil {
				return err
			}
			sum, err := boot.RootKeyHash(pub, h)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%x\n", sum)
			return nil
		},
	}
	cmd.Flags().StringVar(&pubFile, "pub", "", "the image-signing root's public key file")
	cmd.Flags().StringVar(&certFile, "cert", "", "the factory CA's root certificate (PEM)")
	cmd.Flags().StringVar(&hash, "hash", "sha256", "sha256 or sha384")
	return cmd
}

func newImageInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Print an image's manifest and signers, without trusting it",
		Long: `Parse an image and print its manifest, signature algorithms and signer key
ids, and whether the payload matches the manifest's digest. Nothing is
verified against a trust policy: use "rootline image verify" for that.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := imageReadFile(args[0], boot.MaxImageSize)
			if err != nil {
				return err
			}
			im, err := boot.ParseImage(b)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			kind := "COSE_Sign1"
			if im.Hybrid {
				kind = "COSE_Sign (hybrid)"
			}
			fmt.Fprintf(w, "format:   %s, signed header %d bytes, payload %d bytes\n", kind, im.HeaderSize, len(im.Payload))
			imagePrintManifest(w, im)
			match := "matches"
			if !im.DigestMatches() {
				match = "DOES NOT MATCH"
			}
			fmt.Fprintf(w, "payload:  %s the manifest's digest\n", match)
			return nil
		},
	}
}

func newImageVerifyCommand() *cobra.Command {
	var (
		policyFile, rootHash, product, layer string
		minSVN, minPolicy                    uint64
	)
	cmd := &cobra.Command{
		Use:   "verify --policy policy.cbor --root-key-hash HEX --product P --layer L [--min-svn N] IMAGE",
		Short: "Verify an image as the boot chain does",
		Long: `Verify an image as a chip's boot chain does: the trust policy against the
fused root key hash, product and policy counter (--min-policy-version);
then the image against the policy and the layer's anti-rollback counter
(--min-svn). Any refusal is an error naming its reason: bad signature,
signer not authorized, signer revoked, rollback, wrong layer, wrong
product, payload digest mismatch, truncated, malformed, too large, hybrid
signature required, or root key mismatch.`,
		Example: `  rootline image verify --policy policy.cbor --root-key-hash 3f1c… --product sku-a --layer os --min-svn 3 os.img
  rootline image roothash --pub root.pub > root.hash
  rootline image verify --policy policy.cbor --root-key-hash @root.hash --product sku-a --layer os os.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := boot.ParseLayer(layer)
			if err != nil {
				return fmt.Errorf("--layer: %w", err)
			}
			if file, ok := strings.CutPrefix(rootHash, "@"); ok {
				b, err := imageReadFile(file, 1<<10)
				if err != nil {
					return fmt.Errorf("--root-key-hash: %w", err)
				}
				rootHash = string(bytes.TrimSpace(b))
			}
			hash, err := hex.DecodeString(rootHash)
			if err != nil || (len(hash) != 32 && len(hash) != 48) {
				return errors.New("--root-key-hash: want 64 or 96 hex digits (SHA-256 or SHA-384), or @FILE holding them")
			}
			if policyFile == "" || product == "" {
				return errors.New("--policy FILE and --product P are required")
			}
			pb, err := imageReadFile(policyFile, boot.MaxPolicySize)
			if err != nil {
				return err
			}
			p, err := boot.VerifyPolicy(pb, hash, product, minPolicy)
			if err != nil {
				return err
			}
			img, err := imageReadFile(args[0], boot.MaxImageSize)
			if err != nil {
				return err
			}
			m, payload, err := p.VerifyImage(img, l, minSVN)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s %s %s, svn %d, %d-byte payload, policy version %d\n",
				m.Product, m.Layer, m.Version, m.SVN, len(payload), p.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&policyFile, "policy", "", "the trust policy file (required)")
	cmd.Flags().StringVar(&rootHash, "root-key-hash", "", "the fused root key hash, hex, or @FILE holding it (required)")
	cmd.Flags().StringVar(&product, "product", "", "the chip's product identifier (required)")
	cmd.Flags().StringVar(&layer, "layer", "", "layer: bootloader, os or app (required)")
	cmd.Flags().Uint64Var(&minSVN, "min-svn", 0, "the chip's anti-rollback counter for the layer")
	cmd.Flags().Uint64Var(&minPolicy, "min-policy-version", 0, "the newest policy version the chip has accepted")
	return cmd
}

func imagePrintManifest(w io.Writer, im *boot.Image) {
	m := im.Manifest
	fmt.Fprintf(w, "layer:    %s\nproduct:  %s\nversion:  %s\nsvn:      %d\n", m.Layer, m.Product, m.Version, m.SVN)
	fmt.Fprintf(w, "digest:   %s %x\n", imageHashName(m.DigestAlg), m.Digest)
	if !m.Created.IsZero() {
		fmt.Fprintf(w, "created:  %s\n", m.Created.Format("2006-01-02T15:04:05Z"))
	}
	for _, s := range im.Signatures {
		fmt.Fprintf(w, "signer:   %s %x\n", s.Algorithm, s.KeyID)
	}
}

func imageParseHash(s string) (crypto.Hash, error) {
	switch strings.ToLower(s) {
	case "sha256", "sha-256":
		return crypto.SHA256, nil
	case "sha384", "sha-384":
		return crypto.SHA384, nil
	}
	return 0, fmt.Errorf("%q: want sha256 or sha384", s)
}

func imageHashName(h crypto.Hash) string {
	if h == crypto.SHA384 {
		return "sha384"
	}
	return "sha256"
}

// imageKeyIDArg reads a key id given in hex or as a public key file.
func imageKeyIDArg(s string) ([]byte, error) {
	if id, err := hex.DecodeString(s); err == nil {
		if len(id) != 32 {
			return nil, fmt.Errorf("key id %q: want 64 hex digits", s)
		}
		return id, nil
	}
	pub, err := imageReadPublicKey(s)
	if err != nil {
		return nil, err
	}
	return boot.KeyID(pub)
}

func imageReadPrivateKey(path string) (crypto.Signer, error) {
	b, err := imageReadFile(path, 64<<10)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	s, _, err := boot.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func imageReadPublicKey(path string) (crypto.PublicKey, error) {
	b, err := imageReadFile(path, 64<<10)
	if err != nil {
		return nil, err
	}
	pub, _, err := boot.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// imageReadFile reads at most limit bytes of a file, refusing a longer one.
func imageReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(f, limit+1)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%s: longer than %d bytes", path, limit)
	}
	return buf.Bytes(), nil
}

// imageWriteNew creates a file that must not exist yet.
func imageWriteNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
