//go:build !wasip1

package actor

import "os"

// Outside a Lattice host (go test on the build machine) there is nobody to
// call: host calls fail with ErrNoHost unless MockHost installed a stand-in,
// and log lines go to stderr.

func hostCall(_, _, _ string, _ []byte) ([]byte, error) { return nil, ErrNoHost }

func consoleLog(message string) { os.Stderr.WriteString(message + "\n") }

// lastGuestError is what a panicking handler reported, for tests.
var lastGuestError string

func setGuestError(message string) { lastGuestError = message }
