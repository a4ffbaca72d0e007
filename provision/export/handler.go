package export

import (
	"log/slog"
	"net/http"

	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/registry"
)

// Path is where Handler serves the export.
const Path = "/v1/registry/export"

// Handler serves GET /v1/registry/export: the export of reg (Write with the
// zero Options), streamed as application/json. The optional query
// parameter "product" limits it to one product; "complete=1" leaves out
// ISSUED devices.
//
// The handler does no authentication: it must be mounted behind a layer
// that admits only the verifier (its TLS client certificate), since the
// export lists every device of the factory. An error once streaming has
// begun cannot change the status: the body is then truncated, which Read
// refuses, and the error is logged.
func Handler(reg registry.Registry, products map[string]*provision.ProductPolicy, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != Path {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		opts := &Options{Product: q.Get("product"), CompleteOnly: q.Get("complete") == "1"}
		if opts.Product != "" && products[opts.Product] == nil {
			http.Error(w, "unknown product", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		if err := Write(r.Context(), w, reg, products, opts); err != nil {
			logger.Error("registry export failed", "err", err)
			return
		}
		logger.Info("registry exported", "remote", r.RemoteAddr, "product", opts.Product)
	})
}
