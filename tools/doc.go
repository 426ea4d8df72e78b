// Package tools pins the code generators and checkers that the Makefile
// builds from the Go module proxy. It holds no code of its own: the versions
// live in this folder's go.mod and go.sum, apart from the product's go.mod,
// so that buf's dependencies never reach the product.
package tools
