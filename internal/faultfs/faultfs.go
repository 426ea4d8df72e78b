// Package faultfs gives fault-injection tests a small disk of their own: a
// size-limited tmpfs mounted on a folder, which a test fills to the last
// byte (so that writes fail with ENOSPC) or remounts read-only (EROFS).
// Mounting needs root (CAP_SYS_ADMIN); Available says whether it works.
package faultfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Available reports whether this process can mount a tmpfs, and if not why.
func Available() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "mounting a tmpfs needs root"
	}
	if _, err := exec.LookPath("mount"); err != nil {
		return false, "no mount command"
	}
	return true, ""
}

// Mount mounts a tmpfs of size bytes on dir (created if needed).
func Mount(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return run("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir)
}

// Unmount unmounts dir.
func Unmount(dir string) error { return run("umount", dir) }

// SetReadOnly remounts dir's tmpfs read-only (ro) or read-write. The kernel
// refuses to make a file system read-only while a file on it is open for
// writing (EBUSY): stop the process that holds the store first.
func SetReadOnly(dir string, ro bool) error {
	mode := "rw"
	if ro {
		mode = "ro"
	}
	return run("mount", "-o", "remount,"+mode, dir)
}

// FillName is the file Fill writes.
const FillName = "faultfs-filler"

// Fill writes a file into dir until the file system has no byte left, and
// returns how many bytes it wrote. Remove the file (Free) to give the space
// back.
func Fill(dir string) (int64, error) {
	f, err := os.OpenFile(filepath.Join(dir, FillName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Free removes what Fill wrote.
func Free(dir string) error { return os.Remove(filepath.Join(dir, FillName)) }

// MountT mounts a tmpfs of size bytes on dir for the rest of test t. On
// cleanup, before is called (to stop what uses the folder), the mount is
// made writable again and unmounted; a mount that is still busy then is
// detached lazily, so that no mount outlives the test.
func MountT(t testing.TB, dir string, size int64, before func()) {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skipf("faultfs: %s", why)
	}
	if err := Mount(dir, size); err != nil {
		t.Fatalf("faultfs: %v", err)
	}
	t.Cleanup(func() {
		if before != nil {
			before()
		}
		_ = SetReadOnly(dir, false)
		if err := Unmount(dir); err != nil {
			t.Errorf("faultfs: %v; detaching it lazily", err)
			_ = run("umount", "-l", dir)
		}
	})
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
