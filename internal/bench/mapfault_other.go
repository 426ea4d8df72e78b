//go:build !linux

package bench

// mapFaultKiB is measured on Linux only (the bench reads /proc).
func mapFaultKiB(string) (float64, error) { return 0, nil }
