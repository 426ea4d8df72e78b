package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/internal/freeport"
	"github.com/tearline/tearline/internal/syncbuf"
	"github.com/tearline/tearline/pki"
)

const k8sDir = "kubernetes"

// The parts of the Kubernetes objects the checks read.
type (
	meta struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	}
	object struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   meta   `yaml:"metadata"`
		node       *yaml.Node
		file       string
	}
	configMap struct {
		Data map[string]string `yaml:"data"`
	}
	secret struct {
		Data       map[string]string `yaml:"data"`
		StringData map[string]string `yaml:"stringData"`
	}
	keyPath struct {
		Key  string `yaml:"key"`
		Path string `yaml:"path"`
		Mode *int   `yaml:"mode"`
	}
	volume struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name  string    `yaml:"name"`
			Items []keyPath `yaml:"items"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName  string    `yaml:"secretName"`
			Items       []keyPath `yaml:"items"`
			DefaultMode *int      `yaml:"defaultMode"`
		} `yaml:"secret"`
		EmptyDir              *map[string]any `yaml:"emptyDir"`
		PersistentVolumeClaim *map[string]any `yaml:"persistentVolumeClaim"`
	}
	mount struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
		SubPath   string `yaml:"subPath"`
	}
	probe struct {
		TCPSocket *struct {
			Port any `yaml:"port"`
		} `yaml:"tcpSocket"`
		HTTPGet *struct {
			Path   string `yaml:"path"`
			Port   any    `yaml:"port"`
			Scheme string `yaml:"scheme"`
		} `yaml:"httpGet"`
		GRPC *struct {
			Port int `yaml:"port"`
		} `yaml:"grpc"`
		Exec *map[string]any `yaml:"exec"`
	}
	securityContext struct {
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		Privileged               *bool  `yaml:"privileged"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	}
	container struct {
		Name          string   `yaml:"name"`
		Image         string   `yaml:"image"`
		Command       []string `yaml:"command"`
		Args          []string `yaml:"args"`
		RestartPolicy string   `yaml:"restartPolicy"`
		Env           []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		SecurityContext securityContext `yaml:"securityContext"`
		Resources       struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		StartupProbe   *probe  `yaml:"startupProbe"`
		LivenessProbe  *probe  `yaml:"livenessProbe"`
		ReadinessProbe *probe  `yaml:"readinessProbe"`
		VolumeMounts   []mount `yaml:"volumeMounts"`
	}
	statefulSet struct {
		Spec struct {
			Replicas    *int   `yaml:"replicas"`
			ServiceName string `yaml:"serviceName"`
			Selector    struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata meta `yaml:"metadata"`
				Spec     struct {
					TerminationGracePeriodSeconds *int            `yaml:"terminationGracePeriodSeconds"`
					SecurityContext               securityContext `yaml:"securityContext"`
					InitContainers                []container     `yaml:"initContainers"`
					Containers                    []container     `yaml:"containers"`
					Volumes                       []volume        `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
			VolumeClaimTemplates []struct {
				Metadata meta `yaml:"metadata"`
			} `yaml:"volumeClaimTemplates"`
		} `yaml:"spec"`
	}
	service struct {
		Spec struct {
			Type      string            `yaml:"type"`
			ClusterIP string            `yaml:"clusterIP"`
			Selector  map[string]string `yaml:"selector"`
			Ports     []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort any    `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	networkPolicy struct {
		Spec struct {
			PodSelector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"podSelector"`
			PolicyTypes []string `yaml:"policyTypes"`
			Ingress     []struct {
				From []struct {
					NamespaceSelector *struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"namespaceSelector"`
					PodSelector *map[string]any `yaml:"podSelector"`
					IPBlock     *map[string]any `yaml:"ipBlock"`
				} `yaml:"from"`
				Ports []struct {
					Port any `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
)

// wantAPI is the apiVersion of each kind the manifests may hold.
var wantAPI = map[string]string{
	"Namespace":     "v1",
	"ConfigMap":     "v1",
	"Secret":        "v1",
	"Service":       "v1",
	"StatefulSet":   "apps/v1",
	"NetworkPolicy": "networking.k8s.io/v1",
}

// manifests reads kustomization.yaml and every document of its resources.
func manifests(t *testing.T, dir string) (namespace string, objs []object) {
	t.Helper()
	var k struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Namespace  string   `yaml:"namespace"`
		Resources  []string `yaml:"resources"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Kind != "Kustomization" || !strings.HasPrefix(k.APIVersion, "kustomize.config.k8s.io/") {
		t.Errorf("kustomization.yaml: kind %q apiVersion %q", k.Kind, k.APIVersion)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(k.Resources, b) {
			t.Errorf("%s is not listed in kustomization.yaml's resources", b)
		}
	}
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
			continue
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var n yaml.Node
			if err := dec.Decode(&n); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s document %d: %v", r, i, err)
			}
			o := object{node: &n, file: r}
			if err := n.Decode(&o); err != nil {
				t.Fatalf("%s document %d: %v", r, i, err)
			}
			if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
				t.Errorf("%s document %d: kind %q apiVersion %q metadata.name %q: all three are required", r, i, o.Kind, o.APIVersion, o.Metadata.Name)
			}
			if want, ok := wantAPI[o.Kind]; !ok {
				t.Errorf("%s: kind %s is not expected here", r, o.Kind)
			} else if o.APIVersion != want {
				t.Errorf("%s: %s %s has apiVersion %s, want %s", r, o.Kind, o.Metadata.Name, o.APIVersion, want)
			}
			if o.Metadata.Namespace != "" && o.Metadata.Namespace != k.Namespace {
				t.Errorf("%s: %s %s in namespace %s, but kustomization.yaml sets %s", r, o.Kind, o.Metadata.Name, o.Metadata.Namespace, k.Namespace)
			}
			objs = append(objs, o)
		}
	}
	return k.Namespace, objs
}

// decodeOne decodes the only object of kind (and name, if set) into v.
func decodeOne(t *testing.T, objs []object, kind, name string, v any) {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o.Kind == kind && (name == "" || o.Metadata.Name == name) {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s %s, found %d", kind, name, len(found))
	}
	if err := found[0].node.Decode(v); err != nil {
		t.Fatalf("%s: %s: %v", found[0].file, kind, err)
	}
}

func ofKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// selects reports whether a selector's labels all appear in labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// mebibytes parses a Kubernetes memory quantity.
func mebibytes(q string) (float64, error) {
	m := regexp.MustCompile(`^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$`).FindStringSubmatch(q)
	if m == nil {
		return 0, fmt.Errorf("memory quantity %q not understood", q)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	mult := map[string]float64{"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m[2]]
	return n * mult / (1 << 20), nil
}

// nodeSpec is the StatefulSet and the objects it refers to.
type nodeSpec struct {
	ns       string
	objs     []object
	sts      statefulSet
	node     container // the container running tearline node
	cfgPath  string    // its --config
	cfgYAML  string    // node.yaml from the ConfigMap
	volumes  map[string]volume
	claims   map[string]bool
	cmaps    map[string]configMap
	secrets  map[string]map[string]string
	portsByN map[string]int
}

func loadNodeSpec(t *testing.T, dir string) *nodeSpec {
	t.Helper()
	s := &nodeSpec{volumes: map[string]volume{}, claims: map[string]bool{}, cmaps: map[string]configMap{},
		secrets: map[string]map[string]string{}, portsByN: map[string]int{}}
	s.ns, s.objs = manifests(t, dir)
	decodeOne(t, s.objs, "StatefulSet", "", &s.sts)
	for _, o := range ofKind(s.objs, "ConfigMap") {
		var cm configMap
		if err := o.node.Decode(&cm); err != nil {
			t.Fatal(err)
		}
		s.cmaps[o.Metadata.Name] = cm
	}
	for _, o := range ofKind(s.objs, "Secret") {
		var sec secret
		if err := o.node.Decode(&sec); err != nil {
			t.Fatal(err)
		}
		keys := map[string]string{}
		for k, v := range sec.StringData {
			keys[k] = v
		}
		for k, v := range sec.Data {
			keys[k] = v // base64; only the key matters here
		}
		s.secrets[o.Metadata.Name] = keys
	}
	spec := s.sts.Spec.Template.Spec
	for _, v := range spec.Volumes {
		if _, dup := s.volumes[v.Name]; dup {
			t.Errorf("volume %s is defined twice", v.Name)
		}
		s.volumes[v.Name] = v
	}
	for _, c := range s.sts.Spec.VolumeClaimTemplates {
		s.claims[c.Metadata.Name] = true
	}
	var nodes []container
	for _, c := range spec.Containers {
		args := append(append([]string(nil), c.Command...), c.Args...)
		if len(args) == 3 && args[0] == "node" && args[1] == "--config" {
			nodes = append(nodes, c)
			s.cfgPath = args[2]
		}
	}
	if len(nodes) != 1 {
		t.Fatalf("want one container with args [node --config FILE], found %d", len(nodes))
	}
	s.node = nodes[0]
	for _, p := range s.node.Ports {
		s.portsByN[p.Name] = p.ContainerPort
	}
	data, err := s.fileContent(s.node, s.cfgPath)
	if err != nil {
		t.Fatalf("--config %s: %v", s.cfgPath, err)
	}
	s.cfgYAML = data
	return s
}

// mountOf is the mount of c that holds path p (the deepest one).
func mountOf(c container, p string) (mount, bool) {
	var best mount
	found := false
	for _, m := range c.VolumeMounts {
		if under(p, m.MountPath) && (!found || len(m.MountPath) > len(best.MountPath)) {
			best, found = m, true
		}
	}
	return best, found
}

// fileContent is the content that the manifests put at path p in container
// c: a ConfigMap's or a Secret's key.
func (s *nodeSpec) fileContent(c container, p string) (string, error) {
	m, ok := mountOf(c, p)
	if !ok {
		return "", fmt.Errorf("%s is not in any volume mounted in container %s", p, c.Name)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(filepath.Clean(p), filepath.Clean(m.MountPath)), "/")
	v := s.volumes[m.Name]
	switch {
	case v.ConfigMap != nil:
		cm, ok := s.cmaps[v.ConfigMap.Name]
		if !ok {
			return "", fmt.Errorf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
		}
		key := rel
		if len(v.ConfigMap.Items) > 0 {
			key = ""
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
		}
		data, ok := cm.Data[key]
		if key == "" || !ok {
			return "", fmt.Errorf("%s: ConfigMap %s (volume %s at %s) has no item at %s", p, v.ConfigMap.Name, v.Name, m.MountPath, rel)
		}
		return data, nil
	case v.Secret != nil:
		sec, ok := s.secrets[v.Secret.SecretName]
		if !ok {
			return "", fmt.Errorf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
		}
		data, ok := sec[rel]
		if !ok {
			return "", fmt.Errorf("%s: Secret %s has no key %s", p, v.Secret.SecretName, rel)
		}
		return data, nil
	}
	return "", fmt.Errorf("%s: volume %s at %s holds no files from the manifests", p, m.Name, m.MountPath)
}

func TestKubernetesManifests(t *testing.T) {
	s := loadNodeSpec(t, k8sDir)
	sts := s.sts.Spec
	pod := sts.Template.Spec

	if ns := ofKind(s.objs, "Namespace"); len(ns) > 0 && (len(ns) != 1 || ns[0].Metadata.Name != s.ns) {
		t.Errorf("%d Namespace object(s), first %s: want one, named %s as in kustomization.yaml", len(ns), ns[0].Metadata.Name, s.ns)
	}
	if sts.Replicas == nil || *sts.Replicas != 1 {
		got := "unset (1 by default, but say it)"
		if sts.Replicas != nil {
			got = strconv.Itoa(*sts.Replicas)
		}
		t.Errorf("StatefulSet replicas %s: want exactly 1 (one writer of one bbolt file)", got)
	}
	if !selects(sts.Selector.MatchLabels, sts.Template.Metadata.Labels) {
		t.Errorf("StatefulSet selector %v does not select its pod labels %v", sts.Selector.MatchLabels, sts.Template.Metadata.Labels)
	}

	// Security: non-root, read-only root, no capabilities, seccomp.
	psc := pod.SecurityContext
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		t.Error("pod securityContext.runAsUser is 0")
	}
	if psc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod seccompProfile %q, want RuntimeDefault", psc.SeccompProfile.Type)
	}
	for _, c := range append(append([]container(nil), pod.InitContainers...), pod.Containers...) {
		sc := c.SecurityContext
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s: capabilities drop %v add %v, want drop [ALL] and no add", c.Name, sc.Capabilities.Drop, sc.Capabilities.Add)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s is privileged", c.Name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("container %s: runAsUser 0", c.Name)
		}
		if img := c.Image; !regexp.MustCompile(`:[\w][\w.-]*$|@sha256:[0-9a-f]{64}$`).MatchString(img) || strings.HasSuffix(img, ":latest") {
			t.Errorf("container %s: image %q: pin a tag (not latest) or a digest", c.Name, img)
		}
		if c.Resources.Limits["memory"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Requests["cpu"] == "" {
			t.Errorf("container %s: resources %+v: want memory request and limit, cpu request", c.Name, c.Resources)
		}
		// Every volumeMount names a volume that exists.
		for _, m := range c.VolumeMounts {
			_, isVol := s.volumes[m.Name]
			if !isVol && !s.claims[m.Name] {
				t.Errorf("container %s mounts %s at %s: no such volume or volumeClaimTemplate", c.Name, m.Name, m.MountPath)
			}
		}
	}
	for _, v := range s.volumes {
		if v.ConfigMap != nil {
			if _, ok := s.cmaps[v.ConfigMap.Name]; !ok {
				t.Errorf("volume %s: ConfigMap %s is not in the manifests", v.Name, v.ConfigMap.Name)
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := s.cmaps[v.ConfigMap.Name].Data[it.Key]; !ok {
					t.Errorf("volume %s: ConfigMap %s has no key %s", v.Name, v.ConfigMap.Name, it.Key)
				}
			}
		}
		if v.Secret != nil {
			if _, ok := s.secrets[v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: Secret %s is not in the manifests", v.Name, v.Secret.SecretName)
			}
		}
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < 3*gateway.StopGrace {
		t.Errorf("terminationGracePeriodSeconds %v: want at least %s (gateway.StopGrace %s, then the last checkpoint)", g, 3*gateway.StopGrace, gateway.StopGrace)
	}

	// node.yaml: the node's own validation, and the files it names.
	cfg := checkNodeConfig(t, s)
	if cfg == nil {
		return
	}
	if lim, err := mebibytes(s.node.Resources.Limits["memory"]); err != nil {
		t.Error(err)
	} else if cfg.MemoryLimitMiB == 0 || lim < 1.25*float64(cfg.MemoryLimitMiB) {
		t.Errorf("memory limit %.0f MiB with memory_limit_mib %d: set memory_limit_mib, and the limit at least 1.25 times it", lim, cfg.MemoryLimitMiB)
	}

	// Ports: the container's, the node's, the Services', the NetworkPolicy's.
	listenPort := port(t, cfg.Listen)
	if cfg.MetricsListen == "" {
		t.Fatal("node.yaml has no metrics_listen: the readiness probe and Prometheus need it")
	}
	metricsPort := port(t, cfg.MetricsListen)
	if host, _, _ := splitHostPort(cfg.MetricsListen); host == "127.0.0.1" || host == "localhost" || host == "::1" || host == "[::1]" {
		t.Errorf("metrics_listen %s: on loopback neither Prometheus nor the kubelet reaches it", cfg.MetricsListen)
	}
	var cports []int
	for _, p := range s.node.Ports {
		cports = append(cports, p.ContainerPort)
	}
	slices.Sort(cports)
	if want := []int{listenPort, metricsPort}; !slices.Equal(cports, want) {
		t.Errorf("container ports %v, node.yaml listens on %v (listen, metrics_listen)", cports, want)
	}
	resolve := func(p any) (int, bool) {
		switch v := p.(type) {
		case int:
			return v, slices.Contains(cports, v)
		case string:
			n, ok := s.portsByN[v]
			return n, ok
		}
		return 0, false
	}
	services := ofKind(s.objs, "Service")
	var governing, exposesGRPC bool
	for _, o := range services {
		var svc service
		if err := o.node.Decode(&svc); err != nil {
			t.Fatal(err)
		}
		if !selects(svc.Spec.Selector, sts.Template.Metadata.Labels) {
			t.Errorf("Service %s selector %v does not select the node's pod", o.Metadata.Name, svc.Spec.Selector)
		}
		if o.Metadata.Name == sts.ServiceName && svc.Spec.ClusterIP == "None" {
			governing = true
		}
		for _, p := range svc.Spec.Ports {
			tp := p.TargetPort
			if tp == nil {
				tp = p.Port
			}
			n, ok := resolve(tp)
			if !ok {
				t.Errorf("Service %s port %s: targetPort %v is not a port of container %s", o.Metadata.Name, p.Name, tp, s.node.Name)
			}
			if n == listenPort && svc.Spec.ClusterIP != "None" {
				exposesGRPC = true
			}
			if n == metricsPort && (svc.Spec.Type == "LoadBalancer" || svc.Spec.Type == "NodePort") {
				t.Errorf("Service %s (%s) exposes the metrics port outside the cluster", o.Metadata.Name, svc.Spec.Type)
			}
		}
	}
	if !governing {
		t.Errorf("StatefulSet serviceName %q is not a headless Service in the manifests", sts.ServiceName)
	}
	if !exposesGRPC {
		t.Errorf("no Service reaches the node's gRPC port %d", listenPort)
	}

	var np networkPolicy
	decodeOne(t, s.objs, "NetworkPolicy", "", &np)
	if !selects(np.Spec.PodSelector.MatchLabels, sts.Template.Metadata.Labels) {
		t.Errorf("NetworkPolicy podSelector %v does not select the node's pod", np.Spec.PodSelector.MatchLabels)
	}
	if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
		t.Errorf("NetworkPolicy policyTypes %v: want Ingress", np.Spec.PolicyTypes)
	}
	allowed := map[int]bool{}
	for i, r := range np.Spec.Ingress {
		if len(r.Ports) == 0 {
			t.Errorf("NetworkPolicy ingress[%d] allows every port", i)
		}
		for _, p := range r.Ports {
			n, ok := resolve(p.Port)
			if !ok {
				t.Errorf("NetworkPolicy ingress[%d] port %v is not a port of the node", i, p.Port)
				continue
			}
			allowed[n] = true
			if n == metricsPort {
				onlyMonitoring := len(r.From) > 0
				for _, f := range r.From {
					onlyMonitoring = onlyMonitoring && f.IPBlock == nil && f.PodSelector == nil && f.NamespaceSelector != nil &&
						len(f.NamespaceSelector.MatchLabels) > 0 && f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "monitoring"
				}
				if !onlyMonitoring {
					t.Errorf("NetworkPolicy ingress[%d] lets more than the monitoring namespace reach metrics port %d", i, n)
				}
			}
		}
	}
	if !allowed[listenPort] || !allowed[metricsPort] {
		t.Errorf("NetworkPolicy allows ports %v, want %d and %d", allowed, listenPort, metricsPort)
	}

	// Probes: on the node's ports; no gRPC probe on the mTLS port (it has
	// no client certificate, so it would always fail).
	probes := map[string]*probe{"startupProbe": s.node.StartupProbe, "livenessProbe": s.node.LivenessProbe, "readinessProbe": s.node.ReadinessProbe}
	for name, p := range probes {
		if p == nil {
			if name != "startupProbe" {
				t.Errorf("container %s has no %s", s.node.Name, name)
			}
			continue
		}
		switch {
		case p.GRPC != nil:
			t.Errorf("%s: a grpc probe on %d needs a client certificate the kubelet does not have", name, p.GRPC.Port)
		case p.TCPSocket != nil:
			if _, ok := resolve(p.TCPSocket.Port); !ok {
				t.Errorf("%s: tcpSocket port %v is not a container port", name, p.TCPSocket.Port)
			}
		case p.HTTPGet != nil:
			n, ok := resolve(p.HTTPGet.Port)
			if !ok || n != metricsPort || p.HTTPGet.Scheme == "HTTPS" {
				t.Errorf("%s: httpGet %v: plain HTTP is served on the metrics port %d only", name, p.HTTPGet.Port, metricsPort)
			}
		default:
			t.Errorf("%s: want tcpSocket or httpGet (the image has no shell for exec)", name)
		}
	}

	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		if out, err := exec.Command(kubectl, "kustomize", k8sDir).CombinedOutput(); err != nil {
			t.Errorf("kubectl kustomize %s: %v\n%s", k8sDir, err, out)
		}
	} else {
		t.Log("kubectl is not on PATH: kubectl kustomize not run")
	}
}

// checkNodeConfig lays out the files the pod sees in a temporary root
// (ConfigMap and Secret items, the init container's copy), loads node.yaml
// with the node's own gateway.LoadConfig, and checks every path it names.
func checkNodeConfig(t *testing.T, s *nodeSpec) *gateway.Config {
	t.Helper()
	root := t.TempDir()
	cfgFile := filepath.Join(root, s.cfgPath)
	if err := os.MkdirAll(filepath.Dir(cfgFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(s.cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(cfgFile)
	if err != nil {
		t.Errorf("the ConfigMap's node.yaml is refused by the node: %v", err)
		return nil
	}
	if !filepath.IsAbs(cfg.DataDir) {
		t.Errorf("data_dir %s: want an absolute path (relative ones follow the config's folder)", cfg.DataDir)
	}
	// data_dir: on the persistent volume, writable.
	if m, ok := mountOf(s.node, cfg.Path(cfg.DataDir)); !ok || !s.claims[m.Name] || m.ReadOnly {
		t.Errorf("data_dir %s is not on a writable volumeClaimTemplate mount (mount %+v)", cfg.DataDir, m)
	}
	if cfg.PKI.Mode != "vault" {
		t.Errorf("pki.mode %s: the manifests are for production, pki.mode vault", cfg.PKI.Mode)
		return cfg
	}
	v := cfg.PKI.Vault
	if v.Auth != "approle" {
		t.Errorf("pki.vault.auth %s, want approle", v.Auth)
	}
	// Files the node reads: each must be in a mounted volume, with content.
	files := map[string]string{}
	if v.CAFile != "" {
		files["pki.vault.ca_file"] = cfg.Path(v.CAFile)
	}
	for _, p := range cfg.Partners {
		files["partners "+p.Party+" ca_file"] = cfg.Path(p.CAFile)
	}
	for what, p := range files {
		data, err := s.fileContent(s.node, p)
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		// A CA bundle, or a placeholder clearly marked (the node refuses it).
		local := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(local), 0o755)
		if err := os.WriteFile(local, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := pki.ReadCertificatesFile(local); err != nil && !strings.Contains(data, "REPLACE-ME") {
			t.Errorf("%s %s: neither a PEM CA bundle (%v) nor a placeholder marked REPLACE-ME", what, p, err)
		}
	}
	checkSecretIDFile(t, s, root, cfg.Path(v.SecretIDFile))
	return cfg
}

// checkSecretIDFile follows the secret id from the Secret through the
// sidecar that copies it, as the kubelet and the container would, checks
// the node would accept the file's mode, and runs the sidecar's script.
func checkSecretIDFile(t *testing.T, s *nodeSpec, root, p string) {
	t.Helper()
	m, ok := mountOf(s.node, p)
	if !ok {
		t.Errorf("pki.vault.secret_id_file %s is not in a volume mounted in %s", p, s.node.Name)
		return
	}
	v := s.volumes[m.Name]
	if v.Secret != nil {
		// Straight from a Secret volume: the node refuses it unless the
		// kubelet leaves it 0400/0600 and owned by the node's user, which it
		// does not with fsGroup.
		t.Errorf("secret_id_file %s is read straight from Secret volume %s: the node refuses a group-readable secret file and fsGroup makes it 0440", p, m.Name)
		return
	}
	if v.EmptyDir == nil {
		t.Errorf("secret_id_file %s: volume %s is neither an emptyDir filled by a sidecar nor a Secret", p, m.Name)
		return
	}
	// The sidecar that fills it: an init container that keeps running,
	// with the script in sh -c, SRC and DST in its environment.
	for _, ic := range s.sts.Spec.Template.Spec.InitContainers {
		env := map[string]string{}
		for _, e := range ic.Env {
			env[e.Name] = e.Value
		}
		if env["DST"] != p {
			continue
		}
		if ic.RestartPolicy != "Always" {
			t.Errorf("init container %s copies the secret id once (restartPolicy %q): a rotated secret id would reach the node only at the pod's next start; want restartPolicy Always (a sidecar)", ic.Name, ic.RestartPolicy)
		}
		if im, ok := mountOf(ic, p); !ok || im.Name != m.Name || im.ReadOnly {
			t.Errorf("sidecar %s writes %s but does not mount volume %s writable there", ic.Name, p, m.Name)
		}
		data, err := s.fileContent(ic, env["SRC"])
		if err != nil {
			t.Errorf("sidecar %s copies %s: %v", ic.Name, env["SRC"], err)
			return
		}
		if strings.TrimSpace(data) == "" {
			t.Errorf("Secret key for %s is empty", env["SRC"])
		}
		if pr := ic.StartupProbe; pr == nil || pr.Exec == nil || fmt.Sprint((*pr.Exec)["command"]) != fmt.Sprint([]any{"test", "-s", p}) {
			t.Errorf("sidecar %s: want a startupProbe exec [test -s %s], so that the node starts once the secret id is there", ic.Name, p)
		}
		cmd := append(append([]string(nil), ic.Command...), ic.Args...)
		if len(cmd) != 3 || cmd[0] != "sh" || cmd[1] != "-c" {
			t.Errorf("sidecar %s: command %q, want sh -c SCRIPT", ic.Name, cmd)
			return
		}
		runSecretIDSidecar(t, cmd[2])
		return
	}
	t.Errorf("secret_id_file %s: no init container has DST=%s in its environment (the sidecar that copies the secret id into emptyDir %s)", p, p, m.Name)
}

// runSecretIDSidecar runs the sidecar's script with its files in a
// temporary folder and checks that it copies the secret id at mode 0400,
// and copies it again when it changes, each time whole.
func runSecretIDSidecar(t *testing.T, script string) {
	t.Helper()
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "secret", "secret-id"), filepath.Join(dir, "vault", "secret-id")
	for _, d := range []string{filepath.Dir(src), filepath.Dir(dst)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// As the kubelet updates a Secret volume: the new file renamed in.
	put := func(v string) {
		tmp := src + ".tmp"
		if err := os.WriteFile(tmp, []byte(v), 0o440); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, src); err != nil {
			t.Fatal(err)
		}
	}
	put("first-secret-id")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = append(os.Environ(), "SRC="+src, "DST="+dst, "INTERVAL=0.1")
	var out syncbuf.Buffer // written by the command's copying goroutine, read here
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("run the sidecar's script: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()
	await := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			data, err := os.ReadFile(dst)
			if err == nil && string(data) == want {
				fi, err := os.Stat(dst)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o400 {
					t.Fatalf("the sidecar's copy has mode %o, want 0400 (the node refuses more)", fi.Mode().Perm())
				}
				return
			}
			select {
			case err := <-exited:
				t.Fatalf("the sidecar's script ended (%v) before %s held %q:\n%s", err, dst, want, out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sidecar's copy holds %q (%v) after 10 s, want %q:\n%s", data, err, want, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	await("first-secret-id")
	put("rotated-secret-id")
	await("rotated-secret-id")
	if strings.Contains(out.String(), "first-secret-id") || strings.Contains(out.String(), "rotated-secret-id") {
		t.Fatalf("the sidecar logs the secret id:\n%s", out.String())
	}
	if left, _ := filepath.Glob(dst + ".*"); len(left) > 0 {
		time.Sleep(300 * time.Millisecond) // not in the middle of a copy
		if left, _ := filepath.Glob(dst + ".*"); len(left) > 0 {
			t.Errorf("the sidecar leaves %v beside the copy", left)
		}
	}
}

// TestKubernetesProbes starts a real node with the ConfigMap's node.yaml
// (pki.mode dev instead of vault, no partners, loopback ports) and runs the
// StatefulSet's probes against it, then stops it as the kubelet does and
// times the stop against terminationGracePeriodSeconds.
func TestKubernetesProbes(t *testing.T) {
	s := loadNodeSpec(t, k8sDir)
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(s.cfgYAML), &raw); err != nil {
		t.Fatal(err)
	}
	cfg := gatewayConfigOrSkip(t, s)
	base, err := freeport.Range(2)
	if err != nil {
		t.Fatal(err)
	}
	// The manifests' ports → these loopback ones.
	local := map[int]int{port(t, cfg.Listen): base, port(t, cfg.MetricsListen): base + 1}
	dir := t.TempDir()
	raw["listen"] = fmt.Sprintf("127.0.0.1:%d", base)
	raw["metrics_listen"] = fmt.Sprintf("127.0.0.1:%d", base+1)
	raw["data_dir"] = filepath.Join(dir, "data")
	raw["pki"] = map[string]any{"mode": "dev", "dev_ca_dir": filepath.Join(dir, "ca")}
	delete(raw, "partners")
	data, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	devCfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewServer(devCfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	run := func(name string, p *probe) error {
		portOf := func(v any) int {
			if n, ok := v.(int); ok {
				return local[n]
			}
			return local[s.portsByN[v.(string)]]
		}
		switch {
		case p.TCPSocket != nil:
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", portOf(p.TCPSocket.Port)), time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		case p.HTTPGet != nil:
			hc := http.Client{Timeout: time.Second}
			resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d%s", portOf(p.HTTPGet.Port), p.HTTPGet.Path))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode >= 400 {
				return fmt.Errorf("HTTP %s", resp.Status)
			}
			return nil
		}
		return fmt.Errorf("%s: probe kind not run by this test", name)
	}
	for name, p := range map[string]*probe{"startupProbe": s.node.StartupProbe, "livenessProbe": s.node.LivenessProbe, "readinessProbe": s.node.ReadinessProbe} {
		if p == nil {
			continue
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := run(name, p)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s never succeeded against a running node: %v", name, err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The kubelet's SIGTERM, then terminationGracePeriodSeconds.
	grace := time.Duration(*s.sts.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("node stopped with %v", err)
		}
		t.Logf("node stopped in %s (grace %s)", time.Since(start).Round(time.Millisecond), grace)
	case <-time.After(grace):
		t.Errorf("node did not stop within terminationGracePeriodSeconds (%s)", grace)
	}
	// Once stopped, the readiness probe fails (no traffic to a stopped node).
	if p := s.node.ReadinessProbe; p != nil && run("readinessProbe", p) == nil {
		t.Error("readinessProbe still succeeds after the node stopped")
	}
}

func gatewayConfigOrSkip(t *testing.T, s *nodeSpec) *gateway.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(path, []byte(s.cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("node.yaml: %v (TestKubernetesManifests says more)", err)
	}
	if cfg.MetricsListen == "" {
		t.Fatal("node.yaml has no metrics_listen")
	}
	return cfg
}
