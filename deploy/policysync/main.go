// Command policysync writes the policies ConfigMap of the Kubernetes manifests
// from a policy directory, and the Deployment's volume items that mount every
// file back at its relative path:
//
//	cd deploy && go run ./policysync [-policies ../policies] [-dir kubernetes]
//
// The manifest test fails when the committed ConfigMap and the shipped
// policies differ, so run this after every policy change.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/authzd/authzd/deploy/internal/policyfiles"
)

func main() {
	policies := flag.String("policies", "../policies", "the policy directory to ship")
	dir := flag.String("dir", "kubernetes", "the directory of the Kubernetes manifests")
	flag.Parse()
	if err := run(*policies, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "policysync:", err)
		os.Exit(1)
	}
}

func run(policies, dir string) error {
	files, err := policyfiles.Collect(policies)
	if err != nil {
		return err
	}
	cm, err := policyfiles.RenderConfigMap("authzd-policies", files)
	if err != nil {
		return err
	}
	deployment := filepath.Join(dir, "deployment.yaml")
	manifest, err := os.ReadFile(deployment)
	if err != nil {
		return err
	}
	manifest, err = policyfiles.SpliceItems(manifest, files)
	if err != nil {
		return fmt.Errorf("update %q: %w", deployment, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policies-configmap.yaml"), cm, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(deployment, manifest, 0o644); err != nil {
		return err
	}
	fmt.Printf("policysync: %d policy files from %q into %q\n", len(files), policies, dir)
	return nil
}
