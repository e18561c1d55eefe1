package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
	"github.com/authzd/authzd/internal/audit"
	"github.com/authzd/authzd/internal/decision"
	"github.com/authzd/authzd/internal/policy"
)

// Decider makes decisions; *decision.Service is one.
type Decider interface {
	Decide(ctx context.Context, req decision.Request) (*decision.Decision, error)
}

// PolicyInfo describes the serving policy; *policy.Engine is one.
type PolicyInfo interface {
	Info() policy.Info
}

// decisionService implements authz.v1.DecisionService. Its handlers only
// translate between the wire and the decision package; the interceptors
// assign the decision id, log, count and map errors.
type decisionService struct {
	authzv1.UnimplementedDecisionServiceServer
	decider Decider
	policy  PolicyInfo
}

func (s *decisionService) Decide(ctx context.Context, req *authzv1.DecideRequest) (*authzv1.DecideResponse, error) {
	call := callFrom(ctx)
	dreq := decision.Request{
		ID:      call.decisionID,
		IDToken: req.GetIdToken(),
		Explain: req.GetExplain(),
	}
	if req.GetContext() != nil {
		dreq.Context = req.GetContext().AsMap()
	}
	d, err := s.decider.Decide(ctx, dreq)
	if err != nil {
		return nil, err
	}
	call.decision = d
	return toResponse(d), nil
}

func (s *decisionService) GetPolicy(context.Context, *authzv1.GetPolicyRequest) (*authzv1.GetPolicyResponse, error) {
	info := s.policy.Info()
	resp := &authzv1.GetPolicyResponse{
		Revision: info.Revision,
		LoadedAt: timestamppb.New(info.LoadedAt),
		Source:   info.Source,
		Packages: nonNil(info.Packages),
		Files:    nonNil(info.Files),

		BundleRevision: info.BundleRevision,
		BundleError:    info.BundleError,
	}
	if info.LastError != "" {
		resp.LastRefused = &authzv1.RefusedChange{
			Error:     info.LastError,
			RefusedAt: timestamppb.New(info.LastErrorAt),
		}
	}
	return resp, nil
}

func toResponse(d *decision.Decision) *authzv1.DecideResponse {
	id := d.Identity
	resp := &authzv1.DecideResponse{
		DecisionId: d.ID,
		Allowed:    d.Allowed,
		Subject: &authzv1.Subject{
			Issuer:        id.Issuer,
			Subject:       id.Subject,
			Username:      id.Username,
			Email:         id.Email,
			FirstName:     id.FirstName,
			LastName:      id.LastName,
			Groups:        nonNil(id.Groups),
			GroupsOverage: id.GroupsOverage,
		},
		Roles:          nonNil(d.Roles),
		Reasons:        nonNil(d.Reasons),
		PolicyRevision: d.Revision,
		RlsFilters:     make([]*authzv1.RlsFilter, 0, len(d.Filters)),
	}
	if !d.ExpiresAt.IsZero() {
		resp.ExpiresAt = timestamppb.New(d.ExpiresAt.UTC().Truncate(time.Second))
	}
	for _, f := range d.Filters {
		resp.RlsFilters = append(resp.RlsFilters, &authzv1.RlsFilter{
			Name:       f.Name,
			Tables:     nonNil(f.Tables),
			GroupKey:   f.GroupKey,
			FilterType: f.FilterType,
			Clause:     f.Clause,
			Dialect:    string(f.Dialect),
		})
	}
	if d.Matches != nil {
		// What the policy saw: only the declared parts of the input when
		// the policy declares input_paths.
		groups, claims := id.Groups, id.Claims
		if d.Seen != nil {
			groups, claims = d.Seen.Groups, d.Seen.Claims
		}
		ex := &authzv1.Explanation{Groups: nonNil(groups)}
		for _, m := range d.Matches {
			if s, err := structpb.NewStruct(jsonSafe(m)); err == nil {
				ex.Matches = append(ex.Matches, s)
			}
		}
		if s, err := structpb.NewStruct(jsonSafe(claims)); err == nil {
			ex.Claims = s
		}
		resp.Explanation = ex
	}
	return resp
}

// auditRecord turns a finished call into its decision log record.
func auditRecord(c *call, code string, reason string, latency time.Duration) audit.Record {
	r := audit.Record{
		DecisionID:  c.decisionID,
		Method:      c.method,
		Code:        code,
		ErrorReason: reason,
		Latency:     latency,
	}
	if d := c.decision; d != nil {
		r.Issuer = d.Identity.Issuer
		r.Subject = d.Identity.Subject
		r.Username = d.Identity.Username
		r.Allowed = d.Allowed
		r.Roles = d.Roles
		r.Reasons = d.Reasons
		r.Revision = d.Revision
		r.Claims = d.Identity.Claims
		for _, f := range d.Filters {
			r.Filters = append(r.Filters, audit.FilterRecord{Name: f.Name, Tables: f.Tables})
		}
	}
	return r
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
