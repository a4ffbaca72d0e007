package provision_test

import (
	"github.com/rootline/rootline/hsm"
	"github.com/rootline/rootline/provision"
	"github.com/rootline/rootline/provision/hsminject"
)

// The tests of package provision run injection through the real adapter;
// it imports provision, so only this external test file can build it.
func init() {
	provision.NewHSMInjectorForTest = func(m *hsm.Module) provision.Injector { return hsminject.New(m, nil) }
}
