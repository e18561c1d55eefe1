package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader/filter"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/authzd/authzd/internal/lru"
)

// maxFileSize bounds one policy or data file, so that a stray large file in
// the policy directory cannot exhaust memory.
const maxFileSize = 32 << 20

// sourceFile is one file of a policy revision, as read from its source.
type sourceFile struct {
	// name is the slash-separated path relative to the policy root.
	name string
	data []byte
}

// snapshot is the content of a policy source at one moment.
type snapshot struct {
	files []sourceFile
	// hash is "sha256:" and the hex digest of every file's name and content.
	hash string
	// bundleRevision is the revision in a downloaded bundle's manifest.
	bundleRevision string
}

// isPolicyFile reports whether a file named name (base name) belongs to the
// serving policy: Rego modules except tests, and data files.
func isPolicyFile(name string) bool {
	switch {
	case strings.HasSuffix(name, "_test.rego"):
		return false
	case strings.HasSuffix(name, ".rego"):
		return true
	case name == "data.json", name == "data.yaml", name == "data.yml":
		return true
	}
	return false
}

// readSnapshot reads the policy files below root of fsys. Names that start
// with a dot are skipped, files and directories alike: a Kubernetes
// ConfigMap volume keeps its real files in "..2026_..." directories behind
// "..data" and symbolic links, which would otherwise be read twice.
// Symbolic links are followed, since that is how a ConfigMap presents its
// keys.
func readSnapshot(fsys fs.FS) (*snapshot, error) {
	var files []sourceFile
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return fmt.Errorf("read policy directory %q: %w", dir, err)
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			p := path.Join(dir, name)
			// fs.Stat follows symbolic links, unlike the DirEntry.
			fi, err := fs.Stat(fsys, p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					// A dangling link, or a file removed while we read.
					continue
				}
				return fmt.Errorf("stat policy file %q: %w", p, err)
			}
			if fi.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			if !fi.Mode().IsRegular() || !isPolicyFile(name) {
				continue
			}
			if fi.Size() > maxFileSize {
				return fmt.Errorf("read policy file %q: size %d over the limit %d", p, fi.Size(), maxFileSize)
			}
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return fmt.Errorf("read policy file %q: %w", p, err)
			}
			files = append(files, sourceFile{name: strings.TrimPrefix(p, "./"), data: data})
		}
		return nil
	}
	if err := walk("."); err != nil {
		return nil, err
	}
	return newSnapshot(files), nil
}

// newSnapshot sorts files by name and computes their content hash.
func newSnapshot(files []sourceFile) *snapshot {
	slices.SortFunc(files, func(a, b sourceFile) int { return strings.Compare(a.name, b.name) })
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(f.data))
		h.Write(f.data)
	}
	return &snapshot{files: files, hash: "sha256:" + hex.EncodeToString(h.Sum(nil))}
}

// memLoader is a bundle.DirectoryLoader over the files of a snapshot, so
// that what is hashed is exactly what is compiled.
type memLoader struct {
	files []sourceFile
	label string
	i     int
}

func (l *memLoader) NextFile() (*bundle.Descriptor, error) {
	if l.i >= len(l.files) {
		return nil, io.EOF
	}
	f := l.files[l.i]
	l.i++
	// The path decides where data is mounted; the URL names the file in
	// error messages.
	return bundle.NewDescriptor(path.Join(l.label, f.name), "/"+f.name, bytes.NewReader(f.data)), nil
}

func (l *memLoader) WithFilter(filter.LoaderFilter) bundle.DirectoryLoader {
	return l
}

func (l *memLoader) WithPathFormat(bundle.PathFormat) bundle.DirectoryLoader { return l }

func (l *memLoader) WithSizeLimitBytes(int64) bundle.DirectoryLoader { return l }

func (l *memLoader) WithFollowSymlinks(bool) bundle.DirectoryLoader { return l }

// revision is one compiled, prepared policy revision. It is immutable once
// built and shared by concurrent evaluations.
type revision struct {
	id string
	// bundleRevision is the revision in the bundle's manifest, if any.
	bundleRevision string
	loadedAt       time.Time
	files          []string
	packages       []string
	decide         rego.PreparedEvalQuery
	explain        rego.PreparedEvalQuery
	// reads is the policy's input_paths declaration, nil when it has none
	// or may not share results; unshared says why not, for the log.
	reads    *readSet
	unshared string
	// results are shared results by the key of the parts read; nil when
	// reads is nil or sharing is turned off.
	results *lru.Cache[[sha256.Size]byte, *Result]
}

// ruleNames are the rules of the contract, in query order.
var ruleNames = []string{"allow", "roles", "rls_filters", "reasons"}

// pkgRef parses a dotted package name into its data reference.
func pkgRef(pkg string) (ast.Ref, error) {
	if err := validPackage(pkg); err != nil {
		return nil, err
	}
	return ast.MustParseRef("data." + pkg), nil
}

// validPackage checks that pkg is a dotted Rego package name.
func validPackage(pkg string) error {
	if pkg == "" {
		return errors.New("package is empty")
	}
	for part := range strings.SplitSeq(pkg, ".") {
		if !isIdent(part) {
			return fmt.Errorf("package %q is not a dotted name of identifiers", pkg)
		}
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && '0' <= c && c <= '9':
		default:
			return false
		}
	}
	return !ast.IsKeyword(s)
}

// buildQuery returns the decision query for pkg: each rule wrapped in an
// array comprehension, so that an undefined rule gives an empty array
// instead of making the whole query undefined, while a conflict or runtime
// error still fails the query.
func buildQuery(pkg ast.Ref, rules []string) ast.Body {
	body := make(ast.Body, 0, len(rules))
	for _, r := range rules {
		x := ast.VarTerm("x")
		ref := pkg.Append(ast.StringTerm(r))
		comp := ast.ArrayComprehensionTerm(x, ast.NewBody(ast.Equality.Expr(x, ast.NewTerm(ref))))
		body = append(body, ast.Assign.Expr(ast.VarTerm(r), comp))
	}
	for i := range body {
		body[i].Index = i
	}
	return body
}

// compile turns a snapshot into a prepared revision, without the smoke
// evaluation.
func compile(ctx context.Context, snap *snapshot, pkg ast.Ref, label string) (*revision, error) {
	b, err := bundle.NewCustomReader(&memLoader{files: snap.files, label: label}).
		WithSkipBundleVerification(true).
		WithProcessAnnotations(true).
		WithRegoVersion(ast.RegoV1).
		WithBaseDir(label).
		Read()
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}

	// DESIGN.md: data goes beside a package, never at or below its path,
	// where it would mix with the rules of the package's document.
	pkgPath := strings.Join(refStrings(pkg[1:]), "/")
	for _, f := range snap.files {
		if strings.HasSuffix(f.name, ".rego") {
			continue
		}
		dir := path.Dir(f.name)
		if dir == pkgPath || strings.HasPrefix(dir, pkgPath+"/") {
			return nil, fmt.Errorf("load policy: data file %q is mounted at %q, inside package %q; move it beside the package",
				path.Join(label, f.name), "data."+strings.ReplaceAll(dir, "/", "."), pkg.String())
		}
	}

	modules := make(map[string]*ast.Module, len(b.Modules))
	pkgs := map[string]struct{}{}
	for _, m := range b.Modules {
		modules[m.Path] = m.Parsed
		pkgs[strings.TrimPrefix(m.Parsed.Package.Path.String(), "data.")] = struct{}{}
	}

	store := inmem.NewFromObjectWithOpts(b.Data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("load policy: open store: %w", err)
	}
	compiler := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(false)
	compiler.Compile(modules)
	store.Abort(ctx, txn)
	if compiler.Failed() {
		return nil, fmt.Errorf("compile policy: %w", compiler.Errors)
	}

	if _, ok := pkgs[strings.TrimPrefix(pkg.String(), "data.")]; !ok {
		return nil, fmt.Errorf("compile policy: package %q is not defined by any file", strings.TrimPrefix(pkg.String(), "data."))
	}
	if len(compiler.GetRulesExact(pkg.Append(ast.StringTerm("allow")))) == 0 {
		return nil, fmt.Errorf("compile policy: package %q has no rule \"allow\"", strings.TrimPrefix(pkg.String(), "data."))
	}

	reads, err := readDeclaration(ctx, compiler, store, pkg)
	if err != nil {
		return nil, fmt.Errorf("policy input declaration: %w", err)
	}
	rev := &revision{
		id:       snap.hash,
		reads:    reads,
		files:    make([]string, 0, len(snap.files)),
		packages: slices.Sorted(maps.Keys(pkgs)),
	}
	for _, f := range snap.files {
		rev.files = append(rev.files, f.name)
	}
	prepare := func(rules []string) (rego.PreparedEvalQuery, error) {
		return rego.New(
			rego.ParsedQuery(buildQuery(pkg, rules)),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.StoreReadAST(true),
		).PrepareForEval(ctx)
	}
	if rev.decide, err = prepare(ruleNames); err != nil {
		return nil, fmt.Errorf("prepare policy query: %w", err)
	}
	if rev.explain, err = prepare(append(slices.Clone(ruleNames), "matches")); err != nil {
		return nil, fmt.Errorf("prepare policy query: %w", err)
	}
	switch name := changingCall(compiler); {
	case rev.reads == nil:
		rev.unshared = "the policy does not declare " + InputPathsRule
	case name != "":
		rev.unshared = fmt.Sprintf("the policy calls %s, whose result can change between evaluations", name)
	}
	return rev, nil
}

func refStrings(r ast.Ref) []string {
	out := make([]string, 0, len(r))
	for _, t := range r {
		if s, ok := t.Value.(ast.String); ok {
			out = append(out, string(s))
		} else {
			out = append(out, t.String())
		}
	}
	return out
}

// dirFS is os.DirFS, kept as a function for the source of a directory.
func dirFS(dir string) fs.FS {
	return os.DirFS(filepath.Clean(dir))
}
