package policyfiles_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/authzd/authzd/deploy/internal/policyfiles"
)

func TestServed(t *testing.T) {
	tests := []struct {
		name string
		path string
		want bool
	}{
		{name: "module", path: "superset/authz.rego", want: true},
		{name: "test module", path: "superset/authz_test.rego", want: false},
		{name: "json data", path: "superset/mappings/data.json", want: true},
		{name: "yaml data", path: "data.yaml", want: true},
		{name: "other json", path: "superset/cases.json", want: false},
		{name: "bundle manifest", path: ".manifest", want: true},
		{name: "readme", path: "README.md", want: false},
		{name: "go file", path: "embed.go", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := policyfiles.Served(tc.path); got != tc.want {
				t.Errorf("Served(%q): got %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

func TestCollect(t *testing.T) {
	dir := t.TempDir()
	for p, c := range map[string]string{
		"b/authz.rego":          "package b\n",
		"b/authz_test.rego":     "package b_test\n",
		"a/mappings/data.json":  "{}\n",
		"embed.go":              "package policies\n",
		".git/HEAD":             "ref\n",
		".hidden/x.rego":        "package hidden\n",
		"..data/authz.rego":     "package kubelet\n",
		"z/README.md":           "docs\n",
		"a/mappings/other.json": "{}\n",
	} {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := policyfiles.Collect(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
	}
	want := []string{"a/mappings/data.json", "b/authz.rego"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("collected paths (-want +got):\n%s", diff)
	}
	if _, err := policyfiles.Collect(filepath.Join(dir, "missing")); err == nil {
		t.Error("got no error for a missing directory")
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr string
	}{
		{name: "nested", path: "superset/mappings/data.json", want: "superset--mappings--data.json"},
		{name: "top level", path: "authz.rego", want: "authz.rego"},
		{name: "reserved separator", path: "a--b/x.rego", wantErr: "which the key encoding reserves"},
		{name: "space", path: "my policy.rego", wantErr: "cannot be a ConfigMap key"},
		{name: "too long", path: strings.Repeat("a", 250) + ".rego", wantErr: "cannot be a ConfigMap key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policyfiles.Key(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Key(%q): got %q, %v, want %q", tc.path, got, err, tc.want)
			}
		})
	}
}

// FuzzKey checks that every key decodes back to its path.
func FuzzKey(f *testing.F) {
	for _, s := range []string{"superset/authz.rego", "a/b/c/data.json", "x-y/z_test.rego", "-/-", "a/", "a-/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		k, err := policyfiles.Key(p)
		if err != nil {
			return
		}
		if got := strings.ReplaceAll(k, "--", "/"); got != p {
			t.Errorf("Key(%q) = %q decodes to %q", p, k, got)
		}
	})
}

func TestRenderConfigMapRoundTrip(t *testing.T) {
	files := []policyfiles.File{
		{Path: "a/data.json", Data: []byte("{\n  \"x\": 1\n}\n")},
		{Path: "a/no-newline.rego", Data: []byte("package a\n\ndefault allow := false")},
		{Path: "a/trailing-space.rego", Data: []byte("package a \n# comment\t\n")},
		{Path: "a/indented.rego", Data: []byte("  package a\n\n\n")},
		{Path: "b/data.yaml", Data: []byte("key: 'quoted: value'\n- odd\n")},
		{Path: "c/data.json", Data: []byte{0xff, 0xfe, 0x00, 'x'}},
	}
	out, err := policyfiles.RenderConfigMap("authzd-policies", files)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(out, &cm); err != nil {
		t.Fatalf("rendered ConfigMap does not decode: %v\n%s", err, out)
	}
	got := map[string]string{}
	for k, v := range cm.Data {
		got[k] = v
	}
	for k, v := range cm.BinaryData {
		got[k] = string(v)
	}
	want := map[string]string{}
	for _, f := range files {
		k, _ := policyfiles.Key(f.Path)
		want[k] = string(f.Data)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("content after the round trip (-want +got):\n%s", diff)
	}
	if cm.Name != "authzd-policies" || cm.Kind != "ConfigMap" || cm.APIVersion != "v1" {
		t.Errorf("got %s %s %q, want v1 ConfigMap %q", cm.APIVersion, cm.Kind, cm.Name, "authzd-policies")
	}
}

func TestRenderConfigMapRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files []policyfiles.File
		want  string
	}{
		{name: "no files", want: "no policy files"},
		{name: "too big", files: []policyfiles.File{
			{Path: "big.rego", Data: make([]byte, policyfiles.MaxConfigMapBytes)},
		}, want: "exceed the ConfigMap limit"},
		{name: "bad path", files: []policyfiles.File{{Path: "a b.rego"}}, want: "cannot be a ConfigMap key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policyfiles.RenderConfigMap("x", tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSpliceItems(t *testing.T) {
	manifest := "a:\n    # BEGIN generated policy items: run it\n    items: []\n    # END generated policy items\nb: 1\n"
	files := []policyfiles.File{{Path: "s/authz.rego"}, {Path: "s/m/data.json"}}
	got, err := policyfiles.SpliceItems([]byte(manifest), files)
	if err != nil {
		t.Fatal(err)
	}
	want := "a:\n    # BEGIN generated policy items: run it\n    items:\n" +
		"      - key: s--authz.rego\n        path: s/authz.rego\n" +
		"      - key: s--m--data.json\n        path: s/m/data.json\n" +
		"    # END generated policy items\nb: 1\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("spliced manifest (-want +got):\n%s", diff)
	}
	again, err := policyfiles.SpliceItems(got, files)
	if err != nil || string(again) != string(got) {
		t.Errorf("splicing twice changed the manifest: %v\n%s", err, again)
	}
	if _, err := policyfiles.SpliceItems([]byte("a: 1\n"), files); err == nil {
		t.Error("got no error for a manifest without markers")
	}
}
