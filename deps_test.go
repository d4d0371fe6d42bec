package nascache_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/nascache/nascache"

// layer ranks the top-level folders: a package may import module packages
// of its own layer or below, never above. Unknown top-level folders fail
// the test, so a new package has to be placed here on purpose.
var layer = map[string]int{
	"backend":     0,
	"meta":        1,
	"chunkstore":  1,
	"writeback":   1,
	"cluster":     1,
	"cachefs":     2,
	"nfsserver":   3,
	"cmd":         4,
	"integration": 4,
	"bench":       4,
	"":            4, // the module root (doc and this test)
}

// forbidden lists direct imports that the layering alone would allow but
// the design does not. Layering and these rules bind production code;
// tests are free except backend's.
var forbidden = []struct {
	from, to []string // top-level folders
	why      string
}{
	{[]string{"nfsserver"}, []string{"backend", "meta", "chunkstore", "writeback", "cluster"},
		"nfsserver knows only the FS it serves (cachefs types); caching and origins stay below cachefs"},
}

// dbOnlyIn is the one package that may open the database.
const dbOnlyIn = "meta"

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// top returns the top-level folder of a module package ("" for the root)
// and whether path is in the module at all.
func top(path string) (string, bool) {
	if path == module {
		return "", true
	}
	rest, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return "", false
	}
	first, _, _ := strings.Cut(rest, "/")
	return first, true
}

// sub returns the folder right below backend/ ("local" for
// backend/local/x), or "" for backend itself.
func sub(path string) string {
	rest, _ := strings.CutPrefix(path, module+"/backend")
	rest = strings.TrimPrefix(rest, "/")
	first, _, _ := strings.Cut(rest, "/")
	return first
}

// violations checks the import graph and returns one line per broken rule.
func violations(pkgs []pkg) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, p := range pkgs {
		from, ok := top(p.ImportPath)
		if !ok {
			continue
		}
		lf, known := layer[from]
		if !known {
			bad("%s: top-level folder %q has no layer; add it to layer in deps_test.go", p.ImportPath, from)
			continue
		}
		check := func(imports []string, test bool) {
			for _, imp := range imports {
				if imp == "go.etcd.io/bbolt" && !test && from != dbOnlyIn {
					bad("%s imports %s: only %s opens the database", p.ImportPath, imp, dbOnlyIn)
				}
				to, ok := top(imp)
				if !ok || imp == p.ImportPath {
					continue
				}
				lt, known := layer[to]
				if !known {
					continue // reported for the imported package itself
				}
				if test {
					// Tests may reach up (cachefs's tests assert that
					// *cachefs.FS is an nfsserver.FS), except that the
					// origins are tested on their own.
					if from == "backend" && to != "backend" {
						bad("%s test imports %s: backend tests stand alone, without the layers above", p.ImportPath, imp)
					}
					continue
				}
				if lt > lf {
					bad("%s imports %s: %s (layer %d) may not depend on %s (layer %d)", p.ImportPath, imp, from, lf, to, lt)
					continue
				}
				for _, f := range forbidden {
					if slices.Contains(f.from, from) && slices.Contains(f.to, to) {
						bad("%s imports %s: %s", p.ImportPath, imp, f.why)
					}
				}
				if from == "backend" && to == "backend" && sub(p.ImportPath) != "" && sub(imp) != "" && sub(p.ImportPath) != sub(imp) {
					bad("%s imports %s: one origin implementation may not depend on another", p.ImportPath, imp)
				}
			}
		}
		check(p.Imports, false)
		check(p.TestImports, true)
		check(p.XTestImports, true)
	}
	slices.Sort(out)
	return out
}

// TestDependencyDirection reads the real import graph with go list.
func TestDependencyDirection(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), goTool, "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.ImportPath == module+"/nfsserver" }) {
		t.Fatalf("go list found no nfsserver among %d packages: wrong directory?", len(pkgs))
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestViolations checks the checker on small graphs.
func TestViolations(t *testing.T) {
	m := func(s string) string {
		if s == "" {
			return module
		}
		return module + "/" + s
	}
	tests := []struct {
		name string
		pkgs []pkg
		want int
	}{
		{"clean", []pkg{
			{ImportPath: m("cmd/nascache"), Imports: []string{m("nfsserver"), m("cachefs"), m("backend/local"), "fmt"}},
			{ImportPath: m("nfsserver"), Imports: []string{m("cachefs")}, TestImports: []string{m("backend/local")}},
			{ImportPath: m("cachefs"), Imports: []string{m("meta"), m("backend")}},
			{ImportPath: m("meta"), Imports: []string{m("backend"), "go.etcd.io/bbolt"}},
			{ImportPath: m("backend/nfs"), Imports: []string{m("backend"), m("backend/nfs/oncrpc")}},
			{ImportPath: m("integration"), XTestImports: []string{m("cmd/nascache"), m("backend/nfs")}},
		}, 0},
		{"backend imports cachefs", []pkg{{ImportPath: m("backend/local"), Imports: []string{m("cachefs")}}}, 1},
		{"meta imports nfsserver", []pkg{{ImportPath: m("meta"), Imports: []string{m("nfsserver")}}}, 1},
		{"nfsserver imports backend", []pkg{{ImportPath: m("nfsserver"), Imports: []string{m("backend/local")}}}, 1},
		{"nfsserver imports meta", []pkg{{ImportPath: m("nfsserver/internal/x"), Imports: []string{m("meta")}}}, 1},
		{"cachefs test asserts nfsserver.FS", []pkg{{ImportPath: m("cachefs"), XTestImports: []string{m("nfsserver")}}}, 0},
		{"backend test imports cachefs", []pkg{{ImportPath: m("backend/local"), TestImports: []string{m("cachefs")}}}, 1},
		{"backend conformance suite imports meta", []pkg{{ImportPath: m("backend/origintest"), Imports: []string{m("meta")}}}, 1},
		{"origin imports origin", []pkg{{ImportPath: m("backend/nfs"), Imports: []string{m("backend/local")}}}, 1},
		{"bbolt outside meta", []pkg{{ImportPath: m("cachefs"), Imports: []string{"go.etcd.io/bbolt"}}}, 1},
		{"unplaced folder", []pkg{{ImportPath: m("util")}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := violations(tt.pkgs); len(got) != tt.want {
				t.Errorf("violations = %q, want %d", got, tt.want)
			}
		})
	}
}
