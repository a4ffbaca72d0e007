package attest_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/rootline/rootline/attest"
)

func ExampleReadEndorsements() {
	doc := `{
	  "version": 1,
	  "products": [{
	    "product": "sku-a",
	    "releases": [
	      {"release": "2026.10.1", "vulnerable": "CVE-2026-0001: OS heap overflow",
	       "layers": [{"layer": "os", "version": "1.3.0", "min_svn": 3,
	                   "digests": [{"alg": "sha-256", "value": "` + strings.Repeat("11", 32) + `"}],
	                   "signer": "` + strings.Repeat("aa", 32) + `"}]},
	      {"release": "2026.11.1",
	       "layers": [{"layer": "os", "version": "1.4.0", "min_svn": 4,
	                   "digests": [{"alg": "sha-256", "value": "` + strings.Repeat("22", 32) + `"}],
	                   "signer": "` + strings.Repeat("aa", 32) + `"}]}
	    ]
	  }]
	}`
	e, err := attest.ReadEndorsements(strings.NewReader(doc))
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range e.Products[0].Releases {
		fmt.Printf("%s %s: os %s, SVN ≥ %d, vulnerable: %q\n", e.Products[0].Product, r.Name, r.Layers[0].Version, r.Layers[0].MinSVN, r.Vulnerable)
	}
	// Output:
	// sku-a 2026.10.1: os 1.3.0, SVN ≥ 3, vulnerable: "CVE-2026-0001: OS heap overflow"
	// sku-a 2026.11.1: os 1.4.0, SVN ≥ 4, vulnerable: ""
}
