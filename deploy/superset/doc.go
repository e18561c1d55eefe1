// Package superset holds the Apache Superset Helm chart values that install
// authzd's security manager, and the test that keeps them consistent with
// the manager package in integrations/superset and with the authzd Service.
package superset
