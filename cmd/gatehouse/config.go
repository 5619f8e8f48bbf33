package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// parseConfig fills cfg in three layers: the defaults already in *cfg, then
// the JSON file named by the --config flag (if any), then every flag given
// on the command line. bind registers the flags on fs against the fields of
// the config it is handed, using the current field values as defaults, so
// that --help shows what is in force. It returns the positional arguments.
func parseConfig[C any](name string, args []string, out io.Writer, cfg *C, bind func(fs *flag.FlagSet, c *C)) ([]string, error) {
	newFS := func(c *C, configPath *string) *flag.FlagSet {
		fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
		fs.SetOutput(out)
		fs.StringVar(configPath, "config", *configPath, "JSON configuration file; flags given on the command line override it")
		bind(fs, c)
		return fs
	}
	// First pass: find --config (and answer --help) against a throwaway copy.
	probe := *cfg
	var path string
	fs := newFS(&probe, &path)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if path == "" {
		*cfg = probe
		return rest, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	// Second pass: flags override the file.
	fs = newFS(cfg, &path)
	return parseInterspersed(fs, args)
}

// parseInterspersed parses flags that may come before or after positional
// arguments ("bench all --quick" and "bench --quick all" mean the same).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		if args[0] == "--" {
			return append(rest, args[1:]...), nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

// errUsage marks an error in how a command was called.
var errUsage = errors.New("usage")
