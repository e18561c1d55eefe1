// Package policies embeds the shipped Rego policies and their data, so that
// the binary can serve them when no policy directory is configured.
package policies

import "embed"

// FS holds the shipped policy tree: the .rego files (tests included, which
// the engine skips) and the data files, rooted at this directory.
//
//go:embed *
var FS embed.FS
