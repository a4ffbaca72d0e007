package attest

import (
	"bytes"
	"fmt"

	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
)

// Status is an appraisal's overall verdict: the ear.status claim.
type Status string

// Statuses (draft-ietf-rats-ear, §3.1, the trust tiers of AR4SI).
const (
	StatusAffirming       Status = "affirming"
	StatusWarning         Status = "warning"
	StatusContraindicated Status = "contraindicated"
)

// TrustVector is the AR4SI trustworthiness vector (draft-ietf-rats-ar4si,
// §2.3): one claim per dimension, as a signed integer. 0 means no claim;
// 2 to 31 are affirming, 32 to 95 warning, 96 to 127 contraindicated, -1 a
// verifier malfunction, 1 unexpected evidence, 99 failed cryptographic
// validation.
type TrustVector struct {
	InstanceIdentity int8 `json:"instance-identity"`
	Configuration    int8 `json:"configuration"`
	Executables      int8 `json:"executables"`
	FileSystem       int8 `json:"file-system"`
	Hardware         int8 `json:"hardware"`
	RuntimeOpaque    int8 `json:"runtime-opaque"`
	StorageOpaque    int8 `json:"storage-opaque"`
	SourcedData      int8 `json:"sourced-data"`
}

// AR4SI values used here (draft-ietf-rats-ar4si, §2.3.x).
const (
	tcNone            = 0
	tcMalfunction     = -1
	tcUnexpected      = 1
	tcCryptoFailed    = 99
	tcRecognized      = 2  // instance-identity: recognized, not compromised
	tcUntrustworthy   = 96 // instance-identity: recognized, not trustworthy
	tcUnrecognized    = 97 // instance-identity / hardware: not recognized
	tcApprovedConfig  = 2  // configuration
	tcUnsafeConfig    = 32 // configuration: known vulnerabilities
	tcUnsupportable   = 96 // configuration
	tcApprovedBoot    = 3  // executables: approved boot-time
	tcUnsafeRuntime   = 32 // executables: known vulnerabilities
	tcContraRuntime   = 96 // executables: contraindicated
	tcGenuineHardware = 2  // hardware
)

// Appraisal is the second stage's result.
type Appraisal struct {
	Status      Status
	Reasons     []Reason
	TrustVector TrustVector
	// Release is the release the device runs, if one matched.
	Release string
}

// affirmed is the vector of verified evidence before appraisal: the
// instance is recognized (IDevID to a factory root, DICE chain, registry)
// on genuine hardware (its keys derive from the chip's fused secret).
func affirmed() TrustVector {
	return TrustVector{InstanceIdentity: tcRecognized, Hardware: tcGenuineHardware, Configuration: tcApprovedConfig, Executables: tcApprovedBoot}
}

// refusedVector is the vector of a refusal by Verify or by Attest.
func refusedVector(c Code) TrustVector {
	var t TrustVector
	switch c {
	case CodeMalformed, CodeTooLarge:
		t.InstanceIdentity = tcUnexpected
	case CodeSignature, CodeChain, CodeEventLog, CodeNonceInvalid, CodeNonceExpired, CodeNonceReplayed, CodeQuote:
		t.InstanceIdentity = tcCryptoFailed
	case CodeUnknownRoot, CodeUnknownDevice, CodeIdentity, CodeRecord:
		t.InstanceIdentity, t.Hardware = tcUnrecognized, tcUnrecognized
	case CodeRevoked, CodeDeviceState, CodeRevocation, CodeCSR:
		t.InstanceIdentity = tcUntrustworthy
	case CodeRollback:
		t = affirmed()
		t.Executables = tcContraRuntime
		t.Configuration = tcUnsupportable
	case CodeBusy:
		t.InstanceIdentity = tcMalfunction
	default:
		t.InstanceIdentity = tcUntrustworthy
	}
	return t
}

// Appraise is the second stage: it compares verified evidence with the
// reference values of the device's product (see the package
// documentation). It has no side effect.
func (v *Verifier) Appraise(ver *Verified) *Appraisal {
	if ver == nil || ver.tok == nil {
		// Not made by Verify (a zero Verified): nothing is affirmed.
		return &Appraisal{Status: StatusContraindicated, TrustVector: refusedVector(CodeMalformed),
			Reasons: []Reason{{CodeMalformed, "not verified evidence"}}}
	}
	a := &Appraisal{Status: StatusAffirming, TrustVector: affirmed()}
	contra := func(r Reason) {
		a.Status = StatusContraindicated
		a.Reasons = append(a.Reasons, r)
	}
	claims := ver.tok.Claims
	if lc := claims.Lifecycle; lc != pluton.Provisioned && lc != pluton.Locked {
		contra(Reason{CodeLifecycle, fmt.Sprintf("the chip is in lifecycle state %v", lc)})
		a.TrustVector.Configuration = tcUnsupportable
	}
	p := v.refs.Load().products[ver.rec.Product]
	if p == nil {
		contra(Reason{CodeUnknownProduct, fmt.Sprintf("no reference values for product %q", ver.rec.Product)})
		a.TrustVector.Executables = tcContraRuntime
		return a
	}
	// Each layer against the references of its version.
	ok := true
	for _, m := range claims.Layers {
		if r := p.checkLayer(&m); r != nil {
			contra(*r)
			ok = false
		}
	}
	if !ok {
		a.TrustVector.Executables = tcContraRuntime
		return a
	}
	// The layers together: a release, preferably one not vulnerable.
	var vulnerable *Release
	for i := range p.releases {
		r := &p.releases[i]
		if !r.runs(claims.Layers) {
			continue
		}
		if r.Vulnerable == "" {
			a.Release = r.Name
			return a
		}
		if vulnerable == nil {
			vulnerable = r
		}
	}
	if vulnerable == nil {
		contra(Reason{CodeUnknownRelease, "the layers, each known, are not a release together"})
		a.TrustVector.Executables = tcContraRuntime
		return a
	}
	a.Release = vulnerable.Name
	if a.Status == StatusAffirming {
		a.Status = StatusWarning
	}
	a.Reasons = append(a.Reasons, Reason{CodeVulnerable, fmt.Sprintf("release %s: %s", vulnerable.Name, vulnerable.Vulnerable)})
	a.TrustVector.Configuration, a.TrustVector.Executables = tcUnsafeConfig, tcUnsafeRuntime
	return a
}

// checkLayer finds a reference of m's layer and version that m matches:
// digest, signer and SVN.
func (p *productRefs) checkLayer(m *evidence.Measurement) *Reason {
	cands := p.byVersion[m.Layer][m.Version]
	if len(cands) == 0 {
		return &Reason{CodeUnknownVersion, fmt.Sprintf("layer %s version %s has no reference value", m.Layer, m.Version)}
	}
	code := CodeUnknownMeasurement
	for _, l := range cands {
		if !l.matches(m.DigestAlg, m.Digest) {
			continue
		}
		if !bytes.Equal(l.Signer, m.SignerID) {
			code = CodeUnknownSigner
			continue
		}
		if m.SVN < l.MinSVN {
			code = CodeSVN
			continue
		}
		return nil
	}
	switch code {
	case CodeUnknownSigner:
		return &Reason{code, fmt.Sprintf("layer %s version %s is signed by %x, not its signer", m.Layer, m.Version, m.SignerID)}
	case CodeSVN:
		return &Reason{code, fmt.Sprintf("layer %s version %s has SVN %d, below the minimum", m.Layer, m.Version, m.SVN)}
	}
	return &Reason{code, fmt.Sprintf("layer %s version %s has digest %x, not a reference value", m.Layer, m.Version, m.Digest)}
}

// runs reports whether layers are exactly r's layers, each matching.
func (r *Release) runs(layers []evidence.Measurement) bool {
	if len(layers) != len(r.Layers) {
		return false
	}
	for _, m := range layers {
		found := false
		for i := range r.Layers {
			l := &r.Layers[i]
			if l.Layer == m.Layer && l.Version == m.Version && l.matches(m.DigestAlg, m.Digest) &&
				bytes.Equal(l.Signer, m.SignerID) && m.SVN >= l.MinSVN {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
