// Command eso runs the External Secrets Operator controller exactly as its
// own main package does (tests only; never shipped): v0.20.4 is the last
// single-module release, built here from the Go module proxy.
package main

import "github.com/external-secrets/external-secrets/cmd/controller"

func main() {
	controller.Execute()
}
