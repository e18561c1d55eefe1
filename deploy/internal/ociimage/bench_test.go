package ociimage_test

import (
	"io"
	"testing"

	"github.com/authzd/authzd/deploy/internal/ociimage"
)

// BenchmarkBuildAndWrite measures building the image from the fake inputs and
// writing its archive, which is what `go run ./image build` does after
// compiling.
func BenchmarkBuildAndWrite(b *testing.B) {
	in, err := fakeInputs()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		img, err := ociimage.Build(options(in))
		if err != nil {
			b.Fatal(err)
		}
		if err := ociimage.WriteArchive(io.Discard, img, "authzd:bench"); err != nil {
			b.Fatal(err)
		}
	}
}
