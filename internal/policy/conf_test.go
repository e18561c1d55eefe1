package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConf(t *testing.T) {
	tests := []struct {
		name    string
		conf    Conf
		want    Conf
		wantErr string
	}{
		{
			name: "defaults",
			want: Conf{Dir: "policies", Package: "superset.authz", Dialect: "postgresql"},
		},
		{
			name: "kept",
			conf: Conf{Dir: "/etc/authzd/policies", Package: "acme.decide", Dialect: "mysql"},
			want: Conf{Dir: "/etc/authzd/policies", Package: "acme.decide", Dialect: "mysql"},
		},
		{
			name:    "bad package",
			conf:    Conf{Package: "acme.2fa"},
			want:    Conf{Dir: "policies", Package: "acme.2fa", Dialect: "postgresql"},
			wantErr: `policy.package: package "acme.2fa" is not a dotted name of identifiers`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.conf
			c.SetDefaults()
			if diff := cmp.Diff(tt.want, c); diff != "" {
				t.Errorf("SetDefaults mismatch (-want +got):\n%s", diff)
			}
			err := c.Validate()
			if tt.wantErr == "" && err != nil {
				t.Errorf("Validate: got %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate: got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
