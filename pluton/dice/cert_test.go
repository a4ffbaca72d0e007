package dice

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rootline/rootline/internal/testdep"
	"github.com/rootline/rootline/pluton"
)

// testChain is a DICE chain: the DeviceID certificate, then one Alias
// certificate per layer.
type testChain struct {
	keys  []crypto.Signer // DeviceID, then each layer's Alias key
	der   [][]byte
	certs []*x509.Certificate
	tcbs  []*TcbInfo // nil for the DeviceID
}

var chainLayers = []string{"bootloader", "os", "app"}

// buildChain makes the chain DeviceID (self-signed) → bootloader (CA) → OS
// (CA) → app (leaf) of the device with the given UDS, each Alias key the
// KeyPair of the CDI_Attest that Derive computes over the layer's code.
func buildChain(t *testing.T, alg pluton.Algorithm, uds []byte) *testChain {
	t.Helper()
	deviceID, err := KeyPair(uds, alg)
	if err != nil {
		t.Fatal(err)
	}
	der, err := DeviceIDCertificate(deviceID, &CertificateTemplate{
		IsCA: true, MaxPathLen: len(chainLayers) - 1, UEID: []byte("rootline-ueid-01"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return buildAliases(t, alg, uds, deviceID, der)
}

// buildAliases makes the Alias certificates of the layers under the
// DeviceID key and its certificate deviceIDDER (self-signed, or an IDevID).
func buildAliases(t *testing.T, alg pluton.Algorithm, uds []byte, deviceID crypto.Signer, deviceIDDER []byte) *testChain {
	t.Helper()
	c := &testChain{keys: []crypto.Signer{deviceID}, tcbs: []*TcbInfo{nil}}
	c.add(t, deviceIDDER)
	attest, seal := bytes.Clone(uds), bytes.Clone(uds)
	for i, name := range chainLayers {
		in := &InputValues{CodeHash: sha512.Sum512([]byte(name + " image")), Mode: ModeNormal}
		var err error
		attest, seal, err = Derive(attest, seal, in)
		if err != nil {
			t.Fatal(err)
		}
		alias, err := KeyPair(attest, alg)
		if err != nil {
			t.Fatal(err)
		}
		tcb := &TcbInfo{
			Vendor: "rootline", Model: "emulated-mcu", Version: "1.0." + string(rune('0'+i)),
			SVN: uint64(i + 1), HasSVN: true,
			Layer: uint64(i), HasLayer: true,
			FWIDs:    []FWID{{Hash: crypto.SHA512, Digest: in.CodeHash[:]}},
			HasFlags: true,
		}
		last := i == len(chainLayers)-1
		der, err := AliasCertificate(c.keys[i], c.certs[i], &CertificateTemplate{
			Subject:    alias.Public(),
			Tcb:        tcb,
			IsCA:       !last,
			MaxPathLen: len(chainLayers) - 2 - i,
		})
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		c.keys = append(c.keys, alias)
		c.tcbs = append(c.tcbs, tcb)
		c.add(t, der)
	}
	return c
}

func (c *testChain) add(t *testing.T, der []byte) {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c.der = append(c.der, der)
	c.certs = append(c.certs, cert)
}

var certAlgorithms = []pluton.Algorithm{pluton.ECDSAP256, pluton.ECDSAP384, pluton.Ed25519}

func testUDS(b byte) []byte { return bytes.Repeat([]byte{b}, CDISize) }

// goVerify verifies leaf against the root with Go's x509.
func goVerify(root, leaf *x509.Certificate, inter ...*x509.Certificate) ([][]*x509.Certificate, error) {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	pool := x509.NewCertPool()
	for _, c := range inter {
		pool.AddCert(c)
	}
	return leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: pool,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
}

// TestChainGoVerify checks that Go's x509 accepts the chain, and the
// profile of each certificate.
func TestChainGoVerify(t *testing.T) {
	for _, alg := range certAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			c := buildChain(t, alg, testUDS(0x42))
			n := len(c.certs)
			chains, err := goVerify(c.certs[0], c.certs[n-1], c.certs[1:n-1]...)
			if err != nil {
				t.Fatal(err)
			}
			if len(chains) != 1 || len(chains[0]) != n {
				t.Fatalf("%d chains, first of %d certificates", len(chains), len(chains[0]))
			}
			for i, cert := range chains[0] {
				if cert != c.certs[n-1-i] {
					t.Errorf("chain position %d is not the expected certificate", i)
				}
			}
			for i, cert := range c.certs {
				checkProfile(t, c, i, cert)
			}
		})
	}
}

// checkProfile checks certificate i of c against the documented profile.
func checkProfile(t *testing.T, c *testChain, i int, cert *x509.Certificate) {
	t.Helper()
	id, err := PublicKeyID(c.keys[i].Public())
	if err != nil {
		t.Fatal(err)
	}
	issuerIdx := max(i-1, 0)
	issuerID, _ := PublicKeyID(c.keys[issuerIdx].Public())

	if cert.Version != 3 {
		t.Errorf("%d: version %d", i, cert.Version)
	}
	if !bytes.Equal(cert.SerialNumber.Bytes(), id[:]) {
		t.Errorf("%d: serial %x, want the ID %x", i, cert.SerialNumber, id)
	}
	if got, want := cert.Subject.String(), "SERIALNUMBER="+hex.EncodeToString(id[:]); got != want {
		t.Errorf("%d: subject %q, want %q", i, got, want)
	}
	if !bytes.Equal(cert.RawIssuer, c.certs[issuerIdx].RawSubject) {
		t.Errorf("%d: issuer %q is not the issuer's subject", i, cert.Issuer)
	}
	if !bytes.Equal(cert.SubjectKeyId, id[:]) || !bytes.Equal(cert.AuthorityKeyId, issuerID[:]) {
		t.Errorf("%d: SKI %x AKI %x, want %x %x", i, cert.SubjectKeyId, cert.AuthorityKeyId, id, issuerID)
	}
	// Validity: UTCTime 180322235959Z, GeneralizedTime 99991231235959Z.
	validity := mustHex(t, "3020 170d"+hex.EncodeToString([]byte("180322235959Z"))+"180f"+hex.EncodeToString([]byte("99991231235959Z")))
	if !bytes.Contains(cert.RawTBSCertificate, validity) {
		t.Errorf("%d: validity %v – %v not encoded as open-dice's", i, cert.NotBefore, cert.NotAfter)
	}
	last := i == len(c.certs)-1
	if !cert.BasicConstraintsValid || cert.IsCA == last {
		t.Errorf("%d: basicConstraints valid %v cA %v", i, cert.BasicConstraintsValid, cert.IsCA)
	}
	wantKU := x509.KeyUsageCertSign
	if last {
		wantKU = x509.KeyUsageDigitalSignature
	}
	if cert.KeyUsage != wantKU {
		t.Errorf("%d: key usage %#x, want %#x", i, cert.KeyUsage, wantKU)
	}
	if !last {
		wantPath := len(c.certs) - 2 - i
		if cert.MaxPathLen != wantPath || (wantPath == 0 && !cert.MaxPathLenZero) {
			t.Errorf("%d: pathLen %d (zero %v), want %d", i, cert.MaxPathLen, cert.MaxPathLenZero, wantPath)
		}
	}
	for _, e := range cert.Extensions {
		switch {
		case e.Id.Equal(OIDTcbInfo), e.Id.Equal(OIDUEID):
			if e.Critical {
				t.Errorf("%d: extension %v is critical", i, e.Id)
			}
		case e.Id.Equal([]int{2, 5, 29, 15}), e.Id.Equal([]int{2, 5, 29, 19}):
			if !e.Critical {
				t.Errorf("%d: extension %v is not critical", i, e.Id)
			}
		}
	}
	if len(cert.UnhandledCriticalExtensions) != 0 {
		t.Errorf("%d: unhandled critical extensions %v", i, cert.UnhandledCriticalExtensions)
	}
	tcb, err := TcbInfoFromCertificate(cert)
	if c.tcbs[i] == nil {
		if !errors.Is(err, ErrNoTcbInfo) {
			t.Errorf("%d: TcbInfoFromCertificate: %v, %v", i, tcb, err)
		}
		ueid, err := UEIDFromCertificate(cert)
		if err != nil || string(ueid) != "rootline-ueid-01" {
			t.Errorf("%d: UEID %q, %v", i, ueid, err)
		}
	} else {
		if err != nil || !reflect.DeepEqual(tcb, c.tcbs[i]) {
			t.Errorf("%d: TcbInfo %+v, %v; want %+v", i, tcb, err, c.tcbs[i])
		}
		if _, err := UEIDFromCertificate(cert); !errors.Is(err, ErrNoUEID) {
			t.Errorf("%d: UEID in an alias certificate: %v", i, err)
		}
	}
}

// TestChainDeterministic checks that a certificate depends only on its
// inputs: the to-be-signed part is the same from run to run, and so is the
// whole certificate for Ed25519.
func TestChainDeterministic(t *testing.T) {
	for _, alg := range certAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			a, b := buildChain(t, alg, testUDS(7)), buildChain(t, alg, testUDS(7))
			for i := range a.certs {
				if !bytes.Equal(a.certs[i].RawTBSCertificate, b.certs[i].RawTBSCertificate) {
					t.Errorf("certificate %d: TBS differs between runs", i)
				}
				if alg == pluton.Ed25519 && !bytes.Equal(a.der[i], b.der[i]) {
					t.Errorf("certificate %d: Ed25519 certificate differs between runs", i)
				}
			}
		})
	}
}

// writePEM writes certificates to one PEM file.
func writePEM(t *testing.T, path string, ders ...[]byte) {
	t.Helper()
	var buf bytes.Buffer
	for _, d := range ders {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: d}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// opensslVerify runs `openssl verify [flags] -CAfile root -untrusted inter
// leaf` (never -ignore_critical; no -untrusted when inter is empty) and
// returns its combined output. flags defaults to -x509_strict.
func opensslVerify(t *testing.T, openssl string, root []byte, inter [][]byte, leaf []byte, flags ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	rootPEM, interPEM, leafPEM := filepath.Join(dir, "deviceid.pem"), filepath.Join(dir, "inter.pem"), filepath.Join(dir, "leaf.pem")
	writePEM(t, rootPEM, root)
	writePEM(t, leafPEM, leaf)
	if flags == nil {
		flags = []string{"-x509_strict"}
	}
	args := append(append([]string{"verify"}, flags...), "-CAfile", rootPEM)
	if len(inter) > 0 {
		writePEM(t, interPEM, inter...)
		args = append(args, "-untrusted", interPEM)
	}
	out, err := exec.Command(openssl, append(args, leafPEM)...).CombinedOutput()
	return string(out), err
}

// TestChainOpenSSL checks that OpenSSL accepts the chain, with
// -x509_strict and without -ignore_critical, and prints every certificate
// with its TcbInfo.
func TestChainOpenSSL(t *testing.T) {
	openssl := testdep.LookPath(t, "openssl")
	for _, alg := range certAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			c := buildChain(t, alg, testUDS(0x42))
			n := len(c.der)
			// As the issue states it, then with -x509_strict too.
			for _, flags := range [][]string{{}, {"-x509_strict"}} {
				out, err := opensslVerify(t, openssl, c.der[0], c.der[1:n-1], c.der[n-1], flags...)
				if err != nil || !strings.HasSuffix(strings.TrimSpace(out), "leaf.pem: OK") {
					t.Fatalf("openssl verify %v: %v\n%s", flags, err, out)
				}
			}

			for i, der := range c.der {
				cmd := exec.Command(openssl, "x509", "-inform", "DER", "-noout", "-text")
				cmd.Stdin = bytes.NewReader(der)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil || stderr.Len() != 0 {
					t.Fatalf("openssl x509 -text of certificate %d: %v\n%s", i, err, stderr.String())
				}
				text := stdout.String()
				if c.tcbs[i] != nil && !strings.Contains(text, "2.23.133.5.4.1:") {
					t.Errorf("certificate %d: openssl shows no DiceTcbInfo:\n%s", i, text)
				}
				if strings.Contains(text, "2.23.133.5.4.1: critical") {
					t.Errorf("certificate %d: DiceTcbInfo shown as critical", i)
				}
				if c.tcbs[i] == nil && !strings.Contains(text, "2.23.133.5.4.4:") {
					t.Errorf("certificate %d: openssl shows no UEID extension", i)
				}
			}

			// An independent DER parser reads the TcbInfo structure.
			tcbDER, err := c.tcbs[1].Marshal()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(openssl, "asn1parse", "-inform", "DER")
			cmd.Stdin = bytes.NewReader(tcbDER)
			asn, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("openssl asn1parse: %v\n%s", err, asn)
			}
			for _, want := range []string{"cont [ 0 ]", "cont [ 3 ]", "cont [ 4 ]", "cont [ 6 ]", "OBJECT            :sha512", "cont [ 7 ]"} {
				if !strings.Contains(string(asn), want) {
					t.Errorf("asn1parse output lacks %q:\n%s", want, asn)
				}
			}
		})
	}
}

// TestChainSwappedLink checks that both verifiers refuse a chain with a
// link from another device, and one with a tampered certificate.
func TestChainSwappedLink(t *testing.T) {
	var openssl string
	for _, alg := range certAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			a := buildChain(t, alg, testUDS(1))
			b := buildChain(t, alg, testUDS(2))
			n := len(a.certs)

			// The OS layer's certificate of device B in device A's chain.
			swapped := [][]byte{a.der[1], b.der[2]}
			if _, err := goVerify(a.certs[0], a.certs[n-1], a.certs[1], b.certs[2]); err == nil {
				t.Error("Go verified a chain with another device's OS certificate")
			}
			// Device A's leaf under device B's DeviceID.
			if _, err := goVerify(b.certs[0], a.certs[n-1], a.certs[1:n-1]...); err == nil {
				t.Error("Go verified a chain under another device's DeviceID")
			}
			// A's OS certificate with one byte of its FWID changed: the
			// signature no longer holds.
			tampered := bytes.Clone(a.der[2])
			k := bytes.Index(tampered, a.tcbs[2].FWIDs[0].Digest)
			if k < 0 {
				t.Fatal("FWID digest not found in the certificate")
			}
			tampered[k] ^= 1
			tc, err := x509.ParseCertificate(tampered)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := goVerify(a.certs[0], a.certs[n-1], a.certs[1], tc); err == nil {
				t.Error("Go verified a chain with a tampered OS certificate")
			}

			if openssl == "" {
				openssl = testdep.LookPath(t, "openssl")
			}
			for _, bad := range []struct {
				name  string
				root  []byte
				inter [][]byte
			}{
				{"swapped OS certificate", a.der[0], swapped},
				{"other DeviceID", b.der[0], a.der[1 : n-1]},
				{"tampered OS certificate", a.der[0], [][]byte{a.der[1], tampered}},
			} {
				if out, err := opensslVerify(t, openssl, bad.root, bad.inter, a.der[n-1]); err == nil {
					t.Errorf("%s: openssl verify accepted it:\n%s", bad.name, out)
				}
			}
		})
	}
}

// TestOpenDiceProfile checks the names, serial number, key identifiers,
// validity and key of an Alias certificate against open-dice's ZeroInput
// X.509 certificates (the issuer is the DeviceID, KeyPair of the all-zero
// UDS; the subject KeyPair of the expected CDI_Attest).
func TestOpenDiceProfile(t *testing.T) {
	zero := loadVectors(t)[0]
	if zero.Name != "ZeroInput" {
		t.Fatalf("first case is %s", zero.Name)
	}
	for name, der := range zero.X509 {
		t.Run(name, func(t *testing.T) {
			alg := vectorAlgorithm(t, name)
			want, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			deviceID, err := KeyPair(zero.CDIAttestIn, alg)
			if err != nil {
				t.Fatal(err)
			}
			alias, err := KeyPair(zero.ExpectedCDIAttest, alg)
			if err != nil {
				t.Fatal(err)
			}
			rootDER, err := DeviceIDCertificate(deviceID, &CertificateTemplate{Subject: deviceID.Public(), IsCA: true, MaxPathLen: -1})
			if err != nil {
				t.Fatal(err)
			}
			root, err := x509.ParseCertificate(rootDER)
			if err != nil {
				t.Fatal(err)
			}
			gotDER, err := AliasCertificate(deviceID, root, &CertificateTemplate{Subject: alias.Public(), IsCA: true, MaxPathLen: -1})
			if err != nil {
				t.Fatal(err)
			}
			got, err := x509.ParseCertificate(gotDER)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				name      string
				got, want []byte
			}{
				{"issuer", got.RawIssuer, want.RawIssuer},
				{"subject", got.RawSubject, want.RawSubject},
				{"serial", got.SerialNumber.Bytes(), want.SerialNumber.Bytes()},
				{"subjectKeyIdentifier", got.SubjectKeyId, want.SubjectKeyId},
				{"authorityKeyIdentifier", got.AuthorityKeyId, want.AuthorityKeyId},
				{"subjectPublicKeyInfo", got.RawSubjectPublicKeyInfo, want.RawSubjectPublicKeyInfo},
			} {
				if !bytes.Equal(f.got, f.want) {
					t.Errorf("%s:\n%x\nopen-dice:\n%x", f.name, f.got, f.want)
				}
			}
			if !got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter) {
				t.Errorf("validity %v – %v, open-dice %v – %v", got.NotBefore, got.NotAfter, want.NotBefore, want.NotAfter)
			}
			if got.KeyUsage != want.KeyUsage || got.IsCA != want.IsCA || got.MaxPathLen != want.MaxPathLen || got.SignatureAlgorithm != want.SignatureAlgorithm {
				t.Errorf("KU %v CA %v path %d alg %v; open-dice %v %v %d %v", got.KeyUsage, got.IsCA, got.MaxPathLen, got.SignatureAlgorithm,
					want.KeyUsage, want.IsCA, want.MaxPathLen, want.SignatureAlgorithm)
			}
			// open-dice's own certificate verifies under our DeviceID
			// certificate once its critical open-dice extension is
			// acknowledged, as a DICE-aware verifier would.
			want.UnhandledCriticalExtensions = nil
			if _, err := goVerify(root, want); err != nil {
				t.Errorf("open-dice certificate under our DeviceID certificate: %v", err)
			}
		})
	}
}

// TestUEIDKnownAnswer checks the tcg-dice-Ueid encoding against Project
// Cerberus' X509_EXTENSION_BUILDER_DICE_UEID_TESTING_DATA
// (core/testing/asn1/dice/x509_extension_builder_dice_ueid_test.c at
// commit 4dbbcd4b81eb705a83feffa9b877e1ba4ca021fa, MIT): UEID 11 22 33 44
// 55 66 77 88 is 30 0a 04 08 11 22 33 44 55 66 77 88.
func TestUEIDKnownAnswer(t *testing.T) {
	key, err := KeyPair(testUDS(3), pluton.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	der, err := DeviceIDCertificate(key, &CertificateTemplate{IsCA: true, UEID: mustHex(t, "1122334455667788")})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	want := mustHex(t, "300a04081122334455667788")
	var found bool
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDUEID) {
			found = true
			if e.Critical || !bytes.Equal(e.Value, want) {
				t.Errorf("UEID extension critical %v value %x, want %x", e.Critical, e.Value, want)
			}
		}
	}
	if !found {
		t.Fatal("no UEID extension")
	}
	for _, bad := range []string{"", "3000", "300a04081122334455667788 00", "3002 0400", "3103 040100", "300a 0308 1122334455667788"} {
		if _, err := parseUEID(mustHex(t, bad)); !errors.Is(err, pluton.ErrInvalidArgument) {
			t.Errorf("parseUEID(%s): %v", bad, err)
		}
	}
}

func TestCertificateErrors(t *testing.T) {
	p256, _ := KeyPair(testUDS(4), pluton.ECDSAP256)
	other, _ := KeyPair(testUDS(5), pluton.ECDSAP256)
	mldsa, err := KeyPair(testUDS(4), pluton.MLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	rootDER, err := DeviceIDCertificate(p256, &CertificateTemplate{IsCA: true, MaxPathLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	leafDER, err := AliasCertificate(p256, root, &CertificateTemplate{Subject: other.Public()})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)

	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"DeviceID: ML-DSA-65", second(DeviceIDCertificate(mldsa, &CertificateTemplate{IsCA: true})), pluton.ErrUnsupportedAlgorithm},
		{"alias: ML-DSA-65 subject", second(AliasCertificate(p256, root, &CertificateTemplate{Subject: mldsa.Public()})), pluton.ErrUnsupportedAlgorithm},
		{"alias: ML-DSA-65 issuer", second(AliasCertificate(mldsa, root, &CertificateTemplate{Subject: other.Public()})), pluton.ErrUnsupportedAlgorithm},
		{"DeviceID: nil template", second(DeviceIDCertificate(p256, nil)), pluton.ErrInvalidArgument},
		{"DeviceID: nil signer", second(DeviceIDCertificate(nil, &CertificateTemplate{})), pluton.ErrInvalidArgument},
		{"DeviceID: other subject", second(DeviceIDCertificate(p256, &CertificateTemplate{Subject: other.Public()})), pluton.ErrInvalidArgument},
		{"DeviceID: MaxPathLen without CA", second(DeviceIDCertificate(p256, &CertificateTemplate{MaxPathLen: 1})), pluton.ErrInvalidArgument},
		{"DeviceID: empty UEID", second(DeviceIDCertificate(p256, &CertificateTemplate{UEID: []byte{}})), pluton.ErrInvalidArgument},
		{"DeviceID: long UEID", second(DeviceIDCertificate(p256, &CertificateTemplate{UEID: make([]byte, MaxUEIDSize+1)})), pluton.ErrInvalidArgument},
		{"DeviceID: bad TcbInfo", second(DeviceIDCertificate(p256, &CertificateTemplate{Tcb: &TcbInfo{SVN: 1}})), pluton.ErrInvalidArgument},
		{"alias: nil subject", second(AliasCertificate(p256, root, &CertificateTemplate{})), pluton.ErrInvalidArgument},
		{"alias: nil issuer certificate", second(AliasCertificate(p256, nil, &CertificateTemplate{Subject: other.Public()})), pluton.ErrInvalidArgument},
		{"alias: issuer not a CA", second(AliasCertificate(other, leaf, &CertificateTemplate{Subject: p256.Public()})), pluton.ErrInvalidArgument},
		{"alias: unsupported FWID hash", second(AliasCertificate(p256, root, &CertificateTemplate{Subject: other.Public(), Tcb: &TcbInfo{FWIDs: []FWID{{Hash: crypto.MD5, Digest: make([]byte, 16)}}}})), pluton.ErrUnsupportedAlgorithm},
		{"TcbInfoFromCertificate: nil", second(TcbInfoFromCertificate(nil)), pluton.ErrInvalidArgument},
		{"UEIDFromCertificate: nil", second(UEIDFromCertificate(nil)), pluton.ErrInvalidArgument},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}

	// An issuer key that is not the issuer certificate's: crypto/x509
	// refuses it.
	if _, err := AliasCertificate(other, root, &CertificateTemplate{Subject: other.Public()}); err == nil {
		t.Error("alias certificate signed by a key other than the issuer certificate's")
	}
}

func second[T any](_ T, err error) error { return err }

// TestTcbInfoFromCertificateDuplicate checks that two DiceTcbInfo
// extensions are refused (x509.ParseCertificate refuses duplicate
// extensions itself, so the certificate is assembled by hand here).
func TestTcbInfoFromCertificateDuplicate(t *testing.T) {
	v, _ := (&TcbInfo{Vendor: "a"}).Marshal()
	c := &x509.Certificate{}
	c.Extensions = append(c.Extensions,
		pkixExtension(v), pkixExtension(v))
	if _, err := TcbInfoFromCertificate(c); !errors.Is(err, ErrInvalidTcbInfo) {
		t.Fatalf("two extensions: %v", err)
	}
	c.Extensions = c.Extensions[:1]
	if got, err := TcbInfoFromCertificate(c); err != nil || got.Vendor != "a" {
		t.Fatalf("one extension: %+v, %v", got, err)
	}
	// Critical or not, it is read.
	c.Extensions[0].Critical = true
	if _, err := TcbInfoFromCertificate(c); err != nil {
		t.Fatalf("critical extension: %v", err)
	}
}

func pkixExtension(v []byte) pkix.Extension {
	return pkix.Extension{Id: oidTcbInfo(), Value: v}
}

// TestCriticalTcbInfoWouldBeRefused pins the reason DiceTcbInfo is not
// critical: the same leaf with the extension marked critical fails Go's
// Verify and OpenSSL's verify (unless -ignore_critical).
func TestCriticalTcbInfoWouldBeRefused(t *testing.T) {
	rootKey, _ := KeyPair(testUDS(6), pluton.ECDSAP256)
	leafKey, _ := KeyPair(testUDS(7), pluton.ECDSAP256)
	rootDER, err := DeviceIDCertificate(rootKey, &CertificateTemplate{IsCA: true, MaxPathLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	tmpl, err := (&CertificateTemplate{Subject: leafKey.Public(), Tcb: &TcbInfo{Vendor: "rootline"}}).x509Template(leafKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ExtraExtensions[0].Critical = true
	leafDER, err := x509.CreateCertificate(rand.Reader, tmpl, root, leafKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	if _, err := goVerify(root, leaf); !errors.As(err, new(x509.UnhandledCriticalExtension)) {
		t.Errorf("Go: %v, want UnhandledCriticalExtension", err)
	}
	openssl := testdep.LookPath(t, "openssl")
	out, err := opensslVerify(t, openssl, rootDER, nil, leafDER)
	if err == nil || !strings.Contains(out, "unhandled critical extension") {
		t.Errorf("openssl verify: %v\n%s", err, out)
	}
}

// TestChainUnderIDevID checks the chain of a provisioned chip: a factory
// root CA, the IDevID certificate it issued for the DeviceID key (with the
// CA's own naming and key identifier), then the Alias certificates, which
// take their issuer name and authorityKeyIdentifier from the IDevID
// certificate. Go and OpenSSL must accept it with the factory root as the
// trust anchor.
func TestChainUnderIDevID(t *testing.T) {
	openssl := testdep.LookPath(t, "openssl")
	for _, alg := range certAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			caKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			caTmpl := &x509.Certificate{
				SerialNumber:          big.NewInt(1),
				Subject:               pkix.Name{Organization: []string{"rootline test factory"}, CommonName: "Factory Root CA"},
				NotBefore:             time.Now().Add(-time.Hour),
				NotAfter:              time.Now().Add(time.Hour),
				KeyUsage:              x509.KeyUsageCertSign,
				BasicConstraintsValid: true,
				IsCA:                  true,
				MaxPathLen:            -1,
			}
			caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
			if err != nil {
				t.Fatal(err)
			}
			ca, _ := x509.ParseCertificate(caDER)

			uds := testUDS(9)
			deviceID, err := KeyPair(uds, alg)
			if err != nil {
				t.Fatal(err)
			}
			idevidTmpl := &x509.Certificate{
				SerialNumber:          big.NewInt(1000),
				Subject:               pkix.Name{Organization: []string{"rootline"}, CommonName: "device 0001", SerialNumber: "0001"},
				NotBefore:             time.Now().Add(-time.Hour),
				NotAfter:              notAfter,
				KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
				BasicConstraintsValid: true,
				IsCA:                  true,
				MaxPathLen:            len(chainLayers) - 1,
			}
			idevidDER, err := x509.CreateCertificate(rand.Reader, idevidTmpl, ca, deviceID.Public(), caKey)
			if err != nil {
				t.Fatal(err)
			}
			c := buildAliases(t, alg, uds, deviceID, idevidDER)
			idID, _ := PublicKeyID(deviceID.Public())
			if bytes.Equal(c.certs[0].SubjectKeyId, idID[:]) {
				t.Fatal("the IDevID's key identifier should be the CA's choice, not the DICE ID")
			}
			l0 := c.certs[1]
			if !bytes.Equal(l0.RawIssuer, c.certs[0].RawSubject) || !bytes.Equal(l0.AuthorityKeyId, c.certs[0].SubjectKeyId) {
				t.Errorf("first Alias certificate: issuer %q AKI %x, want the IDevID's %q %x", l0.Issuer, l0.AuthorityKeyId, c.certs[0].Subject, c.certs[0].SubjectKeyId)
			}

			n := len(c.certs)
			if _, err := goVerify(ca, c.certs[n-1], c.certs[:n-1]...); err != nil {
				t.Errorf("Go: %v", err)
			}
			out, err := opensslVerify(t, openssl, caDER, c.der[:n-1], c.der[n-1])
			if err != nil || !strings.HasSuffix(strings.TrimSpace(out), "leaf.pem: OK") {
				t.Errorf("openssl verify: %v\n%s", err, out)
			}
		})
	}
}
