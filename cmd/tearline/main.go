// Command tearline runs a Tearline node, a local development federation,
// and the client verbs that talk to a node. All of it lives in package cli,
// which tests run in-process.
package main

import (
	"os"

	"github.com/tearline/tearline/cmd/tearline/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
