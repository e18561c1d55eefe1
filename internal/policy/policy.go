// Package policy evaluates the Rego policies that decide who may use
// Superset, with which roles and row-level security filters, using the Open
// Policy Agent engine embedded as a library.
//
// A policy directory is read with the semantics of an OPA bundle; each
// revision is compiled and its query prepared once, then evaluated per
// decision. The directory is watched and reloaded; a change that does not
// compile or fails a smoke evaluation is refused and the last good revision
// keeps serving. Instead of a directory, the policy may come from an OPA
// bundle server (BundleConf), polled and verified with OPA's own download
// and bundle packages, with the same checks and the same keep-last-good
// behaviour. A policy that declares the parts of the input it reads (rule
// input_paths) sees only those, and its results are shared by everyone
// whose parts are equal.
package policy

import (
	"time"

	"github.com/authzd/authzd/internal/rls"
)

// Input is the document a policy sees as input. Its JSON form is the
// contract of DESIGN.md.
type Input struct {
	Issuer        string         `json:"issuer"`
	Claims        map[string]any `json:"claims"`
	Groups        []string       `json:"groups"`
	GroupsOverage bool           `json:"groups_overage"`
	Username      string         `json:"username"`
	Context       map[string]any `json:"context"`
}

// Result is what a policy decided for one input.
type Result struct {
	// Allow says whether the person may use Superset at all.
	Allow bool `json:"allow"`
	// Roles are Superset role names, sorted.
	Roles []string `json:"roles"`
	// Filters are the policy's row-level security filters, sorted by name.
	Filters []rls.Filter `json:"filters"`
	// Reasons are human-readable explanations, sorted.
	Reasons []string `json:"reasons"`
	// Matches are the data entries that matched, when the policy exposes
	// them (rule "matches"); only filled when explanation was asked for.
	Matches []map[string]any `json:"matches,omitempty"`
	// Seen is the input as the policy saw it: only the declared parts
	// when the policy declares input_paths. Only filled when explanation
	// was asked for.
	Seen *Input `json:"-"`
	// Revision is the policy revision that produced this result.
	Revision string `json:"revision,omitempty"`
}

// Info describes the serving policy revision.
type Info struct {
	Revision string
	LoadedAt time.Time
	// Source says where the policy came from: a directory path,
	// "embedded", or a bundle URL without its query.
	Source string
	// BundleRevision is the revision in the serving bundle's manifest
	// (opa build --revision), empty for a directory or when not set.
	BundleRevision string
	Packages       []string
	Files          []string
	// BundleError is the last failure to get an answer from the bundle
	// server (unreachable, an HTTP error status), cleared by the next
	// answer. It never changes the serving revision.
	BundleError string
	// LastError is the last refused change, if any.
	LastError   string
	LastErrorAt time.Time
}

// DefaultPackage is the package that decides when Options.Package is empty.
const DefaultPackage = "superset.authz"
