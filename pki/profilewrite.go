package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// How a profile folder is written (WriteProfile).
//
// Every file of the new profile is written, fsynced, into a fresh staging
// folder first; nothing in the profile's folder changes until all of them
// are on disk. Then:
//
//   - a folder that does not exist yet: the staging folder, a sibling, is
//     renamed to it;
//   - a folder that holds the profile's files and nothing else: the staging
//     folder, a sibling with the old folder's mode and owner, is exchanged
//     with it in one renameat2(RENAME_EXCHANGE), so the path names the whole
//     old profile until that instant and the whole new one after; the old
//     profile, now in the staging folder, is removed;
//   - otherwise (the folder holds other files, such as a dev party's
//     node.yaml and data, which a swap would take away; it carries POSIX
//     ACLs a new folder would not; its owner cannot be given to a new
//     folder; its parent is not writable; the file system or kernel cannot
//     exchange, or the folder is a mount point): the staging folder is made
//     inside the folder, and its files are renamed over the old ones one by
//     one, each atomically; if a rename fails, the old files (kept as hard
//     links) are put back. A reader may then see a mix for an instant.
//
// A symlink to the folder is followed and kept: the folder it names is
// written. Staging folders are named ".<folder>.tearline-tmp-*" beside the
// folder and ".tearline-tmp-*" inside it, hidden and never a profile's path;
// one left by a crash is removed by the next write, under a lock on the
// parent folder so that two writers do not remove each other's.

// stagingMark is in the name of every staging folder.
const stagingMark = ".tearline-tmp-"

// oldSuffix names an old profile file kept in a staging folder while its new
// version is renamed into place.
const oldSuffix = ".old"

// errNoSwap says that a profile folder cannot be swapped whole: its files
// are replaced one by one instead.
var errNoSwap = errors.New("profile folder cannot be swapped whole")

// profileFile is one file of a profile, with its mode.
type profileFile struct {
	name string
	data []byte
	perm os.FileMode
}

// renameFile renames one profile file into place; tests make it fail.
var renameFile = os.Rename

func writeProfileFiles(dir string, files []profileFile) error {
	target, err := resolveProfileDir(dir)
	if err != nil {
		return err
	}
	parent, base := filepath.Dir(target), filepath.Base(target)
	unlock, locked := lockDir(parent)
	defer unlock()
	if locked {
		removeLeftovers(parent, base)
	}
	st, err := os.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createProfileDir(parent, base, files)
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s is not a folder", dir)
	}
	err = swapProfileDir(parent, base, st, files)
	if !errors.Is(err, errNoSwap) {
		return err
	}
	return replaceProfileFiles(target, files)
}

// resolveProfileDir returns dir's absolute path with symlinks resolved. If
// dir does not exist, its parent is created (0700) and resolved.
func resolveProfileDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return real, err
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", fmt.Errorf("%s is a symlink to nothing", dir)
	}
	parent := filepath.Dir(abs)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	if parent, err = filepath.EvalSymlinks(parent); err != nil {
		return "", err
	}
	return filepath.Join(parent, filepath.Base(abs)), nil
}

// createProfileDir writes a profile folder that does not exist yet.
func createProfileDir(parent, base string, files []profileFile) error {
	tmp, err := os.MkdirTemp(parent, "."+base+stagingMark+"*")
	if err != nil {
		return err
	}
	target := filepath.Join(parent, base)
	if err := fillStaging(tmp, files); err != nil {
		removeStaging(tmp)
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		removeStaging(tmp)
		return err
	}
	if err := syncDir(parent); err != nil {
		if os.Rename(target, tmp) == nil {
			removeStaging(tmp)
			return err
		}
	}
	return nil
}

// swapProfileDir replaces a folder holding only a profile by a new folder
// holding the new one, in one exchange. It returns errNoSwap, having changed
// nothing, where that cannot be done.
func swapProfileDir(parent, base string, st fs.FileInfo, files []profileFile) error {
	target := filepath.Join(parent, base)
	if err := swappable(target, files); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+base+stagingMark+"*")
	if err != nil {
		return fmt.Errorf("%w: %w", errNoSwap, err)
	}
	if err := fillStaging(tmp, files); err != nil {
		removeStaging(tmp)
		return err
	}
	// The new folder takes the old one's owner, then its mode (chown
	// clears setgid). The files are the writer's, as when each is replaced.
	if err := chownLike(tmp, st); err != nil {
		removeStaging(tmp)
		return fmt.Errorf("%w: %w", errNoSwap, err)
	}
	if err := os.Chmod(tmp, st.Mode()&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		removeStaging(tmp)
		return err
	}
	if err := syncDir(tmp); err != nil {
		removeStaging(tmp)
		return err
	}
	if err := exchange(tmp, target); err != nil {
		removeStaging(tmp)
		if swapUnsupported(err) {
			return fmt.Errorf("%w: %w", errNoSwap, err)
		}
		return err
	}
	// Now tmp holds the old profile.
	if err := syncDir(parent); err != nil {
		if exchange(tmp, target) == nil {
			removeStaging(tmp)
			return err
		}
		// The new profile stays: it is in place, if perhaps not yet
		// durable.
	}
	removeStaging(tmp)
	return nil
}

// swappable says whether target holds a profile and nothing else (no other
// file, no folder, no symlink), and carries no ACL: a folder that a new one
// can replace whole.
func swappable(target string, files []profileFile) error {
	des, err := os.ReadDir(target)
	if err != nil {
		return err
	}
	for _, de := range des {
		if !isProfileFile(de.Name(), files) || !de.Type().IsRegular() {
			return fmt.Errorf("%w: %s holds %s", errNoSwap, target, de.Name())
		}
	}
	if hasACL(target) {
		return fmt.Errorf("%w: %s has an ACL", errNoSwap, target)
	}
	return nil
}

// replaceProfileFiles replaces the profile files in target one by one, each
// by rename from a staging folder inside target, and puts the old ones back
// if a rename fails.
func replaceProfileFiles(target string, files []profileFile) error {
	tmp, err := os.MkdirTemp(target, stagingMark+"*")
	if err != nil {
		return err
	}
	defer removeStaging(tmp)
	if err := fillStaging(tmp, files); err != nil {
		return err
	}
	kept := map[string]bool{}
	for _, f := range files {
		switch err := os.Link(filepath.Join(target, f.name), filepath.Join(tmp, f.name+oldSuffix)); {
		case err == nil:
			kept[f.name] = true
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	putBack := func(done []profileFile) {
		for _, f := range done {
			if kept[f.name] {
				_ = os.Rename(filepath.Join(tmp, f.name+oldSuffix), filepath.Join(target, f.name))
			} else {
				_ = os.Remove(filepath.Join(target, f.name))
			}
		}
		_ = syncDir(target)
	}
	for i, f := range files {
		if err := renameFile(filepath.Join(tmp, f.name), filepath.Join(target, f.name)); err != nil {
			putBack(files[:i])
			return err
		}
	}
	if err := syncDir(target); err != nil {
		putBack(files)
		return err
	}
	return nil
}

// fillStaging writes files into the staging folder tmp, each created
// owner-only, given its mode, and fsynced.
func fillStaging(tmp string, files []profileFile) error {
	for _, f := range files {
		if err := writeNewFile(filepath.Join(tmp, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// writeNewFile creates path with data: owner-only until written, then with
// mode perm, whatever the umask.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm&0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a folder's entries durable. File systems that cannot fsync
// a folder are let be.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errors.ErrUnsupported) || isEINVAL(err) {
		return nil
	}
	return err
}

func isProfileFile(name string, files []profileFile) bool {
	for _, f := range files {
		if name == f.name {
			return true
		}
	}
	return false
}

// removeStaging removes a staging folder: the profile files and kept old
// files in it, then the folder if that leaves it empty. Anything else in it
// is not ours, and stays.
func removeStaging(tmp string) {
	for _, name := range []string{ProfileKeyFile, ProfileCertFile, ProfileCAFile} {
		_ = os.Remove(filepath.Join(tmp, name))
		_ = os.Remove(filepath.Join(tmp, name+oldSuffix))
	}
	_ = os.Remove(tmp)
}

// removeLeftovers removes the staging folders that a writer of the profile
// folder parent/base left when it crashed. A writer that replaced the
// files one by one may have crashed between two renames, leaving a new
// key beside an old certificate: if the folder's profile does not load and
// the staging folder inside it kept the old files, they are put back first.
func removeLeftovers(parent, base string) {
	dir := filepath.Join(parent, base)
	for _, where := range []struct{ dir, prefix string }{
		{parent, "." + base + stagingMark},
		{dir, stagingMark},
	} {
		des, err := os.ReadDir(where.dir)
		if err != nil {
			continue
		}
		for _, de := range des {
			if !de.IsDir() || !strings.HasPrefix(de.Name(), where.prefix) {
				continue
			}
			tmp := filepath.Join(where.dir, de.Name())
			if where.dir == dir {
				if _, err := loadProfile(dir); err != nil {
					restoreOld(tmp, dir)
				}
			}
			removeStaging(tmp)
		}
	}
}

// restoreOld puts back into dir the profile files a one-by-one writer kept
// in its staging folder tmp (as NAME.old) before it replaced them.
func restoreOld(tmp, dir string) {
	for _, name := range []string{ProfileKeyFile, ProfileCertFile, ProfileCAFile} {
		old := filepath.Join(tmp, name+oldSuffix)
		if _, err := os.Lstat(old); err == nil {
			_ = os.Rename(old, filepath.Join(dir, name))
		}
	}
	_ = syncDir(dir)
}
