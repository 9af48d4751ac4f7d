package httpserver

import (
	"fmt"
	"testing"

	"lattice.dev/actor/msgpack"
)

// The package builds its messages without fmt (to keep modules small); these
// tests check them against the fmt format strings they replaced.
func TestMessagesAreFmts(t *testing.T) {
	str := func(s string) []byte { b, _ := msgpack.Marshal(s); return b }
	for _, c := range []struct {
		target msgpack.Unmarshaler
		data   []byte
		field  string
	}{
		{new(Request), []byte{0x80}, "method"},
		{new(Request), append(append([]byte{0x81}, str("method")...), str("GET")...), "path"},
		{new(Response), []byte{0x80}, "status"},
	} {
		err := msgpack.Unmarshal(c.data, c.target)
		if want := fmt.Errorf("missing field %q", c.field).Error(); err == nil || err.Error() != want {
			t.Errorf("%T: got %v, want %q", c.target, err, want)
		}
	}
	for _, status := range []int{-1, -600} {
		_, err := Response{Status: status}.Encode()
		if want := fmt.Errorf("invalid HTTP status %d", status).Error(); err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}
