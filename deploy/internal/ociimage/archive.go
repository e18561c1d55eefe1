package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WriteArchive writes img to w as a tar archive of an OCI image layout
// (oci-layout, index.json, blobs/sha256/...) that also holds Docker's
// manifest.json. ref, such as "authzd:0.1.0", names the image in both; it
// may be empty. Entries are sorted and dated at the image's creation time,
// so the archive's bytes depend on the image alone.
func WriteArchive(w io.Writer, img v1.Image, ref string) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	mt := cf.Created.Time.UTC()

	files := map[string][]byte{}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	configName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	files[blob(configName)] = rawConfig

	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("write archive: %w", err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("write archive: %w", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("write archive: layer %s: %w", d, err)
		}
		files[blob(d)] = b
		layerPaths = append(layerPaths, blob(d))
	}

	rawManifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	files[blob(digest)] = rawManifest

	desc := v1.Descriptor{
		MediaType: mediaType,
		Size:      int64(len(rawManifest)),
		Digest:    digest,
		Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
	}
	var repoTags []string
	if ref != "" {
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("write archive: reference %q: %w", ref, err)
		}
		desc.Annotations = map[string]string{
			// containerd and Docker read the full name, skopeo and the
			// OCI spec the tag.
			"io.containerd.image.name":          tag.Name(),
			"org.opencontainers.image.ref.name": tag.TagStr(),
		}
		repoTags = []string{ref}
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests:     []v1.Descriptor{desc},
	})
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	files["index.json"] = index
	files["oci-layout"] = []byte(`{"imageLayoutVersion":"1.0.0"}`)
	dockerManifest, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blob(configName), RepoTags: repoTags, Layers: layerPaths}})
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	files["manifest.json"] = dockerManifest

	if err := writeTar(w, files, mt); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

// writeTar writes files, and the directories above them, in sorted order.
func writeTar(w io.Writer, files map[string][]byte, mt time.Time) error {
	names := map[string]bool{}
	for n := range files {
		names[n] = false
		for i := strings.Index(n, "/"); i >= 0; i = nextSlash(n, i) {
			names[n[:i+1]] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	tw := tar.NewWriter(w)
	for _, n := range sorted {
		h := &tar.Header{Name: n, ModTime: mt, Mode: 0o644, Typeflag: tar.TypeReg}
		if names[n] {
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		} else {
			h.Size = int64(len(files[n]))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, bytes.NewReader(files[n])); err != nil {
			return err
		}
	}
	return tw.Close()
}

func nextSlash(s string, i int) int {
	j := strings.Index(s[i+1:], "/")
	if j < 0 {
		return -1
	}
	return i + 1 + j
}
