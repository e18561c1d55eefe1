// Package ociimage builds authzd's container image without a container engine
// or a registry, and checks a built image.
//
// The image is one layer on top of nothing (go-containerregistry's
// empty.Image): the static authzd binary, a CA bundle for HTTPS discovery,
// /etc/passwd and /etc/group with the non-root user 65532, and the shipped
// policies. Every input is read from a path given by the caller, and every
// timestamp is fixed, so the same inputs give the same image digest and the
// same archive bytes.
//
// WriteArchive writes the image as an OCI image layout in a tar archive that
// also carries Docker's manifest.json, so that `docker load`, `podman load`,
// `skopeo copy oci-archive:...` and `crane push` all accept it.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/authzd/authzd/deploy/internal/policyfiles"
)

// The fixed facts of the image, which Check verifies.
const (
	// BinaryPath is where the authzd binary lives in the image.
	BinaryPath = "/authzd"
	// CABundlePath is where the CA bundle lives, the first place Go's
	// crypto/x509 looks on Linux.
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
	// PoliciesPath is the directory of the shipped policies.
	PoliciesPath = "/etc/authzd/policies"
	// ConfigPath is the configuration file that the default command reads;
	// the image does not hold one, the deployment mounts it.
	ConfigPath = "/etc/authzd/config.yaml"
	// UID and GID are the non-root user and group the image runs as.
	UID = 65532
	GID = 65532
	// User is the image's user, numeric so that Kubernetes can verify
	// runAsNonRoot without reading /etc/passwd.
	User = "65532:65532"
)

// Entrypoint and Cmd are the image's default process: `authzd serve --config
// /etc/authzd/config.yaml`.
var (
	Entrypoint = []string{BinaryPath}
	Cmd        = []string{"serve", "--config", ConfigPath}
	// Ports are the exposed ports: 9090 for gRPC, 8080 for HTTP.
	Ports = []string{"8080/tcp", "9090/tcp"}
)

// Options are the inputs of Build.
type Options struct {
	// Binary is the path of the authzd binary, built with CGO_ENABLED=0 so
	// that it needs no C library. Required.
	Binary string
	// CABundle is the path of a PEM bundle of trusted CA certificates, for
	// example the build machine's /etc/ssl/certs/ca-certificates.crt.
	// Required.
	CABundle string
	// Policies is the policy directory to ship at /etc/authzd/policies; only
	// served files are copied (see policyfiles.Served). Required.
	Policies string
	// Arch is the GOARCH of the binary and the image; default "amd64".
	Arch string
	// Created is the time written into the image config and every file;
	// the zero value means the Unix epoch.
	Created time.Time
	// Version, Revision and Source fill the org.opencontainers.image.*
	// labels of the same names; empty ones are left out.
	Version, Revision, Source string
}

// entry is one file or directory of the layer.
type entry struct {
	name     string // relative, slash-separated, no leading slash
	mode     int64  // permission bits, with sticky bit where needed
	uid, gid int
	dir      bool
	data     []byte
}

// Build returns the authzd image for opts. It fails when an input is missing
// or when the binary is not a static ELF executable for opts.Arch.
func Build(opts Options) (v1.Image, error) {
	if opts.Arch == "" {
		opts.Arch = "amd64"
	}
	var missing []string
	for _, f := range []struct{ flag, v string }{
		{"binary", opts.Binary}, {"CA bundle", opts.CABundle}, {"policies", opts.Policies},
	} {
		if f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("build image: missing %s", strings.Join(missing, ", "))
	}
	created := opts.Created.UTC().Truncate(time.Second)
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}

	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	if err := checkBinary(bin, opts.Arch); err != nil {
		return nil, fmt.Errorf("build image: binary %q: %w", opts.Binary, err)
	}
	ca, err := os.ReadFile(opts.CABundle)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	if countCerts(ca) == 0 {
		return nil, fmt.Errorf("build image: CA bundle %q holds no certificate", opts.CABundle)
	}
	policies, err := policyfiles.Collect(opts.Policies)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	if !hasRego(policies) {
		return nil, fmt.Errorf("build image: policies %q hold no .rego file", opts.Policies)
	}

	entries := []entry{
		{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, data: bin},
		{name: strings.TrimPrefix(CABundlePath, "/"), mode: 0o644, data: ca},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "home/nonroot", mode: 0o700, uid: UID, gid: GID, dir: true},
		{name: "tmp", mode: 0o1777, dir: true},
	}
	for _, p := range policies {
		entries = append(entries, entry{
			name: strings.TrimPrefix(PoliciesPath, "/") + "/" + p.Path, mode: 0o644, data: p.Data,
		})
	}
	layerTar, err := layerArchive(entries, created)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	gz, err := gzipBytes(layerTar)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("build image: layer: %w", err)
	}

	labels := map[string]string{
		"org.opencontainers.image.title":       "authzd",
		"org.opencontainers.image.description": "Authorization decisions for Apache Superset from OIDC ID tokens and Rego policies",
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
	}
	for k, v := range map[string]string{
		"version": opts.Version, "revision": opts.Revision, "source": opts.Source,
	} {
		if v != "" {
			labels["org.opencontainers.image."+k] = v
		}
	}
	exposed := map[string]struct{}{}
	for _, p := range Ports {
		exposed[p] = struct{}{}
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: opts.Arch,
		OS:           "linux",
		Created:      v1.Time{Time: created},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint:   Entrypoint,
			Cmd:          Cmd,
			User:         User,
			WorkingDir:   "/",
			Env:          []string{"PATH=/", "SSL_CERT_FILE=" + CABundlePath},
			ExposedPorts: exposed,
			Labels:       labels,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build image: config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "authzd deploy/image build",
			Comment:   "authzd binary, CA bundle, passwd and group, policies",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build image: append layer: %w", err)
	}
	return img, nil
}

const passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
	"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"

const group = "root:x:0:\nnonroot:x:65532:\n"

func hasRego(files []policyfiles.File) bool {
	for _, f := range files {
		if strings.HasSuffix(f.Path, ".rego") {
			return true
		}
	}
	return false
}

// layerArchive returns the tar of entries and of every parent directory they
// need, sorted by name, owned by root unless an entry says otherwise, with
// every time set to created.
func layerArchive(entries []entry, created time.Time) ([]byte, error) {
	byName := map[string]entry{}
	for _, e := range entries {
		if _, dup := byName[e.name]; dup {
			return nil, fmt.Errorf("layer: %q added twice", e.name)
		}
		byName[e.name] = e
		for d := path.Dir(e.name); d != "."; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = entry{name: d, mode: 0o755, dir: true}
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := byName[n]
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: created,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %q: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer: %q: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// gzipBytes compresses b with a header that holds no name and no time, so
// that the result depends on b alone.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
