package ociimage

import (
	"archive/tar"
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

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// File is one file or directory of an image's filesystem.
type File struct {
	// Mode holds the type and permission bits, sticky and setuid included.
	Mode     fs.FileMode
	UID, GID int
	// Data is the content of a regular file.
	Data []byte
}

// Inspection is an image read back from an archive: its digest, its config
// and its flattened filesystem by absolute path.
type Inspection struct {
	Digest v1.Hash
	Config *v1.ConfigFile
	Files  map[string]File
}

// ReadArchive reads the archive at path that WriteArchive wrote. It opens the
// image both as an OCI layout and through Docker's manifest.json, fails
// unless both name the same image, verifies every digest, and returns the
// image's config and files.
func ReadArchive(archive string) (*Inspection, error) {
	dir, err := os.MkdirTemp("", "authzd-image-check-")
	if err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := untar(archive, dir); err != nil {
		return nil, fmt.Errorf("read archive %q: %w", archive, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read archive %q: OCI layout: %w", archive, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read archive %q: index.json: %w", archive, err)
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("read archive %q: index.json lists %d manifests, want 1", archive, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("read archive %q: %w", archive, err)
	}
	if err := validate.Image(img); err != nil {
		return nil, fmt.Errorf("read archive %q: OCI image: %w", archive, err)
	}
	docker, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return nil, fmt.Errorf("read archive %q: manifest.json: %w", archive, err)
	}
	if err := validate.Image(docker); err != nil {
		return nil, fmt.Errorf("read archive %q: Docker image: %w", archive, err)
	}
	ociConfig, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("read archive %q: %w", archive, err)
	}
	dockerConfig, err := docker.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("read archive %q: %w", archive, err)
	}
	if ociConfig != dockerConfig {
		return nil, fmt.Errorf("read archive %q: index.json names config %s, manifest.json %s",
			archive, ociConfig, dockerConfig)
	}
	return Inspect(img)
}

// Inspect returns img's digest, config and flattened filesystem.
func Inspect(img v1.Image) (*Inspection, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("inspect image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("inspect image: %w", err)
	}
	files := map[string]File{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("inspect image: %w", err)
		}
		p := path.Clean("/" + h.Name)
		f := File{Mode: h.FileInfo().Mode(), UID: h.Uid, GID: h.Gid}
		if h.Typeflag == tar.TypeReg {
			if f.Data, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("inspect image: %q: %w", p, err)
			}
		}
		files[p] = f
	}
	return &Inspection{Digest: digest, Config: cf, Files: files}, nil
}

// Check returns every way in which in differs from an authzd image for arch
// ("" means "amd64"), joined, or nil.
func Check(in *Inspection, arch string) error {
	if arch == "" {
		arch = "amd64"
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	c := in.Config
	if c.OS != "linux" || c.Architecture != arch {
		fail("platform: got %s/%s, want linux/%s", c.OS, c.Architecture, arch)
	}
	if !slices.Equal(c.Config.Entrypoint, Entrypoint) {
		fail("entrypoint: got %q, want %q", c.Config.Entrypoint, Entrypoint)
	}
	if !slices.Equal(c.Config.Cmd, Cmd) {
		fail("cmd: got %q, want %q", c.Config.Cmd, Cmd)
	}
	if c.Config.User != User {
		fail("user: got %q, want %q", c.Config.User, User)
	}
	var ports []string
	for p := range c.Config.ExposedPorts {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	if !slices.Equal(ports, Ports) {
		fail("exposed ports: got %q, want %q", ports, Ports)
	}
	for _, l := range []string{"title", "created"} {
		if c.Config.Labels["org.opencontainers.image."+l] == "" {
			fail("labels: got no org.opencontainers.image.%s", l)
		}
	}

	bin, ok := in.Files[BinaryPath]
	switch {
	case !ok || !bin.Mode.IsRegular():
		fail("%s: got no regular file", BinaryPath)
	case bin.Mode.Perm() != 0o755:
		fail("%s: got mode %s, want -rwxr-xr-x", BinaryPath, bin.Mode)
	default:
		if err := checkBinary(bin.Data, arch); err != nil {
			fail("%s: %w", BinaryPath, err)
		}
	}
	for p, want := range map[string]string{
		"/etc/passwd": fmt.Sprintf("nonroot:x:%d:%d:", UID, GID),
		"/etc/group":  fmt.Sprintf("nonroot:x:%d:", GID),
	} {
		f, ok := in.Files[p]
		if !ok || !hasLinePrefix(string(f.Data), want) {
			fail("%s: got no line starting %q", p, want)
		}
	}
	if ca, ok := in.Files[CABundlePath]; !ok || countCerts(ca.Data) == 0 {
		fail("%s: got no certificate", CABundlePath)
	}
	rego := 0
	for p, f := range in.Files {
		if strings.HasPrefix(p, PoliciesPath+"/") && f.Mode.IsRegular() {
			switch {
			case strings.HasSuffix(p, "_test.rego"):
				fail("%s: a policy test is shipped", p)
			case strings.HasSuffix(p, ".rego"):
				rego++
			}
		}
	}
	if rego == 0 {
		fail("%s: got no .rego file", PoliciesPath)
	}

	home := "/home/nonroot"
	for _, p := range slices.Sorted(maps.Keys(in.Files)) {
		f := in.Files[p]
		if f.Mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			fail("%s: got mode %s, want no setuid or setgid bit", p, f.Mode)
		}
		if p == "/tmp" {
			if f.Mode&fs.ModeSticky == 0 {
				fail("%s: got mode %s, want the sticky bit", p, f.Mode)
			}
			continue
		}
		if f.Mode.Perm()&0o022 != 0 {
			fail("%s: got mode %s, want no write permission for group or others", p, f.Mode)
		}
		wantUID := 0
		if p == home {
			wantUID = UID
		}
		if f.UID != wantUID {
			fail("%s: got owner %d, want %d", p, f.UID, wantUID)
		}
	}
	return errors.Join(errs...)
}

func hasLinePrefix(s, prefix string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// untar extracts the regular files and directories of the archive at src
// into dir, refusing any path that would leave dir.
func untar(src, dir string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unexpected type %q", h.Name, h.Typeflag)
		}
	}
}
