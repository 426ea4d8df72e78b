package pki

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// exchange swaps the folders a and b in one step (renameat2 with
// RENAME_EXCHANGE, Linux 3.15 and later, on file systems that support it).
func exchange(a, b string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		return &os.LinkError{Op: "exchange", Old: a, New: b, Err: err}
	}
	return nil
}

// swapUnsupported says whether exchange failed because it cannot be done
// there (kernel or file system without RENAME_EXCHANGE, a mount point, a
// folder the writer may not move), rather than for a passing reason.
func swapUnsupported(err error) bool {
	for _, e := range []error{unix.ENOSYS, unix.EINVAL, unix.ENOTSUP, unix.EOPNOTSUPP, unix.EXDEV, unix.EBUSY, unix.EPERM, unix.EACCES} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// chownLike gives path the owner and group of st if they differ from its
// own (which needs privilege, or membership of the group).
func chownLike(path string, st fs.FileInfo) error {
	want, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("no owner known")
	}
	var have unix.Stat_t
	if err := unix.Lstat(path, &have); err != nil {
		return err
	}
	if have.Uid == want.Uid && have.Gid == want.Gid {
		return nil
	}
	return os.Lchown(path, int(want.Uid), int(want.Gid))
}

// hasACL says whether path carries a POSIX ACL, which a new folder would
// not have. A file system without extended attributes has none.
func hasACL(path string) bool {
	buf := make([]byte, 4096)
	n, err := unix.Listxattr(path, buf)
	if errors.Is(err, unix.ERANGE) {
		return true // too many attributes to list here: assume the worst
	}
	if err != nil {
		return false
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if strings.HasPrefix(name, "system.posix_acl_") {
			return true
		}
	}
	return false
}

// lockDir takes an exclusive flock on dir, held until unlock; locked is
// false if it could not be taken (then unlock does nothing).
func lockDir(dir string) (unlock func(), locked bool) {
	f, err := os.Open(dir)
	if err != nil {
		return func() {}, false
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return func() {}, false
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, true
}

func isEINVAL(err error) bool { return errors.Is(err, unix.EINVAL) }
