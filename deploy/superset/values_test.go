package superset_test

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// values lists the chart keys that values.yaml sets; strict decoding into it
// catches a misspelled key, which the chart itself would silently ignore.
type values struct {
	BootstrapScript string            `json:"bootstrapScript"`
	ExtraEnv        map[string]string `json:"extraEnv"`
	ExtraEnvRaw     []corev1.EnvVar   `json:"extraEnvRaw"`
	ConfigOverrides map[string]string `json:"configOverrides"`
}

const integration = "../../integrations/superset"

func load(t *testing.T) values {
	t.Helper()
	data, err := os.ReadFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v values
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	return v
}

// overrides returns the configOverrides in key order, as one Python file.
func (v values) overrides() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(v.ConfigOverrides)) {
		b.WriteString(v.ConfigOverrides[k])
		b.WriteString("\n")
	}
	return b.String()
}

func TestValues(t *testing.T) {
	v := load(t)
	py := v.overrides()
	tests := []struct {
		name string
		text string
		want string // a regular expression
	}{
		{"bootstrap is a bash script", v.BootstrapScript, `\A#!/bin/bash\n`},
		{"bootstrap stops on failure", v.BootstrapScript, `(?m)^set -euo pipefail$`},
		{"bootstrap installs the manager", v.BootstrapScript, `pip install[^\n]*"authzd-superset==`},
		{"bootstrap installs Authlib", v.BootstrapScript, `pip install[^\n]*"Authlib`},
		{"manager imported", py, `(?m)^from authzd_superset import AuthzdSecurityManager$`},
		{"manager configured", py, `(?m)^CUSTOM_SECURITY_MANAGER = AuthzdSecurityManager$`},
		{"authzd URL configured", py, `(?m)^AUTHZD_URL = `},
		{"timeout configured", py, `(?m)^AUTHZD_TIMEOUT = `},
		{"OAuth login", py, `(?m)^AUTH_TYPE = AUTH_OAUTH$`},
		{"RLS in SQL Lab", py, `"RLS_IN_SQLLAB": True`},
		{"authzd Service URL", v.ExtraEnv["AUTHZD_URL"], `\Ahttp://authzd\.authzd\.svc\.cluster\.local:8080\z`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !regexp.MustCompile(tc.want).MatchString(tc.text) {
				t.Errorf("got %q, want a match of %q", tc.text, tc.want)
			}
		})
	}
	for _, e := range v.ExtraEnvRaw {
		if strings.Contains(strings.ToUpper(e.Name), "SECRET") && (e.Value != "" || e.ValueFrom == nil) {
			t.Errorf("env %q: got a literal value, want a secretKeyRef", e.Name)
		}
	}
}

// TestOverridesAreValidPython parses the configOverrides with the Python
// found on PATH; they are pasted into superset_config.py verbatim.
func TestOverridesAreValidPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH")
	}
	cmd := exec.Command(python, "-c", "import ast, sys; ast.parse(sys.stdin.read(), 'superset_config.py')")
	cmd.Stdin = strings.NewReader(load(t).overrides())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("configOverrides do not parse as Python: %v\n%s", err, out)
	}
}

// TestMatchesIntegration checks that the names values.yaml relies on exist
// in the security manager package it installs.
func TestMatchesIntegration(t *testing.T) {
	if _, err := os.Stat(integration); err != nil {
		t.Skipf("no %s: %v", integration, err)
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(integration, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	pyproject := read("pyproject.toml")
	initPy := read("src/authzd_superset/__init__.py")
	manager := read("src/authzd_superset/manager.py")
	v := load(t)
	tests := []struct {
		name, text, want string
	}{
		{"distribution name", pyproject, `(?m)^name = "authzd-superset"$`},
		{"pinned version", pyproject, `(?m)^version = "` + regexp.QuoteMeta(pinned(t, v.BootstrapScript)) + `"$`},
		{"exported manager", initPy, `"AuthzdSecurityManager"`},
		{"manager class", manager, `(?m)^class AuthzdSecurityManager\(`},
		{"AUTHZD_URL key", manager, `config\["AUTHZD_URL"\]`},
		{"AUTHZD_TIMEOUT key", manager, `config\.get\("AUTHZD_TIMEOUT"\)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !regexp.MustCompile(tc.want).MatchString(tc.text) {
				t.Errorf("integrations/superset has no match of %q; align deploy/superset/values.yaml", tc.want)
			}
		})
	}
}

// pinned returns the version of authzd-superset that the bootstrap script
// installs.
func pinned(t *testing.T, script string) string {
	t.Helper()
	m := regexp.MustCompile(`"authzd-superset==([^"]+)"`).FindStringSubmatch(script)
	if m == nil {
		t.Fatal("bootstrap script pins no authzd-superset version")
	}
	return m[1]
}
