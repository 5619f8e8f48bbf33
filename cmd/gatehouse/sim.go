package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
)

// SimMain will run simulated devices and scenario files against a site
// (issue "Hardware protocols and the field engineers' simulator"). The
// device protocols it needs are not built yet, so it refuses to run rather
// than pretend: the README lists it as missing.
type SimMain struct {
	env
}

// errNotBuilt reports a part of Gatehouse that does not exist yet.
var errNotBuilt = errors.New("not built yet")

// ParseFlags accepts only --help.
func (m *SimMain) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("gatehouse sim", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: gatehouse sim ...\n\nThe device simulator is not built yet (see README, \"What is missing\").")
	}
	return fs.Parse(args)
}

// Run reports that the simulator is missing.
func (m *SimMain) Run(context.Context) error {
	return fmt.Errorf("the device simulator is %w (see README, \"What is missing\")", errNotBuilt)
}

// Close does nothing.
func (m *SimMain) Close() error { return nil }
