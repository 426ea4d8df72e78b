package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A `perf script -F pid,ip,sym` excerpt: pids padded to five places,
// frames leaf first, a generic symbol with spaces in it, and a sample
// without a call chain (its one frame on the pid's line).
const perfScript = `    0 
	ffffffff8224215b pv_native_safe_halt
	ffffffff82243c75 default_idle

 4242 
	4a1b2c runtime.memmove
	4a1b2d go.etcd.io/bbolt.(*node).write
	4a1b2e go.etcd.io/bbolt.(*Tx).write
	4a1b2f go.etcd.io/bbolt.(*Tx).Commit
	4a1b30 go.etcd.io/bbolt.(*DB).Update
	4a1b31 github.com/tearline/tearline/node/store.(*Store).commitGroup

 4242 
	4a1b40 google.golang.org/protobuf/internal/impl.(*MessageInfo).marshalAppendPointer
	4a1b41 google.golang.org/protobuf/proto.MarshalOptions.marshal
	4a1b42 github.com/tearline/tearline/node/store.put
	4a1b43 go.etcd.io/bbolt.(*DB).Update

 4242 
	4a1b50 go.etcd.io/bbolt.(*Cursor).search
	4a1b51 go.etcd.io/bbolt.(*Bucket).Put
	4a1b52 go.etcd.io/bbolt.(*DB).Update

 4242 
	4a1b58 github.com/tearline/tearline/node.(*Node).planRelease
	4a1b59 github.com/tearline/tearline/node.(*Node).Publish.func1
	4a1b5a go.etcd.io/bbolt.(*DB).Update

 4242 
	4a1b60 runtime.copystack
	4a1b61 runtime.newstack
	4a1b62 runtime.morestack.abi0

12345 
	4a1b70 github.com/tearline/tearline/internal/lru.(*Map[go.shape.struct { node.r *storev1.StoredReport },go.shape.*uint8]).Load
	4a1b71 github.com/tearline/tearline/node.viewMemo.view

 9999 
	4a1b80 runtime.memmove

 4242      7fc8e3a1b2c3 runtime.morestack.abi0
`

func TestPerfBreakdown(t *testing.T) {
	procs := map[int]string{4242: "USA", 12345: "GBR"}
	counts, total, err := countSamples(strings.NewReader(perfScript), procs)
	if err != nil {
		t.Fatal(err)
	}
	if total != 9 {
		t.Errorf("total = %d samples, want 9 (idle and other processes count too)", total)
	}
	want := map[int]map[string]int{
		4242: {
			"bbolt commit: writing and syncing pages": 1,
			"protobuf encoding":                       1,
			"bbolt reads and puts":                    1,
			"stack growth":                            2,
			otherCategory:                             1, // not bbolt: DB.Update is left out
		},
		12345: {otherCategory: 1},
	}
	if len(counts) != len(want) {
		t.Fatalf("counts for %d processes, want %d: %v", len(counts), len(want), counts)
	}
	for pid, w := range want {
		for c, n := range w {
			if counts[pid][c] != n {
				t.Errorf("pid %d %q: %d samples, want %d (all: %v)", pid, c, counts[pid][c], n, counts[pid])
			}
		}
		if len(counts[pid]) != len(w) {
			t.Errorf("pid %d: categories %v, want %v", pid, counts[pid], w)
		}
	}

	var out strings.Builder
	writeBreakdown(&out, counts, total, procs)
	for _, line := range []string{
		"perf record -a -g: 9 samples over every CPU (idle included)",
		"GBR (pid 12345): 1 samples, 11.1 % of all",
		"USA (pid 4242): 6 samples, 66.7 % of all",
		"   33.3 %  stack growth",
		"   16.7 %  bbolt commit: writing and syncing pages",
		"  100.0 %  other",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("breakdown lacks %q:\n%s", line, out.String())
		}
	}
	if strings.Index(out.String(), "GBR") > strings.Index(out.String(), "USA") {
		t.Errorf("processes not in name order:\n%s", out.String())
	}
}

func TestPerfBreakdownRefusesOtherOutput(t *testing.T) {
	_, _, err := countSamples(strings.NewReader("tearline 4242 [001] 12.5: cycles:\n"), map[int]string{})
	if err == nil || !strings.Contains(err.Error(), "unexpected line") {
		t.Fatalf("err = %v, want the unexpected line named", err)
	}
}

// TestPerfBreakdownStopsPerfScript: output it cannot read is an error, and
// perf script, which would go on writing into a pipe nobody reads, is
// stopped (a fake perf on the PATH writes lines without end).
func TestPerfBreakdownStopsPerfScript(t *testing.T) {
	bin := t.TempDir()
	fake := "#!/bin/sh\nexec yes 'not a perf script line'\n"
	if err := os.WriteFile(filepath.Join(bin, "perf"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	p := &perfRecord{data: filepath.Join(t.TempDir(), "x.perf.data")}
	done := make(chan error, 1)
	go func() { done <- p.breakdown(filepath.Join(t.TempDir(), "x.txt"), map[int]string{}) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unexpected line") {
			t.Fatalf("err = %v, want the unexpected line named", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("breakdown still waits for perf script after 20 s")
	}
}
