// Package fmtcheck helps the SDK's tests check messages built without fmt
// (to keep actor modules small) against the fmt format strings they replaced.
// Only test files import it, so it never reaches an actor module.
package fmtcheck

import (
	"errors"
	"fmt"
	"testing"
)

// Wraps checks err's message against fmt.Errorf(format, args..., inner),
// where inner is what err unwraps to, and that errors.Is finds inner.
func Wraps(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", format)
	}
	inner := errors.Unwrap(err)
	if inner == nil || !errors.Is(err, inner) {
		t.Fatalf("%q does not wrap an error", err)
	}
	if want := fmt.Errorf(format, append(args, inner)...).Error(); err.Error() != want {
		t.Errorf("message\n got %q\nwant %q", err, want)
	}
}
