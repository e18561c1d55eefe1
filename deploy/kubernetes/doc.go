// Package kubernetes holds authzd's Kubernetes manifests (a kustomization)
// and the test that validates them offline: every file decodes strictly into
// the Kubernetes API types, the rendered kustomization passes the restricted
// Pod Security Standard, and the properties that a safe deployment depends on
// (probes, non-root, read-only root filesystem, resources, ports, selectors,
// the NetworkPolicy, PDB and HPA targets) hold.
package kubernetes
