package ociimage_test

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/authzd/authzd/deploy/internal/ociimage"
)

// inputs are the fake inputs of a build, made once per test binary: a tiny
// static Go program standing in for authzd, a one-certificate CA bundle and a
// policy directory.
type inputs struct {
	binary, caBundle, policies string
	binaryData, caData         []byte
}

// tempRoot is the directory of the fake inputs, removed by TestMain.
var tempRoot string

var fakeInputs = sync.OnceValues(func() (*inputs, error) {
	dir, err := os.MkdirTemp("", "ociimage-test-")
	if err != nil {
		return nil, err
	}
	tempRoot = dir
	in := &inputs{
		binary:   filepath.Join(dir, "authzd"),
		caBundle: filepath.Join(dir, "ca.pem"),
		policies: filepath.Join(dir, "policies"),
	}
	src := filepath.Join(dir, "src")
	files := map[string]string{
		filepath.Join(src, "go.mod"):  "module fakeauthzd\n\ngo 1.26\n",
		filepath.Join(src, "main.go"): "package main\n\nfunc main() { println(\"fake authzd\") }\n",
		filepath.Join(in.policies, "superset", "authz.rego"): "package superset.authz\n\n" +
			"default allow := false\n",
		filepath.Join(in.policies, "superset", "authz_test.rego"):       "package superset.authz_test\n",
		filepath.Join(in.policies, "superset", "mappings", "data.json"): `{"groups": {}}` + "\n",
		filepath.Join(in.policies, "README.md"):                         "not shipped\n",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", in.binary, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, &buildError{out: out, err: err}
	}
	if in.binaryData, err = os.ReadFile(in.binary); err != nil {
		return nil, err
	}
	in.caData, err = selfSignedPEM()
	if err != nil {
		return nil, err
	}
	return in, os.WriteFile(in.caBundle, in.caData, 0o644)
})

type buildError struct {
	out []byte
	err error
}

func (e *buildError) Error() string {
	return "build fake binary: " + e.err.Error() + "\n" + string(e.out)
}

func selfSignedPEM() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "authzd test CA"},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Unix(0, 0).AddDate(100, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func testInputs(t *testing.T) *inputs {
	t.Helper()
	in, err := fakeInputs()
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func options(in *inputs) ociimage.Options {
	return ociimage.Options{
		Binary:   in.binary,
		CABundle: in.caBundle,
		Policies: in.policies,
		Created:  time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Version:  "0.1.0",
		Revision: "0123456789abcdef",
	}
}

func build(t *testing.T, o ociimage.Options) v1.Image {
	t.Helper()
	img, err := ociimage.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func inspect(t *testing.T, img v1.Image) *ociimage.Inspection {
	t.Helper()
	in, err := ociimage.Inspect(img)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func archive(t *testing.T, img v1.Image, ref string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := ociimage.WriteArchive(&buf, img, ref); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBuildConfig(t *testing.T) {
	in := testInputs(t)
	got := inspect(t, build(t, options(in))).Config
	if err := ociimage.Check(&ociimage.Inspection{Config: got, Files: nil}, ""); err == nil {
		t.Fatal("got a passing check without files, want failures")
	}
	want := v1.Config{
		Entrypoint:   []string{"/authzd"},
		Cmd:          []string{"serve", "--config", "/etc/authzd/config.yaml"},
		User:         "65532:65532",
		WorkingDir:   "/",
		Env:          []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "9090/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "authzd",
			"org.opencontainers.image.description": "Authorization decisions for Apache Superset from OIDC ID tokens and Rego policies",
			"org.opencontainers.image.created":     "2026-12-01T00:00:00Z",
			"org.opencontainers.image.version":     "0.1.0",
			"org.opencontainers.image.revision":    "0123456789abcdef",
		},
	}
	if diff := cmp.Diff(want, got.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if got.OS != "linux" || got.Architecture != "amd64" {
		t.Errorf("got platform %s/%s, want linux/amd64", got.OS, got.Architecture)
	}
	if want := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC); !got.Created.Time.Equal(want) {
		t.Errorf("got created %s, want %s", got.Created.Time, want)
	}
}

func TestBuildFiles(t *testing.T) {
	in := testInputs(t)
	img := inspect(t, build(t, options(in)))
	if err := ociimage.Check(img, "amd64"); err != nil {
		t.Errorf("check of a fresh build: %v", err)
	}
	tests := []struct {
		name     string
		path     string
		wantMode fs.FileMode
		wantUID  int
		wantData []byte // nil: not compared
	}{
		{name: "binary", path: "/authzd", wantMode: 0o755, wantData: in.binaryData},
		{name: "CA bundle", path: "/etc/ssl/certs/ca-certificates.crt", wantMode: 0o644, wantData: in.caData},
		{name: "passwd", path: "/etc/passwd", wantMode: 0o644, wantData: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "group", path: "/etc/group", wantMode: 0o644, wantData: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "policy", path: "/etc/authzd/policies/superset/authz.rego", wantMode: 0o644,
			wantData: []byte("package superset.authz\n\ndefault allow := false\n")},
		{name: "policy data", path: "/etc/authzd/policies/superset/mappings/data.json", wantMode: 0o644},
		{name: "policy directory", path: "/etc/authzd/policies/superset", wantMode: fs.ModeDir | 0o755},
		{name: "home", path: "/home/nonroot", wantMode: fs.ModeDir | 0o700, wantUID: 65532},
		{name: "tmp", path: "/tmp", wantMode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := img.Files[tc.path]
			if !ok {
				t.Fatalf("got no %q", tc.path)
			}
			if f.Mode != tc.wantMode {
				t.Errorf("got mode %s, want %s", f.Mode, tc.wantMode)
			}
			if f.UID != tc.wantUID || f.GID != tc.wantUID {
				t.Errorf("got owner %d:%d, want %d:%d", f.UID, f.GID, tc.wantUID, tc.wantUID)
			}
			if tc.wantData != nil && !bytes.Equal(f.Data, tc.wantData) {
				t.Errorf("got %d bytes of content, want the %d input bytes", len(f.Data), len(tc.wantData))
			}
		})
	}
	for _, p := range []string{
		"/etc/authzd/policies/superset/authz_test.rego",
		"/etc/authzd/policies/README.md",
		"/etc/authzd/config.yaml",
	} {
		if _, ok := img.Files[p]; ok {
			t.Errorf("got %q in the image, want it left out", p)
		}
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	in := testInputs(t)
	first := build(t, options(in))
	second := build(t, options(in))
	d1, _ := first.Digest()
	d2, _ := second.Digest()
	if d1 != d2 {
		t.Errorf("got digests %s and %s from the same inputs, want one", d1, d2)
	}
	if !bytes.Equal(archive(t, first, "authzd:0.1.0"), archive(t, second, "authzd:0.1.0")) {
		t.Error("got different archive bytes from the same inputs")
	}

	later := options(in)
	later.Created = later.Created.Add(time.Second)
	if d, _ := build(t, later).Digest(); d == d1 {
		t.Errorf("got digest %s for a different creation time, want a different one", d)
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	in := testInputs(t)
	img := build(t, options(in))
	want, _ := img.Digest()
	path := filepath.Join(t.TempDir(), "authzd.tar")
	if err := os.WriteFile(path, archive(t, img, "registry.example.com/authzd:0.1.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ociimage.ReadArchive(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want {
		t.Errorf("got digest %s after the round trip, want %s", got.Digest, want)
	}
	if err := ociimage.Check(got, "amd64"); err != nil {
		t.Errorf("check: %v", err)
	}

	entries := tarEntries(t, path)
	var index v1.IndexManifest
	if err := json.Unmarshal(entries["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("got %d manifests in index.json, want 1", len(index.Manifests))
	}
	wantAnn := map[string]string{
		"io.containerd.image.name":          "registry.example.com/authzd:0.1.0",
		"org.opencontainers.image.ref.name": "0.1.0",
	}
	if diff := cmp.Diff(wantAnn, index.Manifests[0].Annotations); diff != "" {
		t.Errorf("index.json annotations (-want +got):\n%s", diff)
	}
	if index.Manifests[0].Digest != want {
		t.Errorf("got index.json digest %s, want %s", index.Manifests[0].Digest, want)
	}
	if got := string(entries["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("got oci-layout %q", got)
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &docker); err != nil {
		t.Fatal(err)
	}
	if len(docker) != 1 || len(docker[0].Layers) != 1 {
		t.Fatalf("got manifest.json %+v, want one image of one layer", docker)
	}
	if diff := cmp.Diff([]string{"registry.example.com/authzd:0.1.0"}, docker[0].RepoTags); diff != "" {
		t.Errorf("manifest.json RepoTags (-want +got):\n%s", diff)
	}
	for _, p := range append([]string{docker[0].Config}, docker[0].Layers...) {
		if _, ok := entries[p]; !ok {
			t.Errorf("manifest.json names %q, which the archive lacks", p)
		}
	}
}

// tarEntries returns the regular files of the tar archive at path.
func tarEntries(t *testing.T, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(tr); err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b.Bytes()
	}
	return out
}

func TestBuildRefusesBadInputs(t *testing.T) {
	in := testInputs(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	script := write("script", "#!/bin/sh\necho hi\n")
	noCerts := write("empty.pem", "not a certificate\n")
	write("norego/superset/mappings/data.json", "{}\n")
	write("testsonly/authz_test.rego", "package x_test\n")

	tests := []struct {
		name   string
		modify func(o *ociimage.Options)
		want   string
	}{
		{"no binary flag", func(o *ociimage.Options) { o.Binary = "" }, "missing binary"},
		{"binary not found", func(o *ociimage.Options) { o.Binary = filepath.Join(dir, "nope") }, "no such file"},
		{"script as binary", func(o *ociimage.Options) { o.Binary = script }, "not an ELF executable"},
		{"wrong architecture", func(o *ociimage.Options) { o.Arch = "arm64" }, "want EM_AARCH64"},
		{"unknown architecture", func(o *ociimage.Options) { o.Arch = "pdp11" }, `unknown architecture "pdp11"`},
		{"CA bundle without certificates", func(o *ociimage.Options) { o.CABundle = noCerts }, "holds no certificate"},
		{"policies without rego", func(o *ociimage.Options) { o.Policies = filepath.Join(dir, "norego") }, "no .rego file"},
		{"policies with tests only", func(o *ociimage.Options) { o.Policies = filepath.Join(dir, "testsonly") }, "no .rego file"},
	}
	if dyn := dynamicBinary(); dyn != "" {
		tests = append(tests, struct {
			name   string
			modify func(o *ociimage.Options)
			want   string
		}{"dynamically linked binary", func(o *ociimage.Options) { o.Binary = dyn }, "dynamically linked"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options(in)
			tc.modify(&o)
			_, err := ociimage.Build(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// dynamicBinary returns a dynamically linked amd64 program of this machine,
// or "" when there is none.
func dynamicBinary() string {
	for _, p := range []string{"/bin/true", "/usr/bin/true", "/bin/ls"} {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("ld-linux-x86-64")) {
			return p
		}
	}
	return ""
}

func TestCheckFindsProblems(t *testing.T) {
	in := testInputs(t)
	good := build(t, options(in))
	withConfig := func(f func(c *v1.Config)) func(t *testing.T) v1.Image {
		return func(t *testing.T) v1.Image {
			cf, err := good.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := *cf.Config.DeepCopy()
			f(&c)
			img, err := mutate.Config(good, c)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	withFile := func(h tar.Header, data string) func(t *testing.T) v1.Image {
		return func(t *testing.T) v1.Image {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			h.Size = int64(len(data))
			if h.Typeflag == 0 {
				h.Typeflag = tar.TypeReg
			}
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(data)); err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			l, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			img, err := mutate.AppendLayers(good, l)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	tests := []struct {
		name  string
		image func(t *testing.T) v1.Image
		want  string
	}{
		{"root user", withConfig(func(c *v1.Config) { c.User = "0" }), `user: got "0"`},
		{"other entrypoint", withConfig(func(c *v1.Config) { c.Entrypoint = []string{"/bin/sh"} }), "entrypoint: got"},
		{"other command", withConfig(func(c *v1.Config) { c.Cmd = []string{"serve", "--dev"} }), "cmd: got"},
		{"missing port", withConfig(func(c *v1.Config) { delete(c.ExposedPorts, "9090/tcp") }), "exposed ports"},
		{"missing label", withConfig(func(c *v1.Config) { delete(c.Labels, "org.opencontainers.image.title") }),
			"org.opencontainers.image.title"},
		{"binary replaced by a script",
			withFile(tar.Header{Name: "authzd", Mode: 0o755}, "#!/bin/sh\n"), "not an ELF executable"},
		{"binary not executable",
			withFile(tar.Header{Name: "authzd", Mode: 0o644}, string(in.binaryData)), "want -rwxr-xr-x"},
		{"no nonroot user",
			withFile(tar.Header{Name: "etc/passwd", Mode: 0o644}, "root:x:0:0::/:/sbin/nologin\n"), "/etc/passwd"},
		{"empty CA bundle",
			withFile(tar.Header{Name: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644}, ""), "got no certificate"},
		{"policy test shipped",
			withFile(tar.Header{Name: "etc/authzd/policies/x_test.rego", Mode: 0o644}, "package x_test\n"),
			"a policy test is shipped"},
		{"world-writable policy",
			withFile(tar.Header{Name: "etc/authzd/policies/superset/authz.rego", Mode: 0o666}, "package x\n"),
			"no write permission"},
		{"policy owned by the service user",
			withFile(tar.Header{Name: "etc/authzd/policies/superset/authz.rego", Mode: 0o644, Uid: 65532}, "package x\n"),
			"got owner 65532"},
		{"setuid file", withFile(tar.Header{Name: "bin/su", Mode: 0o4755}, "x"), "setuid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ociimage.Check(inspect(t, tc.image(t)), "amd64")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tempRoot != "" {
		os.RemoveAll(tempRoot)
	}
	os.Exit(code)
}
