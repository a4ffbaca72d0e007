package measure

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rootline/rootline/internal/testdep"
)

// eventlogOutput is what tpm2_eventlog printed about a log.
type eventlogOutput struct {
	events []eventlogEvent
	// pcrs maps a bank ("sha256") to register values.
	pcrs map[string]map[int][]byte
}

type eventlogEvent struct {
	num, pcr  int
	eventType string
	digests   map[string][]byte // algorithm name → digest
}

// parseEventlogYAML reads the parts of tpm2_eventlog's YAML output that the
// test compares: each event's number, register, type and digests, and the
// values replayed for the registers the log extends (the final "pcrs:"
// section).
func parseEventlogYAML(out []byte) (*eventlogOutput, error) {
	// tpm2-tools 5.x prints each event as
	//
	//	- EventNum: 1
	//	  PCRIndex: 0
	//	  EventType: EV_S_CRTM_VERSION
	//	  DigestCount: 2
	//	  Digests:
	//	  - AlgorithmId: sha256
	//	    Digest: "a3bb…"
	//
	// and, last,
	//
	//	pcrs:
	//	  sha256:
	//	    0  : 0xaa8c…
	res := &eventlogOutput{pcrs: map[string]map[int][]byte{}}
	var ev *eventlogEvent
	var alg, bank string
	inPCRs := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "pcrs:" {
			inPCRs = true
			continue
		}
		if inPCRs {
			switch {
			case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    ") && strings.HasSuffix(line, ":"):
				bank = strings.TrimSuffix(strings.TrimSpace(line), ":")
				res.pcrs[bank] = map[int][]byte{}
			case strings.HasPrefix(line, "    ") && bank != "":
				idx, val, ok := strings.Cut(line, ":")
				if !ok {
					return nil, fmt.Errorf("pcrs line %q", line)
				}
				i, err := strconv.Atoi(strings.TrimSpace(idx))
				if err != nil {
					return nil, fmt.Errorf("pcrs line %q: %v", line, err)
				}
				v, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(val), "0x"))
				if err != nil {
					return nil, fmt.Errorf("pcrs line %q: %v", line, err)
				}
				res.pcrs[bank][i] = v
			default:
				return nil, fmt.Errorf("unexpected line in pcrs: %q", line)
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "- EventNum: "):
			n, err := strconv.Atoi(strings.TrimPrefix(line, "- EventNum: "))
			if err != nil {
				return nil, err
			}
			res.events = append(res.events, eventlogEvent{num: n, pcr: -1, digests: map[string][]byte{}})
			ev = &res.events[len(res.events)-1]
		case ev == nil:
		case strings.HasPrefix(line, "  PCRIndex: "):
			n, err := strconv.Atoi(strings.TrimPrefix(line, "  PCRIndex: "))
			if err != nil {
				return nil, err
			}
			ev.pcr = n
		case strings.HasPrefix(line, "  EventType: "):
			ev.eventType = strings.TrimPrefix(line, "  EventType: ")
		case strings.HasPrefix(line, "  - AlgorithmId: "):
			alg = strings.TrimPrefix(line, "  - AlgorithmId: ")
		case strings.HasPrefix(line, "    Digest: ") && alg != "":
			d, err := hex.DecodeString(strings.Trim(strings.TrimPrefix(line, "    Digest: "), `"`))
			if err != nil {
				return nil, err
			}
			ev.digests[alg] = d
			alg = ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !inPCRs {
		return nil, fmt.Errorf("no pcrs section")
	}
	return res, nil
}

func bankName(h crypto.Hash) string {
	return map[crypto.Hash]string{crypto.SHA256: "sha256", crypto.SHA384: "sha384"}[h]
}

// tpm2_eventlog (tpm2-tools) parses the logs rootline writes, lists every
// event with its register, type and digests, and replays them to the same
// register values.
func TestTPM2Eventlog(t *testing.T) {
	tool := testdep.LookPath(t, "tpm2_eventlog")

	allRegisters := func(t testing.TB) *Registers {
		r, err := New()
		if err != nil {
			t.Fatal(err)
		}
		for i := range NumRegisters {
			for j := range 3 {
				if err := r.Measure(i, EVNonhostCode, []byte{byte(i), byte(j)}, fmt.Appendf(nil, "layer %d.%d", i, j)); err != nil {
					t.Fatal(err)
				}
			}
		}
		return r
	}
	bigData := func(t testing.TB) *Registers {
		r, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Measure(9, EVIPL, []byte("kernel"), bytes.Repeat([]byte("x"), MaxEventDataSize)); err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		name string
		r    func(testing.TB) *Registers
	}{
		{"boot sequence", func(t testing.TB) *Registers { return sampleRegisters(t) }},
		{"SHA-256 only", func(t testing.TB) *Registers { return sampleRegisters(t, crypto.SHA256) }},
		{"SHA-384 only", func(t testing.TB) *Registers { return sampleRegisters(t, crypto.SHA384) }},
		{"SHA-384 first", func(t testing.TB) *Registers { return sampleRegisters(t, crypto.SHA384, crypto.SHA256) }},
		{"all registers", allRegisters},
		{"largest event data", bigData},
		{"no events", func(t testing.TB) *Registers { r, _ := New(); return r }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.r(t)
			file := filepath.Join(t.TempDir(), "eventlog.bin")
			if err := os.WriteFile(file, marshal(t, r.Log()), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(tool, file)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("tpm2_eventlog: %v\n%s", err, stderr.Bytes())
			}
			if strings.Contains(stderr.String(), "ERROR") {
				t.Errorf("tpm2_eventlog stderr: %s", stderr.Bytes())
			}
			got, err := parseEventlogYAML(out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}

			// Every event, after the Spec ID event (EventNum 0).
			events := r.Log().Events()
			if len(got.events) != len(events)+1 {
				t.Fatalf("tpm2_eventlog lists %d events, want %d", len(got.events), len(events)+1)
			}
			if e := got.events[0]; e.num != 0 || e.pcr != 0 || e.eventType != "EV_NO_ACTION" {
				t.Errorf("first event %+v", e)
			}
			used := map[int]bool{}
			for i, e := range events {
				g := got.events[i+1]
				if g.num != i+1 || g.pcr != e.Register || g.eventType != e.Type.String() {
					t.Errorf("event %d: tpm2_eventlog has %d PCR %d %s, want PCR %d %v", i+1, g.num, g.pcr, g.eventType, e.Register, e.Type)
				}
				if len(g.digests) != len(e.Digests) {
					t.Errorf("event %d: %d digests", i+1, len(g.digests))
				}
				for h, d := range e.Digests {
					if !bytes.Equal(g.digests[bankName(h)], d) {
						t.Errorf("event %d: %v digest %x, want %x", i+1, h, g.digests[bankName(h)], d)
					}
				}
				used[e.Register] = true
			}

			// The replayed registers: exactly those used, with rootline's
			// values.
			for _, h := range r.Banks() {
				pcrs := got.pcrs[bankName(h)]
				if len(used) > 0 && pcrs == nil {
					t.Errorf("no %s in pcrs", bankName(h))
				}
				var listed []int
				for i := range pcrs {
					listed = append(listed, i)
				}
				slices.Sort(listed)
				var want []int
				for i := range used {
					want = append(want, i)
				}
				slices.Sort(want)
				if !slices.Equal(listed, want) {
					t.Errorf("%s: tpm2_eventlog lists registers %v, the log extends %v", bankName(h), listed, want)
				}
				for i := range used {
					v := mustValue(t, r, h, i)
					if !bytes.Equal(pcrs[i], v) {
						t.Errorf("%s register %d: tpm2_eventlog %x, rootline %x", bankName(h), i, pcrs[i], v)
					}
				}
			}
			if len(got.pcrs) > len(r.Banks()) {
				t.Errorf("tpm2_eventlog replayed banks %v", got.pcrs)
			}
		})
	}
}
