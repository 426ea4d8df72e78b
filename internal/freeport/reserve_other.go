//go:build !unix

package freeport

// reserve does nothing here: ports are not reserved across processes.
func reserve(port int) (release func(), ok bool) { return func() {}, true }
