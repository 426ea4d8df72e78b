//go:build !linux

package pki

import (
	"errors"
	"io/fs"
)

// exchange is Linux-only (renameat2): elsewhere a profile's files are
// replaced one by one.
func exchange(a, b string) error { return errors.ErrUnsupported }

func swapUnsupported(err error) bool { return errors.Is(err, errors.ErrUnsupported) }

func chownLike(path string, st fs.FileInfo) error { return nil }

func hasACL(path string) bool { return false }

// lockDir locks nothing here, so leftovers are not removed.
func lockDir(dir string) (unlock func(), locked bool) { return func() {}, false }

func isEINVAL(err error) bool { return false }
