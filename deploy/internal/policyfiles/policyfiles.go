// Package policyfiles collects the files of a policy directory that a serving
// authzd reads, and renders them as the Kubernetes ConfigMap and volume items
// that mount them at the same relative paths.
//
// A policy directory has the layout of an OPA bundle: .rego files anywhere,
// data.json and data.yaml files mounted at their directory's path, and
// *_test.rego files that only `opa test` reads. Collect keeps what serving
// needs and leaves the tests, READMEs and editor files out.
package policyfiles

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// MaxConfigMapBytes is the size limit of a ConfigMap's data that the
// Kubernetes API server enforces (1 MiB).
const MaxConfigMapBytes = 1 << 20

// File is one policy file: its slash-separated path relative to the policy
// directory and its content.
type File struct {
	Path string
	Data []byte
}

// Served reports whether authzd reads the file at the slash-separated
// relative path p when serving: Rego modules other than tests, data documents
// and a bundle manifest.
func Served(p string) bool {
	base := path.Base(p)
	switch {
	case strings.HasSuffix(base, "_test.rego"):
		return false
	case strings.HasSuffix(base, ".rego"):
		return true
	case base == "data.json", base == "data.yaml", base == "data.yml", base == ".manifest":
		return true
	}
	return false
}

// Collect returns the served files below dir, sorted by path. Hidden
// directories (such as .git or kubelet's ..data links) are skipped, and a
// symbolic link is an error rather than something to follow.
func Collect(dir string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		if !Served(rel) {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("policy file %q is not a regular file", rel)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: rel, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("collect policies from %q: %w", dir, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// keyPattern is the set of ConfigMap keys that the API server accepts.
var keyPattern = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// Key returns the ConfigMap key that holds the file at the slash-separated
// path p: the path with every "/" replaced by "--". It fails when p cannot be
// a key (characters outside the allowed set) or when the key would not decode
// back to p ("--" already in the path, or "-" beside a "/").
func Key(p string) (string, error) {
	if strings.Contains(p, "--") {
		return "", fmt.Errorf("policy path %q contains \"--\", which the key encoding reserves", p)
	}
	k := strings.ReplaceAll(p, "/", "--")
	if strings.ReplaceAll(k, "--", "/") != p {
		return "", fmt.Errorf("policy path %q has a name that starts or ends with \"-\" beside a \"/\", "+
			"which the key encoding cannot tell apart", p)
	}
	if len(k) > 253 || !keyPattern.MatchString(k) {
		return "", fmt.Errorf("policy path %q cannot be a ConfigMap key %q", p, k)
	}
	return k, nil
}

// RenderConfigMap returns the YAML of a ConfigMap named name that holds files
// under their keys, with a header saying that it is generated. Text files go
// to data as literal blocks, anything else to binaryData.
func RenderConfigMap(name string, files []File) ([]byte, error) {
	if len(files) == 0 {
		return nil, errors.New("render policy configmap: no policy files")
	}
	data := &yaml.Node{Kind: yaml.MappingNode}
	binary := &yaml.Node{Kind: yaml.MappingNode}
	total := 0
	for _, f := range files {
		k, err := Key(f.Path)
		if err != nil {
			return nil, fmt.Errorf("render policy configmap: %w", err)
		}
		total += len(k) + len(f.Data)
		keyNode := &yaml.Node{Kind: yaml.ScalarNode, Value: k}
		if utf8.Valid(f.Data) {
			v := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: string(f.Data)}
			if strings.Contains(v.Value, "\n") && !hasTrailingSpace(v.Value) {
				v.Style = yaml.LiteralStyle
			}
			data.Content = append(data.Content, keyNode, v)
			continue
		}
		v := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: base64.StdEncoding.EncodeToString(f.Data)}
		binary.Content = append(binary.Content, keyNode, v)
	}
	if total > MaxConfigMapBytes {
		return nil, fmt.Errorf("render policy configmap: %d bytes exceed the ConfigMap limit of %d; "+
			"ship the policy as an OPA bundle instead", total, MaxConfigMapBytes)
	}
	meta := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		scalar("name"), scalar(name),
		scalar("labels"), {Kind: yaml.MappingNode, Content: []*yaml.Node{
			scalar("app.kubernetes.io/name"), scalar("authzd"),
			scalar("app.kubernetes.io/component"), scalar("policy"),
		}},
	}}
	root := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		scalar("apiVersion"), scalar("v1"),
		scalar("kind"), scalar("ConfigMap"),
		scalar("metadata"), meta,
	}}
	if len(data.Content) > 0 {
		root.Content = append(root.Content, scalar("data"), data)
	}
	if len(binary.Content) > 0 {
		root.Content = append(root.Content, scalar("binaryData"), binary)
	}
	var buf bytes.Buffer
	buf.WriteString("# Code generated by `go run ./policysync` from the policies directory. DO NOT EDIT.\n")
	buf.WriteString("# Keys are the files' paths with \"/\" written as \"--\"; the Deployment's\n")
	buf.WriteString("# volume items mount each key back at its path.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("render policy configmap: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render policy configmap: %w", err)
	}
	return buf.Bytes(), nil
}

// Begin and End are the marker comments between which SpliceItems writes the
// volume items in a Deployment manifest.
const (
	Begin = "# BEGIN generated policy items"
	End   = "# END generated policy items"
)

// SpliceItems replaces the lines between the Begin and End markers of a
// manifest with an "items:" list that mounts each file's key at its path,
// indented like the Begin marker.
func SpliceItems(manifest []byte, files []File) ([]byte, error) {
	lines := strings.SplitAfter(string(manifest), "\n")
	begin, end := -1, -1
	for i, l := range lines {
		switch t := strings.TrimSpace(l); {
		case strings.HasPrefix(t, Begin):
			begin = i
		case strings.HasPrefix(t, End):
			end = i
		}
	}
	if begin < 0 || end < begin {
		return nil, fmt.Errorf("splice policy items: markers %q and %q not found in order", Begin, End)
	}
	indent := lines[begin][:len(lines[begin])-len(strings.TrimLeft(lines[begin], " "))]
	var b strings.Builder
	for _, l := range lines[:begin+1] {
		b.WriteString(l)
	}
	b.WriteString(indent + "items:\n")
	for _, f := range files {
		k, err := Key(f.Path)
		if err != nil {
			return nil, fmt.Errorf("splice policy items: %w", err)
		}
		fmt.Fprintf(&b, "%s  - key: %s\n%s    path: %s\n", indent, k, indent, f.Path)
	}
	for _, l := range lines[end:] {
		b.WriteString(l)
	}
	return []byte(b.String()), nil
}

func scalar(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: v}
}

// hasTrailingSpace reports whether a line of s ends in a space or tab, which
// a YAML literal block cannot keep.
func hasTrailingSpace(s string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasSuffix(l, " ") || strings.HasSuffix(l, "\t") {
			return true
		}
	}
	return false
}
