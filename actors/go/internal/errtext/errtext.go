// Package errtext builds the SDK's messages without package fmt: a program
// that links fmt grows by about half a megabyte, a lot for an actor.
package errtext

import "reflect"

// TypeName returns what fmt's %T prints for v: "<nil>" for a nil interface,
// else the dynamic type's name, e.g. "string", "main.Order", "[]string",
// "map[string]interface {}".
func TypeName(v any) string {
	if v == nil {
		return "<nil>"
	}
	return reflect.TypeOf(v).String()
}

// Wrap returns an error whose message is prefix followed by err's message and
// which unwraps to err (for errors.Is and errors.As), like
// fmt.Errorf(prefix+"%w", err).
func Wrap(prefix string, err error) error {
	return &wrapError{msg: prefix + err.Error(), err: err}
}

type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

// Hex2 returns b as two lowercase hex digits, like fmt's %02x.
func Hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0x0f]})
}
