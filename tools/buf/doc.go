// Package buf pins the buf CLI in a module of its own, so that buf's
// dependency graph never moves the protobuf runtime or generator versions
// pinned in ../go.mod.
package buf
