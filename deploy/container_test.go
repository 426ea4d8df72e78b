package deploy

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tearline/tearline/gateway"
)

const (
	containerfile = "container/Containerfile"
	ignorefile    = "container/Containerfile.dockerignore"
)

// instruction is one Containerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM and what follows it.
type stage struct {
	image, name string
	ins         []instruction
}

// parseContainerfile splits a Containerfile (Dockerfile syntax) into stages.
func parseContainerfile(data string) ([]stage, error) {
	var (
		stages  []stage
		pending string
		start   int
	)
	for i, raw := range strings.Split(data, "\n") {
		line := strings.TrimSpace(raw)
		if pending == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if pending == "" {
			start = i + 1
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line = pending + line
		pending = ""
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return nil, fmt.Errorf("line %d: FROM %q: want IMAGE [AS NAME]", start, in.args)
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("line %d: %s before the first FROM", start, in.cmd)
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	if pending != "" {
		return nil, fmt.Errorf("line %d: continuation at the end of the file", start)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return stages, nil
}

// all returns the stage's instructions of kind cmd.
func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm parses the JSON (exec) form of ENTRYPOINT, CMD, VOLUME.
func execForm(in instruction) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(in.args), &out); err != nil {
		return nil, fmt.Errorf("line %d: %s %s: want the JSON form: %w", in.line, in.cmd, in.args, err)
	}
	return out, nil
}

// shellWords splits a simple shell command: spaces, single and double
// quotes; no expansions (the test refuses what it does not understand).
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool
		quote rune
	)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case r == '$' || r == '`' || r == ';' || r == '|' || r == '&' || r == '\\':
			return nil, fmt.Errorf("%q: shell syntax %q not understood by this test", s, r)
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%q: unterminated quote", s)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// copyInstr is COPY [--from=X] [--chown=U:G] SRC... DST.
type copyInstr struct {
	from, chown string
	src         []string
	dst         string
}

func parseCopy(in instruction) (copyInstr, error) {
	var c copyInstr
	f := strings.Fields(in.args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--") {
		k, v, _ := strings.Cut(strings.TrimPrefix(f[0], "--"), "=")
		switch k {
		case "from":
			c.from = v
		case "chown":
			c.chown = v
		}
		f = f[1:]
	}
	if len(f) < 2 {
		return c, fmt.Errorf("line %d: COPY %s: want SRC... DST", in.line, in.args)
	}
	c.src, c.dst = f[:len(f)-1], f[len(f)-1]
	return c, nil
}

// goBuild is the `go build` of the build stage.
type goBuild struct {
	stage  *stage
	env    []string // NAME=VALUE from ENV and the RUN line
	args   []string // after "go build"
	output string   // -o
}

func findGoBuild(stages []stage) (goBuild, error) {
	var found []goBuild
	for i := range stages {
		st := &stages[i]
		var env []string
		for _, in := range st.ins {
			switch in.cmd {
			case "ENV":
				// ENV NAME=VALUE ... (the legacy "ENV NAME VALUE" is not used here).
				words, err := shellWords(in.args)
				if err != nil {
					return goBuild{}, err
				}
				for _, w := range words {
					if !strings.Contains(w, "=") {
						return goBuild{}, fmt.Errorf("line %d: ENV %s: want NAME=VALUE", in.line, in.args)
					}
					env = append(env, w)
				}
			case "RUN":
				if !strings.Contains(in.args, "go build") {
					continue
				}
				words, err := shellWords(in.args)
				if err != nil {
					return goBuild{}, fmt.Errorf("line %d: %w", in.line, err)
				}
				b := goBuild{stage: st, env: append([]string(nil), env...)}
				for len(words) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[0]) {
					b.env = append(b.env, words[0])
					words = words[1:]
				}
				if len(words) < 2 || words[0] != "go" || words[1] != "build" {
					return goBuild{}, fmt.Errorf("line %d: RUN %s: want [ENV=...] go build ...", in.line, in.args)
				}
				b.args = words[2:]
				for j, a := range b.args {
					if a == "-o" && j+1 < len(b.args) {
						b.output = b.args[j+1]
					}
				}
				found = append(found, b)
			}
		}
	}
	if len(found) != 1 {
		return goBuild{}, fmt.Errorf("want exactly one RUN go build, found %d", len(found))
	}
	if found[0].output == "" {
		return goBuild{}, fmt.Errorf("go build without -o")
	}
	return found[0], nil
}

// envValue is the last NAME=VALUE of name in env.
func envValue(env []string, name string) (string, bool) {
	val, ok := "", false
	for _, e := range env {
		if k, v, _ := strings.Cut(e, "="); k == name {
			val, ok = v, true
		}
	}
	return val, ok
}

// ignoreRule is one line of a .dockerignore file.
type ignoreRule struct {
	pattern []string // path elements; "**" matches any number of them
	negate  bool
}

func parseIgnore(data string) []ignoreRule {
	var rules []ignoreRule
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{}
		if strings.HasPrefix(line, "!") {
			r.negate, line = true, strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		r.pattern = strings.Split(line, "/")
		rules = append(rules, r)
	}
	return rules
}

func matchElems(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if matchElems(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], name[0])
	return err == nil && ok && matchElems(pat[1:], name[1:])
}

// ignored applies the rules as Docker does: the last rule that matches the
// path or one of its parent folders decides.
func ignored(rules []ignoreRule, rel string) bool {
	elems := strings.Split(rel, "/")
	out := false
	for _, r := range rules {
		for n := 1; n <= len(elems); n++ {
			if matchElems(r.pattern, elems[:n]) {
				out = !r.negate
				break
			}
		}
	}
	return out
}

// copyContext copies the build context (the repository root, less what the
// ignore file excludes) to dst, as the image build sees it.
func copyContext(root, dst string, rules []ignoreRule) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" || rel == ".bin" {
				// Large and always ignored: do not walk them (checked below).
				if !ignored(rules, rel+"/x") {
					return fmt.Errorf("%s is not ignored", rel)
				}
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || ignored(rules, rel) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o644)
	})
}

var (
	builtOnce sync.Once
	builtPath string
	builtErr  error
)

// builtBinary builds tearline as the Containerfile does (same environment
// and flags, from a copy of the build context the ignore file leaves) once
// per test binary, and returns its path.
func builtBinary(t *testing.T) string {
	t.Helper()
	builtOnce.Do(func() {
		builtPath, builtErr = buildAsContainer()
	})
	if builtErr != nil {
		t.Fatalf("building as the Containerfile does: %v", builtErr)
	}
	return builtPath
}

// buildDir holds the build; removed by TestMain.
var buildDir string

func buildAsContainer() (string, error) {
	data, err := os.ReadFile(containerfile)
	if err != nil {
		return "", err
	}
	stages, err := parseContainerfile(string(data))
	if err != nil {
		return "", err
	}
	b, err := findGoBuild(stages)
	if err != nil {
		return "", err
	}
	ign, err := os.ReadFile(ignorefile)
	if err != nil {
		return "", err
	}
	ctx := filepath.Join(buildDir, "context")
	if err := copyContext("..", ctx, parseIgnore(string(ign))); err != nil {
		return "", fmt.Errorf("build context: %w", err)
	}
	out := filepath.Join(buildDir, "tearline")
	args := append([]string{"build"}, b.args...)
	for i, a := range args {
		if a == "-o" {
			args[i+1] = out
		}
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), args...)
	cmd.Dir = ctx
	// The golang image sets no GOFLAGS; GOTOOLCHAIN=local: never download a
	// toolchain in a test.
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOTOOLCHAIN=local")
	cmd.Env = append(cmd.Env, b.env...)
	start := time.Now()
	if outb, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s (env %v) in the build context: %w\n%s", strings.Join(args, " "), b.env, err, outb)
	}
	buildTook = time.Since(start)
	return out, nil
}

var buildTook time.Duration

// exampleConfig is deploy/node.example.yaml as the node reads it.
func exampleConfig(t *testing.T) *gateway.Config {
	t.Helper()
	cfg, err := gateway.LoadConfig("node.example.yaml")
	if err != nil {
		t.Fatalf("node.example.yaml: %v", err)
	}
	return cfg
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := splitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return p
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("no port")
	}
	p, err := strconv.Atoi(addr[i+1:])
	return addr[:i], p, err
}

// goModVersion is go.mod's go line.
func goModVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)\s*$`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return m[1]
}

func versionParts(v string) [3]int {
	var out [3]int
	for i, s := range strings.SplitN(v, ".", 3) {
		out[i], _ = strconv.Atoi(s)
	}
	return out
}

func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile(containerfile)
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseContainerfile(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	names := map[string]bool{}
	for _, st := range stages {
		if st.name != "" {
			names[st.name] = true
		}
		// FROM is pinned: a tag that is not latest, or a digest.
		img := st.image
		if names[img] && img == st.name {
			continue
		}
		if strings.Contains(img, "@sha256:") {
			continue
		}
		slash := strings.LastIndex(img, "/")
		_, tag, ok := strings.Cut(img[slash+1:], ":")
		if !ok || tag == "" || tag == "latest" {
			t.Errorf("FROM %s: pin a specific tag (not bare, not latest)", img)
		}
	}

	// The Go image: golang:X.Y.Z[-variant], at least go.mod's go line, same minor.
	b, err := findGoBuild(stages)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^(?:docker\.io/(?:library/)?)?golang:(\d+\.\d+\.\d+)(?:-[a-z0-9]+)?$`).FindStringSubmatch(b.stage.image)
	if m == nil {
		t.Errorf("build stage FROM %s: want golang:X.Y.Z[-variant], a patch release", b.stage.image)
	} else {
		img, mod := versionParts(m[1]), versionParts(goModVersion(t))
		if img[0] != mod[0] || img[1] != mod[1] || img[2] < mod[2] {
			t.Errorf("build stage Go %s does not match go.mod's go %s", m[1], goModVersion(t))
		}
		if tc := strings.TrimPrefix(runtime.Version(), "go"); tc != m[1] {
			t.Logf("note: the image builds with Go %s, this test with %s", m[1], tc)
		}
	}
	if v, _ := envValue(b.env, "CGO_ENABLED"); v != "0" {
		t.Errorf("go build without CGO_ENABLED=0 (env %v): the binary would not be static", b.env)
	}
	if !containsArg(b.args, "-trimpath") {
		t.Errorf("go build %v: want -trimpath", b.args)
	}
	if last := b.args[len(b.args)-1]; last != "./cmd/tearline" {
		t.Errorf("go build builds %s, want ./cmd/tearline", last)
	}

	// The final stage: non-root, the binary where ENTRYPOINT runs it.
	final := stages[len(stages)-1]
	users := final.all("USER")
	nonroot := strings.HasSuffix(final.image, ":nonroot") || strings.Contains(final.image, ":nonroot@")
	if len(users) > 0 {
		u, _, _ := strings.Cut(users[len(users)-1].args, ":")
		n, err := strconv.Atoi(u)
		nonroot = err == nil && n != 0
		if err != nil {
			t.Errorf("USER %s: want a numeric uid (runAsNonRoot can verify only numbers)", users[len(users)-1].args)
		}
	}
	if !nonroot {
		t.Errorf("final stage %s runs as root: want USER <uid != 0> or a :nonroot image", final.image)
	}
	var binDst string
	var copies []copyInstr
	for _, in := range final.all("COPY") {
		c, err := parseCopy(in)
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
		if c.from == b.stage.name && len(c.src) == 1 && c.src[0] == b.output {
			binDst = c.dst
		}
	}
	if binDst == "" {
		t.Fatalf("final stage does not COPY --from=%s %s (the go build output)", b.stage.name, b.output)
	}
	ep := final.all("ENTRYPOINT")
	if len(ep) != 1 {
		t.Fatalf("final stage: want one ENTRYPOINT, got %d", len(ep))
	}
	entry, err := execForm(ep[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(entry) != 1 || entry[0] != binDst {
		t.Errorf("ENTRYPOINT %v, but the binary is copied to %s", entry, binDst)
	}
	if binDst != "/usr/local/bin/tearline" {
		t.Errorf("binary at %s, want /usr/local/bin/tearline", binDst)
	}
	cmds := final.all("CMD")
	if len(cmds) != 1 {
		t.Fatalf("final stage: want one CMD, got %d", len(cmds))
	}
	cmd, err := execForm(cmds[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"node", "--config", "/etc/tearline/node.yaml"}; strings.Join(cmd, " ") != strings.Join(want, " ") {
		t.Errorf("CMD %v, want %v", cmd, want)
	}

	// EXPOSE covers the example's ports; the data_dir is a volume the
	// non-root user owns.
	cfg := exampleConfig(t)
	exposed := map[int]bool{}
	for _, in := range final.all("EXPOSE") {
		for _, f := range strings.Fields(in.args) {
			p, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
			if err != nil {
				t.Errorf("EXPOSE %s: not a port", f)
			}
			exposed[p] = true
		}
	}
	for _, addr := range []string{cfg.Listen, cfg.MetricsListen} {
		if addr != "" && !exposed[port(t, addr)] {
			t.Errorf("port %d of node.example.yaml (%s) is not in EXPOSE", port(t, addr), addr)
		}
	}
	var vol bool
	for _, in := range final.all("VOLUME") {
		v, err := execForm(in)
		if err != nil {
			t.Fatal(err)
		}
		vol = vol || containsArg(v, cfg.DataDir)
	}
	if !vol {
		t.Errorf("no VOLUME for the example's data_dir %s", cfg.DataDir)
	}
	var owned bool
	for _, c := range copies {
		if c.dst == cfg.DataDir && c.chown != "" && !strings.HasPrefix(c.chown, "0:") && !strings.HasPrefix(c.chown, "root") {
			owned = true
		}
	}
	if !owned {
		t.Errorf("%s is not created owned by the non-root user (COPY --chown=uid:gid ... %s): a fresh volume there would be root's", cfg.DataDir, cfg.DataDir)
	}
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// TestContainerBuild builds what can be built: the Containerfile's go build,
// from the build context its ignore file leaves, and checks the binary is
// static, so that it runs on a static image without a libc.
func TestContainerBuild(t *testing.T) {
	bin := builtBinary(t)
	t.Logf("go build as in the Containerfile: %s", buildTook.Round(time.Millisecond))
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a PT_INTERP program header: dynamically linked", bin)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
	out, err := exec.Command(bin, "node", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--config") {
		t.Errorf("%s node --help: %v\n%s", bin, err, out)
	}
}

func TestIgnoreRules(t *testing.T) {
	rules := parseIgnore("*\n!go.mod\n!cmd\n**/*_test.go\n**/testdata\ninternal/testvault\n!internal\ninternal/testvault\n")
	for rel, want := range map[string]bool{
		".git/config":                         true,
		"go.mod":                              false,
		"go.sum":                              true,
		"cmd/tearline/main.go":                false,
		"cmd/tearline/e2e_test.go":            true,
		"internal/freeport/freeport.go":       false,
		"internal/testvault/testvault.go":     true,
		"cmd/tearline/testdata/x/y.txt":       true,
		"gateway/config.go":                   true,
		"cmd/tearline/cli/testdata_helper.go": false,
	} {
		if got := ignored(rules, rel); got != want {
			t.Errorf("ignored(%s) = %v, want %v", rel, got, want)
		}
	}
}
