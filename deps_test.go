package gatehouse

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/gatehouse/gatehouse"

// pkgInfo is what `go list` tells about one package of ours.
type pkgInfo struct {
	path string
	deps []string // transitive, non-test
}

// listPackages returns our packages and their transitive dependencies, and
// the set of standard-library packages among all of them.
func listPackages(t *testing.T) ([]pkgInfo, map[string]bool) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	std := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[1] == "true" {
			std[f[0]] = true
		}
	}
	out, err = exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Deps " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkgInfo
	sc = bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		path, deps, _ := strings.Cut(sc.Text(), "|")
		pkgs = append(pkgs, pkgInfo{path: path, deps: strings.Fields(deps)})
	}
	return pkgs, std
}

// area is the top-level folder of one of our packages ("access", "edge", ...).
func area(path string) string {
	rel, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	a, _, _ := strings.Cut(rel, "/")
	return a
}

// TestImportArrows asserts the layout's arrows (DESIGN.md §3): they point
// down the table and never back up.
func TestImportArrows(t *testing.T) {
	pkgs, std := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	// allowed[a] lists the areas of ours that packages in area a may depend on.
	allowed := map[string][]string{
		"access":      {"access"},
		"replication": {"access", "replication"},
		"hardware":    {"access", "hardware"},
		"proto":       {"proto"},
		"syncwire":    {"access", "replication", "proto", "syncwire"},
		"edge":        {"access", "replication", "hardware", "proto", "syncwire", "edge"},
		"cloud":       {"access", "replication", "proto", "syncwire", "cloud"},
		"sim":         {"access", "replication", "hardware", "proto", "syncwire", "edge", "cloud", "sim"},
		"cmd":         {"access", "replication", "hardware", "proto", "syncwire", "edge", "cloud", "sim", "cmd"},
		"":            {"access", "replication", "hardware", "proto", "syncwire", "edge", "cloud", "sim", "cmd", ""},
	}
	for _, p := range pkgs {
		a := area(p.path)
		ok := map[string]bool{}
		for _, x := range allowed[a] {
			ok[x] = true
		}
		for _, d := range p.deps {
			switch {
			case strings.HasPrefix(d, module+"/") || d == module:
				if !ok[area(d)] {
					t.Errorf("%s imports %s: %s may not depend on %s", p.path, d, a, area(d))
				}
			case a == "access" && !std[d]:
				t.Errorf("%s imports %s: access imports the standard library only", p.path, d)
			case a == "replication" && !std[d]:
				t.Errorf("%s imports %s: replication imports only access and the standard library", p.path, d)
			}
		}
	}
}

func TestArea(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{module + "/access", "access"},
		{module + "/edge/raftnode", "edge"},
		{module, ""},
		{"github.com/hashicorp/raft", ""},
	} {
		if got := area(tc.path); got != tc.want {
			t.Errorf("area(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
