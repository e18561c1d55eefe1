// Package policy evaluates the Rego policies that decide who may use
// Superset, with which roles and row-level security filters, using the Open
// Policy Agent engine embedded as a library.
//
// A policy directory is read with the semantics of an OPA bundle; each
// revision is compiled and its query prepared once, then evaluated per
// decision. The directory is watched and reloaded; a change that does not
// compile or fails a smoke evaluation is refused and the last good revision
// keeps serving.
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
	Allow bool
	// Roles are Superset role names, sorted.
	Roles []string
	// Filters are the policy's row-level security filters, sorted by name.
	Filters []rls.Filter
	// Reasons are human-readable explanations, sorted.
	Reasons []string
	// Matches are the data entries that matched, when the policy exposes
	// them (rule "matches"); only filled when explanation was asked for.
	Matches []map[string]any
	// Revision is the policy revision that produced this result.
	Revision string
}

// Info describes the serving policy revision.
type Info struct {
	Revision string
	LoadedAt time.Time
	// Source says where the policy came from: a directory path or
	// "embedded".
	Source   string
	Packages []string
	Files    []string
	// LastError is the last refused change, if any.
	LastError   string
	LastErrorAt time.Time
}
