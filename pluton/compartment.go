package pluton

import (
	"fmt"
	"strings"
)

// Compartment names the owner of key slots and counters. The fixed ones are
// [SecurityMonitor] and [OS]; applications are App("name").
type Compartment string

const (
	// SecurityMonitor is the most privileged compartment: boot ROM and
	// security monitor firmware. It owns the DICE DeviceID key.
	SecurityMonitor Compartment = "sm"
	// OS is the operating system's compartment.
	OS Compartment = "os"
)

const appPrefix = "app:"

// App returns the compartment of the application called name. The name
// must be 1–64 characters from [a-z0-9._-].
func App(name string) Compartment { return Compartment(appPrefix + name) }

// Validate checks that c is [SecurityMonitor], [OS] or a well-formed App.
func (c Compartment) Validate() error {
	switch c {
	case SecurityMonitor, OS:
		return nil
	}
	name, ok := strings.CutPrefix(string(c), appPrefix)
	if !ok || len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("%w: compartment %q (want sm, os or app:NAME)", ErrInvalidArgument, string(c))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%w: compartment %q: app names use [a-z0-9._-]", ErrInvalidArgument, string(c))
		}
	}
	return nil
}

// ParseCompartment parses "sm", "os" or "app:NAME" (also "security-monitor").
func ParseCompartment(s string) (Compartment, error) {
	if s == "security-monitor" {
		return SecurityMonitor, nil
	}
	c := Compartment(s)
	if err := c.Validate(); err != nil {
		return "", err
	}
	return c, nil
}
