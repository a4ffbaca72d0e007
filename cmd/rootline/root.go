package main

import (
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// globals are the flags every command shares; parsed only here.
type globals struct {
	logLevel  string
	logFormat string
}

func (g *globals) logger(cmd *cobra.Command) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

func newRootCommand(version string) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "rootline",
		Short: "An open root of trust for connected devices",
		Long: `rootline is an open root-of-trust stack for connected devices.

It has a security subsystem ("pluton": DRBG, non-exportable keys in
compartments, DICE identity, monotonic counters, a one-way lifecycle,
measured and secure boot, attestation evidence), a software emulation of a
chip built on it, factory key custody in PKCS#11 tokens and Vault, the
device certificate authority, and, as they land, the factory provisioning
service and the attestation verifier.

Start with the guided walkthrough:

  rootline demo

or drive an emulated chip yourself:

  rootline device init --state ./chip        # fuse a new chip
  rootline device info --state ./chip        # UEID, lifecycle, DeviceID key
  rootline image keygen --alg p256 --out os  # a signing key for OS images
  rootline device boot --help                # secure and measured boot
  rootline ca --help                         # the device CA`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	root.AddCommand(
		newVersionCommand(version),
		newDeviceCommand(g),
		newImageCommand(g),
		newHSMCommand(g),
		newCACommand(g),
		newLogCommand(g),
		newServeCommand(g),
		newStationCommand(g),
		newBenchCommand(g),
		newRegistryCommand(g),
		newEvidenceCommand(g),
		newDemoCommand(g),
	)
	return root
}

func newVersionCommand(version string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of rootline",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rev := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = " " + s.Value
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rootline %s%s %s %s/%s\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
