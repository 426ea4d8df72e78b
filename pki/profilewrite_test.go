package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tearline/tearline/internal/fsizelimit"
)

// entry is one file of a folder as a test compares it.
type entry struct {
	mode fs.FileMode
	data string
}

// snapshot reads dir's entries (not following a symlink among them), with
// the contents of its regular files.
func snapshot(t *testing.T, dir string) map[string]entry {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]entry{}
	for _, de := range des {
		fi, err := os.Lstat(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		e := entry{mode: fi.Mode()}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(filepath.Join(dir, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			e.data = string(data)
		}
		m[de.Name()] = e
	}
	return m
}

func names(m map[string]entry) []string {
	var s []string
	for n := range m {
		s = append(s, n)
	}
	sort.Strings(s)
	return s
}

func sameSnapshot(t *testing.T, what string, got, want map[string]entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s holds %v, want %v", what, names(got), names(want))
	}
	for n, w := range want {
		if g, ok := got[n]; !ok || g != w {
			t.Fatalf("%s: %s is %v (%d bytes), want %v (%d bytes)", what, n, g.mode, len(g.data), w.mode, len(w.data))
		}
	}
}

// wantProfile checks that dir holds exactly is and bundle as a profile, with
// the profile's modes, plus the other entries named in also.
func wantProfile(t *testing.T, dir string, is *Issued, bundle []*x509.Certificate, also ...string) {
	t.Helper()
	keyPEM, err := encodeKeyPEM(is.Key)
	if err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, dir)
	want := map[string]entry{
		ProfileKeyFile:  {0o600, string(keyPEM)},
		ProfileCertFile: {0o644, string(encodeCertsPEM(is.Chain))},
		ProfileCAFile:   {0o644, string(encodeCertsPEM(bundle))},
	}
	for _, n := range also {
		want[n] = got[n]
	}
	sameSnapshot(t, dir, got, want)
}

// TestWriteProfileFailsMidway: when a write fails halfway through a new
// profile (the key written, the certificate not), the old profile is left
// byte for byte, and no temporary file or folder is left beside or in it.
func TestWriteProfileFailsMidway(t *testing.T) {
	f := newFederation(t)
	id := mustID(t, "GBR", KindOfficer, "j.smith")
	bundle := []*x509.Certificate{f.gbr.Certificate()}
	old, next := issue(t, f.gbr, id, time.Hour), issue(t, f.gbr, id, time.Hour)
	keyPEM, err := encodeKeyPEM(next.Key)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 300 // the key fits, the certificate does not
	if len(keyPEM) >= limit || len(encodeCertsPEM(next.Chain)) <= limit {
		t.Fatalf("key %d bytes, certificate %d: the limit %d does not fall between", len(keyPEM), len(encodeCertsPEM(next.Chain)), limit)
	}
	for _, tc := range []struct {
		name string
		// prepare returns the folder to write to, given a fresh parent.
		prepare func(t *testing.T, parent string) string
	}{
		{"folder holding only the profile", func(t *testing.T, parent string) string {
			return filepath.Join(parent, "profile")
		}},
		{"folder shared with other files", func(t *testing.T, parent string) string {
			dir := filepath.Join(parent, "usa")
			if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte("party: USA\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"symlink to the folder", func(t *testing.T, parent string) string {
			if err := os.Mkdir(filepath.Join(parent, "real"), 0o750); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(parent, "link")
			if err := os.Symlink("real", link); err != nil {
				t.Fatal(err)
			}
			return link
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := tc.prepare(t, parent)
			if err := WriteProfile(dir, old, bundle); err != nil {
				t.Fatal(err)
			}
			beforeParent, beforeDir := snapshot(t, parent), snapshot(t, dir)

			restore := fsizelimit.Set(t, limit)
			err := WriteProfile(dir, next, bundle)
			restore()
			if !errors.Is(err, syscall.EFBIG) {
				t.Fatalf("WriteProfile with the disk full halfway: %v, want EFBIG", err)
			}
			sameSnapshot(t, "the profile's folder", snapshot(t, dir), beforeDir)
			sameSnapshot(t, "its parent", snapshot(t, parent), beforeParent)
			if p, err := LoadProfile(dir); err != nil || !p.Cert.Leaf.Equal(old.Chain[0]) {
				t.Fatalf("the old profile does not load: %v", err)
			}
		})
	}
}

// TestWriteProfileReplacesWhole: a reader that loads the profile while it
// is written, first or again, finds no profile or a whole one (old or new),
// never a mix; afterwards the folder holds exactly the new profile with the
// profile's modes, keeps its own mode, and nothing temporary is left.
func TestWriteProfileReplacesWhole(t *testing.T) {
	f := newFederation(t)
	id := mustID(t, "GBR", KindOfficer, "j.smith")
	bundle := []*x509.Certificate{f.gbr.Certificate()}
	profiles := []*Issued{issue(t, f.gbr, id, time.Hour), issue(t, f.gbr, id, time.Hour)}
	const rounds = 60

	// reader loads the profile in *dir until stop, and reports what it saw
	// that was neither no profile (absent allowed) nor a whole one.
	reader := func(dir *atomic.Pointer[string], absentOK bool, stop <-chan struct{}) <-chan error {
		done := make(chan error, 1)
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := *dir.Load()
				if absentOK {
					// A folder written once: files only appear, so a file
					// missing after another was seen means a part of a
					// profile was there (the order is the one files were
					// written in before writes were atomic).
					seen, partial := 0, false
					for _, name := range []string{ProfileKeyFile, ProfileCertFile, ProfileCAFile} {
						if _, err := os.Stat(filepath.Join(d, name)); err == nil {
							seen++
						} else if seen > 0 {
							partial = true
						}
					}
					if partial {
						done <- fmt.Errorf("%s held part of a profile", d)
						return
					}
					if seen < 3 {
						continue
					}
				}
				p, err := LoadProfile(d)
				if err == nil {
					if !p.Cert.Leaf.Equal(profiles[0].Chain[0]) && !p.Cert.Leaf.Equal(profiles[1].Chain[0]) {
						done <- errors.New("loaded a certificate that was never written")
						return
					}
					continue
				}
				done <- err
				return
			}
		}()
		return done
	}

	t.Run("first write", func(t *testing.T) {
		parent := t.TempDir()
		var dir atomic.Pointer[string]
		first := filepath.Join(parent, "p00")
		dir.Store(&first)
		stop := make(chan struct{})
		done := reader(&dir, true, stop)
		for i := range rounds {
			d := filepath.Join(parent, fmt.Sprintf("p%02d", i))
			dir.Store(&d)
			if err := WriteProfile(d, profiles[i%2], bundle); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(d)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("new profile folder: %v, %v; want mode 0700", fi, err)
			}
			wantProfile(t, d, profiles[i%2], bundle)
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("a reader saw part of a profile being written: %v", err)
		}
		if got := len(snapshot(t, parent)); got != rounds {
			t.Fatalf("%d entries beside the profiles, want %d profiles and nothing else", got, rounds)
		}
	})

	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, parent string) (dir, real string)
	}{
		{"again", func(t *testing.T, parent string) (string, string) {
			dir := filepath.Join(parent, "profile")
			return dir, dir
		}},
		{"again through a symlink", func(t *testing.T, parent string) (string, string) {
			real := filepath.Join(parent, "real")
			if err := os.Mkdir(real, 0o700); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(parent, "link")
			if err := os.Symlink("real", link); err != nil {
				t.Fatal(err)
			}
			return link, real
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			d, real := tc.prepare(t, parent)
			if err := WriteProfile(d, profiles[1], bundle); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(real, 0o750); err != nil {
				t.Fatal(err)
			}
			beside := names(snapshot(t, parent))
			var dir atomic.Pointer[string]
			dir.Store(&d)
			stop := make(chan struct{})
			done := reader(&dir, false, stop)
			for i := range rounds {
				if err := WriteProfile(d, profiles[i%2], bundle); err != nil {
					t.Fatal(err)
				}
			}
			close(stop)
			if err := <-done; err != nil {
				t.Fatalf("a reader saw a mix of two profiles: %v", err)
			}
			wantProfile(t, d, profiles[(rounds-1)%2], bundle)
			if fi, err := os.Stat(real); err != nil || fi.Mode().Perm() != 0o750 {
				t.Fatalf("the profile's folder: %v, %v; want it to keep mode 0750", fi, err)
			}
			if fi, err := os.Lstat(d); err != nil || (d != real && fi.Mode()&fs.ModeSymlink == 0) {
				t.Fatalf("%s: %v, %v; want the symlink kept", d, fi, err)
			}
			if got := names(snapshot(t, parent)); !slices.Equal(got, beside) {
				t.Fatalf("beside the profile: %v, want %v", got, beside)
			}
		})
	}

	t.Run("in a folder shared with other files", func(t *testing.T) {
		// Such a folder (a dev party's, holding its node.yaml) cannot be
		// swapped whole: its files are replaced one by one.
		parent := t.TempDir()
		d := filepath.Join(parent, "usa")
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "node.yaml"), []byte("party: USA\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := WriteProfile(d, profiles[i%2], bundle); err != nil {
				t.Fatal(err)
			}
			wantProfile(t, d, profiles[i%2], bundle, "node.yaml", "data")
		}
		if got := names(snapshot(t, parent)); len(got) != 1 {
			t.Fatalf("beside the profile: %v", got)
		}
	})
}

// TestWriteProfileFilesPutBack: where the profile's files are replaced one
// by one (a folder shared with other files), a rename that fails puts back
// the old files already replaced.
func TestWriteProfileFilesPutBack(t *testing.T) {
	f := newFederation(t)
	id := mustID(t, "GBR", KindOfficer, "j.smith")
	bundle := []*x509.Certificate{f.gbr.Certificate()}
	old, next := issue(t, f.gbr, id, time.Hour), issue(t, f.gbr, id, time.Hour)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte("party: GBR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteProfile(dir, old, bundle); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	calls := 0
	renameFile = func(from, to string) error {
		if calls++; calls == 2 {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.EIO}
		}
		return os.Rename(from, to)
	}
	t.Cleanup(func() { renameFile = os.Rename })
	if err := WriteProfile(dir, next, bundle); !errors.Is(err, syscall.EIO) {
		t.Fatalf("WriteProfile with the second rename failing: %v, want EIO", err)
	}
	if calls != 2 {
		t.Fatalf("%d renames, want 2", calls)
	}
	sameSnapshot(t, "the profile's folder", snapshot(t, dir), before)
}

// TestWriteProfileRemovesLeftovers: the staging folders a crashed writer
// left beside and inside the profile's folder (holding keys) are removed by
// the next write; anything else is kept.
func TestWriteProfileRemovesLeftovers(t *testing.T) {
	f := newFederation(t)
	id := mustID(t, "GBR", KindOfficer, "j.smith")
	bundle := []*x509.Certificate{f.gbr.Certificate()}
	is := issue(t, f.gbr, id, time.Hour)
	parent := t.TempDir()
	dir := filepath.Join(parent, "profile")
	if err := WriteProfile(dir, is, bundle); err != nil {
		t.Fatal(err)
	}
	mkLeftover := func(path string, files ...string) {
		t.Helper()
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if err := os.WriteFile(filepath.Join(path, name), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkLeftover(filepath.Join(parent, ".profile"+stagingMark+"123"), ProfileKeyFile, ProfileCertFile)
	mkLeftover(filepath.Join(dir, stagingMark+"456"), ProfileKeyFile, ProfileKeyFile+oldSuffix)
	mkLeftover(filepath.Join(parent, ".profile"+stagingMark+"789"), ProfileKeyFile, "notes.txt")
	mkLeftover(filepath.Join(parent, ".other"+stagingMark+"1"), ProfileKeyFile)
	if err := WriteProfile(dir, is, bundle); err != nil {
		t.Fatal(err)
	}
	wantProfile(t, dir, is, bundle)
	if got, want := names(snapshot(t, parent)), []string{".other" + stagingMark + "1", ".profile" + stagingMark + "789", "profile"}; !slices.Equal(got, want) {
		t.Fatalf("beside the profile: %v, want %v", got, want)
	}
	if got := names(snapshot(t, filepath.Join(parent, ".profile"+stagingMark+"789"))); !slices.Equal(got, []string{"notes.txt"}) {
		t.Fatalf("a leftover holding a file not ours: %v left, want notes.txt", got)
	}
}

// TestWriteProfileCrashBetweenRenames: a writer that replaces a shared
// folder's files one by one and crashes between two renames leaves a new
// key beside the old certificate. The next write's clean-up puts the old
// files back rather than deleting the only copy of the old key; a writer
// that crashed after its last rename keeps the new profile.
func TestWriteProfileCrashBetweenRenames(t *testing.T) {
	f := newFederation(t)
	bundle := []*x509.Certificate{f.gbr.Certificate()}
	oldP := issue(t, f.gbr, mustID(t, "GBR", KindOfficer, "j.smith"), time.Hour)
	newP := issue(t, f.gbr, mustID(t, "GBR", KindOfficer, "j.smith"), time.Hour)
	for _, crashAfter := range []int{1, 3} {
		t.Run(fmt.Sprintf("after %d renames", crashAfter), func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "party")
			if err := WriteProfile(dir, oldP, bundle); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			// The crashed writer's state: the old files kept as .old in a
			// staging folder inside, the new profile staged beside them,
			// and crashAfter of its files renamed into place.
			staged := filepath.Join(parent, "staged")
			if err := WriteProfile(staged, newP, bundle); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, stagingMark+"crash")
			if err := os.Mkdir(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			for i, name := range []string{ProfileKeyFile, ProfileCertFile, ProfileCAFile} {
				if err := os.Link(filepath.Join(dir, name), filepath.Join(tmp, name+oldSuffix)); err != nil {
					t.Fatal(err)
				}
				if i < crashAfter {
					if err := os.Rename(filepath.Join(staged, name), filepath.Join(dir, name)); err != nil {
						t.Fatal(err)
					}
				}
			}
			removeLeftovers(parent, "party")
			want := oldP
			if crashAfter == 3 {
				want = newP
			}
			p, err := LoadProfile(dir)
			if err != nil {
				t.Fatalf("after the clean-up the profile does not load: %v", err)
			}
			if !p.Cert.Leaf.Equal(want.Chain[0]) {
				t.Fatalf("after the clean-up the profile is the other one (crash after %d renames)", crashAfter)
			}
			if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the staging folder is left: %v", err)
			}
		})
	}
}
