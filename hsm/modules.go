package hsm

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// softHSMPaths are where distributions install SoftHSM2's PKCS#11 module.
func softHSMPaths() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu", "arm": "arm-linux-gnueabihf", "riscv64": "riscv64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu"}[runtime.GOARCH]
	paths := []string{
		"/usr/lib/softhsm/libsofthsm2.so", // Debian, Ubuntu
	}
	if triplet != "" {
		paths = append(paths, "/usr/lib/"+triplet+"/softhsm/libsofthsm2.so")
	}
	return append(paths,
		"/usr/lib64/pkcs11/libsofthsm2.so",                  // Fedora, RHEL
		"/usr/lib64/softhsm/libsofthsm.so",                  // older RHEL
		"/usr/lib/pkcs11/libsofthsm2.so",                    // Arch, Alpine
		"/usr/local/lib/softhsm/libsofthsm2.so",             // built from source, FreeBSD
		"/opt/homebrew/lib/softhsm/libsofthsm2.so",          // macOS, Homebrew on arm64
		"/usr/local/opt/softhsm/lib/softhsm/libsofthsm2.so", // macOS, Homebrew on amd64
	)
}

// FindSoftHSM returns the path of SoftHSM2's PKCS#11 module, the first of
// the places distributions install it to that holds a regular file. It is
// what a URI without module-path or module-name loads.
func FindSoftHSM() (string, error) {
	for _, p := range softHSMPaths() {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: SoftHSM2 is not installed (looked in %s); install softhsm2 or give module-path", ErrModuleNotFound, strings.Join(softHSMPaths(), ", "))
}

// moduleDirs are where p11-kit and distributions keep PKCS#11 modules, for
// module-name (RFC 7512, 2.4).
func moduleDirs() []string {
	dirs := []string{"/usr/lib64/pkcs11", "/usr/lib/pkcs11", "/usr/local/lib/pkcs11"}
	for _, t := range []string{"x86_64-linux-gnu", "aarch64-linux-gnu"} {
		dirs = append(dirs, "/usr/lib/"+t+"/pkcs11")
	}
	return dirs
}

// modulePath picks the module a URI asks for: module-path as given,
// module-name looked up in the module directories ("softhsm2" also in
// SoftHSM2's own), or, with neither, SoftHSM2.
func modulePath(u *URI) (string, error) {
	switch {
	case u.ModulePath != "":
		return u.ModulePath, nil
	case u.ModuleName != "":
		name := strings.TrimSuffix(u.ModuleName, ".so")
		name = strings.TrimPrefix(name, "lib")
		if name == "softhsm2" || name == "softhsm" {
			return FindSoftHSM()
		}
		for _, d := range moduleDirs() {
			for _, f := range []string{"lib" + name + ".so", name + ".so"} {
				p := filepath.Join(d, f)
				if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
					return p, nil
				}
			}
		}
		return "", fmt.Errorf("%w: no module named %q in %s", ErrModuleNotFound, u.ModuleName, strings.Join(moduleDirs(), ", "))
	}
	return FindSoftHSM()
}
