package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/authzd/authzd/deploy/internal/policyfiles"
)

const (
	namespace       = "authzd"
	supersetNS      = "superset"
	nonRootID       = int64(65532)
	grpcPort        = int32(9090)
	httpPort        = int32(8080)
	configPath      = "/etc/authzd/config.yaml"
	policiesPath    = "/etc/authzd/policies"
	shippedPolicies = "../../policies"
)

// object is one decoded YAML document and where it came from.
type object struct {
	source string
	obj    any
}

// newObject returns an empty value of the API type for apiVersion and kind,
// or an error for a kind these manifests are not expected to hold.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	}
	return nil, fmt.Errorf("unexpected kind %q of apiVersion %q", kind, apiVersion)
}

// decodeStrict decodes every YAML document of data into its API type,
// refusing unknown fields, duplicate fields and wrong types.
func decodeStrict(source string, data []byte) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: read document %d: %w", source, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		obj, err := newObject(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", source, i, tm.Kind, err)
		}
		if obj.(metav1.Object).GetName() == "" {
			return nil, fmt.Errorf("%s: document %d (%s): metadata.name is empty", source, i, tm.Kind)
		}
		objs = append(objs, object{source: source, obj: obj})
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

// manifestFiles returns the resource files of the kustomization: every YAML
// file but the kustomization itself and the authzd config it turns into a
// ConfigMap.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if f != "kustomization.yaml" && f != "config.yaml" {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatal("no manifests found")
	}
	return out
}

func TestFilesDecodeStrictly(t *testing.T) {
	for _, f := range manifestFiles(t) {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeStrict(f, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Errorf("got no objects in %q, want at least one", f)
			}
		})
	}
}

func TestKustomizationListsEveryFile(t *testing.T) {
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kusttypes.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	got := slices.Sorted(slices.Values(k.Resources))
	want := manifestFiles(t)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kustomization resources differ from the manifest files (-want +got):\n%s", diff)
	}
}

func TestStrictDecodingRefusesMistakes(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{
			name: "unknown field",
			doc:  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replica: 2}\n",
			want: `unknown field "replica"`,
		},
		{
			name: "duplicate field",
			doc:  "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  type: ClusterIP\n  type: NodePort\n",
			want: "already set",
		},
		{
			name: "wrong type",
			doc:  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: two}\n",
			want: "cannot unmarshal",
		},
		{
			name: "unknown kind",
			doc:  "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n",
			want: `unexpected kind "Pod"`,
		},
		{
			name: "missing name",
			doc:  "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
			want: "metadata.name is empty",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeStrict("test.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// fleet is the rendered kustomization, by kind.
type fleet struct {
	namespace  *corev1.Namespace
	account    *corev1.ServiceAccount
	deployment *appsv1.Deployment
	configMaps map[string]*corev1.ConfigMap
	services   map[string]*corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	netpol     *networkingv1.NetworkPolicy
	all        []metav1.Object
}

var rendered = sync.OnceValues(func() (*fleet, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), ".")
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	objs, err := decodeStrict("kustomize build", out)
	if err != nil {
		return nil, err
	}
	f := &fleet{configMaps: map[string]*corev1.ConfigMap{}, services: map[string]*corev1.Service{}}
	once := func(set bool, kind string) error {
		if set {
			return fmt.Errorf("kustomize build: more than one %s", kind)
		}
		return nil
	}
	for _, o := range objs {
		f.all = append(f.all, o.obj.(metav1.Object))
		var err error
		switch v := o.obj.(type) {
		case *corev1.Namespace:
			err = once(f.namespace != nil, "Namespace")
			f.namespace = v
		case *corev1.ServiceAccount:
			err = once(f.account != nil, "ServiceAccount")
			f.account = v
		case *appsv1.Deployment:
			err = once(f.deployment != nil, "Deployment")
			f.deployment = v
		case *corev1.ConfigMap:
			f.configMaps[v.Name] = v
		case *corev1.Service:
			f.services[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			err = once(f.pdb != nil, "PodDisruptionBudget")
			f.pdb = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			err = once(f.hpa != nil, "HorizontalPodAutoscaler")
			f.hpa = v
		case *networkingv1.NetworkPolicy:
			err = once(f.netpol != nil, "NetworkPolicy")
			f.netpol = v
		}
		if err != nil {
			return nil, err
		}
	}
	switch {
	case f.namespace == nil, f.account == nil, f.deployment == nil, f.pdb == nil, f.hpa == nil,
		f.netpol == nil, len(f.services) == 0, len(f.configMaps) < 2:
		return nil, fmt.Errorf("kustomize build: a kind is missing from %d objects", len(objs))
	}
	return f, nil
})

func render(t *testing.T) *fleet {
	t.Helper()
	f, err := rendered()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// podLabels returns the labels of the Deployment's pod template.
func (f *fleet) podLabels() labels.Set {
	return labels.Set(f.deployment.Spec.Template.Labels)
}

func (f *fleet) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := f.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("got %d containers, want 1", len(cs))
	}
	return &cs[0]
}

// containerPort resolves a port given by name or number to a container port.
func (f *fleet) containerPort(t *testing.T, p intstr.IntOrString) int32 {
	t.Helper()
	for _, cp := range f.container(t).Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) ||
			(p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port %q is not a container port", p.String())
	return 0
}

func selects(t *testing.T, what string, sel *metav1.LabelSelector, pod labels.Set) {
	t.Helper()
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		t.Errorf("%s: got an empty selector, want one that selects authzd pods only", what)
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !s.Matches(pod) {
		t.Errorf("%s: selector %q does not match pod labels %v", what, s, pod)
	}
}

func TestRenderedNamespace(t *testing.T) {
	f := render(t)
	for _, o := range f.all {
		want := namespace
		if _, ok := o.(*corev1.Namespace); ok {
			if o.GetName() != namespace {
				t.Errorf("got namespace %q, want %q", o.GetName(), namespace)
			}
			continue
		}
		if got := o.GetNamespace(); got != want {
			t.Errorf("%T %q: got namespace %q, want %q", o, o.GetName(), got, want)
		}
	}
	if got := f.namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("got pod-security enforce label %q, want %q", got, "restricted")
	}
}

func TestDeployment(t *testing.T) {
	f := render(t)
	d := f.deployment
	pod := d.Spec.Template.Spec
	c := f.container(t)
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"at least two replicas", func(t *testing.T) {
			if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
				t.Errorf("got replicas %v, want at least 2", d.Spec.Replicas)
			}
		}},
		{"selector matches pod labels", func(t *testing.T) {
			selects(t, "deployment", d.Spec.Selector, f.podLabels())
		}},
		{"rollout keeps capacity", func(t *testing.T) {
			ru := d.Spec.Strategy.RollingUpdate
			if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
				t.Errorf("got rolling update %+v, want maxUnavailable 0", ru)
			}
		}},
		{"pod runs as non-root", func(t *testing.T) {
			sc := pod.SecurityContext
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Fatalf("got pod security context %+v, want runAsNonRoot", sc)
			}
			if sc.RunAsUser == nil || *sc.RunAsUser != nonRootID {
				t.Errorf("got runAsUser %v, want %d", sc.RunAsUser, nonRootID)
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("got seccomp profile %+v, want RuntimeDefault", sc.SeccompProfile)
			}
		}},
		{"no service account token", func(t *testing.T) {
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("got a mounted service account token, want automountServiceAccountToken: false")
			}
		}},
		{"container is locked down", func(t *testing.T) {
			sc := c.SecurityContext
			if sc == nil {
				t.Fatal("got no container security context")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Error("got a writable root filesystem, want readOnlyRootFilesystem")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("got privilege escalation allowed, want allowPrivilegeEscalation: false")
			}
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != nonRootID {
				t.Errorf("got runAsNonRoot %v runAsUser %v, want true and %d", sc.RunAsNonRoot, sc.RunAsUser, nonRootID)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
				len(sc.Capabilities.Add) != 0 {
				t.Errorf("got capabilities %+v, want drop [ALL] and no add", sc.Capabilities)
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("got seccomp profile %+v, want RuntimeDefault", sc.SeccompProfile)
			}
		}},
		{"resources requested and limited", func(t *testing.T) {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, ok := c.Resources.Requests[r]
				if !ok || req.IsZero() {
					t.Errorf("got no %s request, want one", r)
				}
				lim, ok := c.Resources.Limits[r]
				if !ok || lim.IsZero() {
					t.Errorf("got no %s limit, want one", r)
				} else if lim.Cmp(req) < 0 {
					t.Errorf("got %s limit %s below request %s", r, lim.String(), req.String())
				}
			}
		}},
		{"args serve the mounted config", func(t *testing.T) {
			want := []string{"serve", "--config", configPath}
			if diff := cmp.Diff(want, c.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if len(c.Command) != 0 {
				t.Errorf("got command %q, want the image's entrypoint", c.Command)
			}
		}},
		{"image is pinned", func(t *testing.T) {
			ref := c.Image
			i := strings.LastIndex(ref, ":")
			if i < 0 || strings.Contains(ref[i:], "/") || ref[i+1:] == "latest" {
				if !strings.Contains(ref, "@sha256:") {
					t.Errorf("got image %q, want a tag other than latest or a digest", ref)
				}
			}
		}},
		{"ports are named", func(t *testing.T) {
			got := map[string]int32{}
			for _, p := range c.Ports {
				got[p.Name] = p.ContainerPort
			}
			want := map[string]int32{"grpc": grpcPort, "http": httpPort}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("container ports (-want +got):\n%s", diff)
			}
		}},
		{"readiness probe on /readyz", func(t *testing.T) {
			checkProbe(t, f, "readiness", c.ReadinessProbe, "/readyz")
		}},
		{"liveness probe on /healthz", func(t *testing.T) {
			checkProbe(t, f, "liveness", c.LivenessProbe, "/healthz")
		}},
		{"config and policies mounted read-only from ConfigMaps", func(t *testing.T) {
			want := map[string]string{configPath: "config.yaml", policiesPath: ""}
			for _, m := range c.VolumeMounts {
				subPath, ok := want[m.MountPath]
				if !ok {
					continue
				}
				delete(want, m.MountPath)
				if !m.ReadOnly {
					t.Errorf("mount %q: got writable, want readOnly", m.MountPath)
				}
				if m.SubPath != subPath {
					t.Errorf("mount %q: got subPath %q, want %q", m.MountPath, m.SubPath, subPath)
				}
				v := volume(pod, m.Name)
				if v == nil || v.ConfigMap == nil {
					t.Errorf("mount %q: volume %q is not a ConfigMap", m.MountPath, m.Name)
					continue
				}
				if _, ok := f.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("mount %q: ConfigMap %q is not in the kustomization", m.MountPath, v.ConfigMap.Name)
				}
			}
			for p := range want {
				t.Errorf("got no mount at %q, want one", p)
			}
		}},
		{"replicas spread over nodes and zones", func(t *testing.T) {
			keys := map[string]bool{}
			for i, tsc := range pod.TopologySpreadConstraints {
				keys[tsc.TopologyKey] = true
				selects(t, fmt.Sprintf("topology spread %d", i), tsc.LabelSelector, f.podLabels())
			}
			for _, k := range []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"} {
				if !keys[k] {
					t.Errorf("got no topology spread over %q, want one", k)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}

func volume(pod corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func checkProbe(t *testing.T, f *fleet, what string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("got %s probe %+v, want an httpGet probe", what, p)
	}
	if p.HTTPGet.Path != path {
		t.Errorf("got %s probe path %q, want %q", what, p.HTTPGet.Path, path)
	}
	if got := f.containerPort(t, p.HTTPGet.Port); got != httpPort {
		t.Errorf("got %s probe port %d, want the http port %d", what, got, httpPort)
	}
	if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("got %s probe scheme %q, want HTTP", what, p.HTTPGet.Scheme)
	}
}

func TestPodSecurityRestricted(t *testing.T) {
	f := render(t)
	e, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tpl := f.deployment.Spec.Template
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	res := psapolicy.AggregateCheckResults(e.EvaluatePod(lv, &tpl.ObjectMeta, &tpl.Spec))
	if !res.Allowed {
		t.Errorf("pod template violates the restricted Pod Security Standard: %s: %s",
			res.ForbiddenReason(), res.ForbiddenDetail())
	}
}

func TestServices(t *testing.T) {
	f := render(t)
	for _, name := range []string{"authzd", "authzd-headless"} {
		t.Run(name, func(t *testing.T) {
			s, ok := f.services[name]
			if !ok {
				t.Fatalf("got no Service %q", name)
			}
			selects(t, "service "+name, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, f.podLabels())
			type port struct {
				Port, Target int32
				AppProtocol  string
			}
			got := map[string]port{}
			for _, p := range s.Spec.Ports {
				if p.Name == "" {
					t.Errorf("got an unnamed port %d, want every port named", p.Port)
				}
				ap := ""
				if p.AppProtocol != nil {
					ap = *p.AppProtocol
				}
				got[p.Name] = port{p.Port, f.containerPort(t, p.TargetPort), ap}
			}
			want := map[string]port{
				"grpc": {grpcPort, grpcPort, "grpc"},
				"http": {httpPort, httpPort, "http"},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			headless := s.Spec.ClusterIP == corev1.ClusterIPNone
			if headless != strings.HasSuffix(name, "-headless") {
				t.Errorf("got clusterIP %q for %q", s.Spec.ClusterIP, name)
			}
		})
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	f := render(t)
	p := f.pdb
	selects(t, "pdb", p.Spec.Selector, f.podLabels())
	if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
		t.Fatal("got neither maxUnavailable nor minAvailable")
	}
	if p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.IntValue() < 1 {
		t.Errorf("got maxUnavailable %s, want at least 1 so that nodes can drain", p.Spec.MaxUnavailable)
	}
	if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int &&
		p.Spec.MinAvailable.IntVal >= *f.hpa.Spec.MinReplicas {
		t.Errorf("got minAvailable %s with %d minimum replicas: no pod could ever be evicted",
			p.Spec.MinAvailable, *f.hpa.Spec.MinReplicas)
	}
}

func TestHorizontalPodAutoscaler(t *testing.T) {
	f := render(t)
	h := f.hpa
	want := autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: f.deployment.Name}
	if diff := cmp.Diff(want, h.Spec.ScaleTargetRef); diff != "" {
		t.Errorf("scale target (-want +got):\n%s", diff)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
		t.Errorf("got minReplicas %v, want at least 2", h.Spec.MinReplicas)
	}
	if h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		t.Errorf("got maxReplicas %d below minReplicas %d", h.Spec.MaxReplicas, *h.Spec.MinReplicas)
	}
	cpu := false
	for _, m := range h.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil &&
			m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.AverageUtilization != nil {
			cpu = true
		}
	}
	if !cpu {
		t.Errorf("got metrics %+v, want a CPU utilization target", h.Spec.Metrics)
	}
}

func TestNetworkPolicy(t *testing.T) {
	f := render(t)
	n := f.netpol
	selects(t, "networkpolicy", &n.Spec.PodSelector, f.podLabels())
	if !slices.Contains(n.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("got policy types %v, want Ingress", n.Spec.PolicyTypes)
	}
	if len(n.Spec.Ingress) == 0 {
		t.Fatal("got no ingress rules, want one admitting Superset's namespace")
	}
	ports := map[int32]bool{}
	for i, r := range n.Spec.Ingress {
		if len(r.From) == 0 {
			t.Errorf("ingress rule %d: got no peers, which admits every source", i)
		}
		for j, p := range r.From {
			want := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": supersetNS}}
			if p.PodSelector != nil || p.IPBlock != nil {
				t.Errorf("ingress rule %d peer %d: got a pod selector or IP block, want the namespace only", i, j)
			}
			if diff := cmp.Diff(want, p.NamespaceSelector); diff != "" {
				t.Errorf("ingress rule %d peer %d: namespace selector (-want +got):\n%s", i, j, diff)
			}
		}
		if len(r.Ports) == 0 {
			t.Errorf("ingress rule %d: got no ports, which admits every port", i)
		}
		for _, p := range r.Ports {
			if p.Port == nil {
				t.Errorf("ingress rule %d: got a port without number", i)
				continue
			}
			ports[f.containerPort(t, *p.Port)] = true
		}
	}
	if diff := cmp.Diff(map[int32]bool{grpcPort: true, httpPort: true}, ports); diff != "" {
		t.Errorf("admitted ports (-want +got):\n%s", diff)
	}
}

// serviceConfig mirrors the keys of authzd's configuration file
// (internal/config) that config.yaml sets, so that a key misspelled in the
// ConfigMap fails here rather than at pod start. A key newly set in
// config.yaml must be added here too.
type serviceConfig struct {
	GRPCAddr  string `json:"grpc_addr"`
	HTTPAddr  string `json:"http_addr"`
	ClockSkew string `json:"clock_skew"`
	// ShutdownTimeout is the drain time on SIGTERM.
	ShutdownTimeout string `json:"shutdown_timeout"`
	Policy          struct {
		Dir     string `json:"dir"`
		Package string `json:"package"`
		Dialect string `json:"dialect"`
	} `json:"policy"`
	Issuers []struct {
		Issuer        string   `json:"issuer"`
		Audiences     []string `json:"audiences"`
		JWKSURL       string   `json:"jwks_url"`
		Algorithms    []string `json:"algorithms"`
		GroupsClaim   string   `json:"groups_claim"`
		UsernameClaim string   `json:"username_claim"`
	} `json:"issuers"`
}

func TestConfigFile(t *testing.T) {
	f := render(t)
	var cm *corev1.ConfigMap
	for name, c := range f.configMaps {
		if strings.HasPrefix(name, "authzd-config-") {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("got no generated authzd-config ConfigMap")
	}
	v := volume(f.deployment.Spec.Template.Spec, "config")
	if v == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
		t.Errorf("got config volume %+v, want ConfigMap %q", v, cm.Name)
	}
	raw, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("got keys %v, want config.yaml", slices.Sorted(maps.Keys(cm.Data)))
	}
	var c serviceConfig
	if err := yaml.UnmarshalStrict([]byte(raw), &c); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	for _, a := range []struct {
		key  string
		addr string
		port int32
	}{{"grpc_addr", c.GRPCAddr, grpcPort}, {"http_addr", c.HTTPAddr, httpPort}} {
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			t.Errorf("%s: %v", a.key, err)
			continue
		}
		if host != "0.0.0.0" && host != "" && host != "::" {
			t.Errorf("%s: got host %q, want all interfaces so that probes and the Service reach it", a.key, host)
		}
		if port != strconv.Itoa(int(a.port)) {
			t.Errorf("%s: got port %q, want %d (the container port)", a.key, port, a.port)
		}
	}
	if d, err := time.ParseDuration(c.ClockSkew); err != nil || d < 0 || d > 5*time.Minute {
		t.Errorf("clock_skew: got %q, want a duration of at most 5m", c.ClockSkew)
	}
	if d, err := time.ParseDuration(c.ShutdownTimeout); err != nil {
		t.Errorf("shutdown_timeout: %v", err)
	} else {
		pod := f.deployment.Spec.Template.Spec
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		preStop := time.Duration(0)
		if ps := f.container(t).Lifecycle.PreStop; ps != nil && ps.Sleep != nil {
			preStop = time.Duration(ps.Sleep.Seconds) * time.Second
		}
		if grace <= preStop+d {
			t.Errorf("got terminationGracePeriodSeconds %s, want more than preStop %s plus shutdown_timeout %s",
				grace, preStop, d)
		}
	}
	if c.Policy.Dir != policiesPath {
		t.Errorf("policy.dir: got %q, want the mounted %q", c.Policy.Dir, policiesPath)
	}
	if len(c.Issuers) == 0 {
		t.Fatal("issuers: got none, want at least one")
	}
	for i, is := range c.Issuers {
		if !strings.HasPrefix(is.Issuer, "https://") || len(is.Audiences) == 0 {
			t.Errorf("issuers[%d]: got issuer %q audiences %v, want an https issuer and an audience",
				i, is.Issuer, is.Audiences)
		}
	}
}

func TestPolicyItemsMatchConfigMap(t *testing.T) {
	f := render(t)
	v := volume(f.deployment.Spec.Template.Spec, "policies")
	if v == nil || v.ConfigMap == nil {
		t.Fatal("got no policies ConfigMap volume")
	}
	cm, ok := f.configMaps[v.ConfigMap.Name]
	if !ok {
		t.Fatalf("got no ConfigMap %q", v.ConfigMap.Name)
	}
	got := map[string]string{}
	for _, it := range v.ConfigMap.Items {
		got[it.Key] = it.Path
	}
	want := map[string]string{}
	rego := 0
	for k := range cm.Data {
		p := strings.ReplaceAll(k, "--", "/")
		want[k] = p
		if strings.HasSuffix(p, ".rego") {
			rego++
		}
	}
	for k := range cm.BinaryData {
		want[k] = strings.ReplaceAll(k, "--", "/")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("volume items differ from the ConfigMap's keys (-want +got); run `go run ./policysync`:\n%s", diff)
	}
	if rego == 0 {
		t.Error("got no .rego file in the policies ConfigMap")
	}
}

func TestPolicyConfigMapMatchesShippedPolicies(t *testing.T) {
	files, err := policyfiles.Collect(shippedPolicies)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("no served policy files in %q yet", shippedPolicies)
	}
	want, err := policyfiles.RenderConfigMap("authzd-policies", files)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("policies-configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("policies-configmap.yaml is stale; run `cd deploy && go run ./policysync` (-want +got):\n%s", diff)
	}
	deployment, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantDeployment, err := policyfiles.SpliceItems(deployment, files)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(wantDeployment), string(deployment)); diff != "" {
		t.Errorf("deployment.yaml policy items are stale; run `cd deploy && go run ./policysync` (-want +got):\n%s", diff)
	}
}
