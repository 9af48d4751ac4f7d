package keyvalue

import (
	"errors"
	"fmt"
	"testing"

	"lattice.dev/actor/msgpack"
)

// The package builds its messages without fmt (to keep modules small); these
// tests check them against the fmt format strings they replaced.
func TestMessagesAreFmts(t *testing.T) {
	recording(t, []byte{0xa1, 'x'})
	_, err := Increment("n", 1)
	inner := errors.Unwrap(err)
	var te *msgpack.TypeError
	if inner == nil || !errors.As(err, &te) {
		t.Fatalf("%v does not wrap the decoder's error", err)
	}
	want := fmt.Errorf("could not decode msgpack: the reply to %s %s is not %s: %w", Contract, OpIncrement, "an int64", inner).Error()
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}

	for _, c := range []struct {
		target msgpack.Unmarshaler
		data   []byte
		field  string
	}{
		{new(GetRequest), []byte{0x80}, "key"},
		{new(KeyRequest), []byte{0x80}, "key"},
		{new(GetResponse), []byte{0x80}, "found"},
		{new(SetRequest), []byte{0x80}, "key"},
		{new(IncrementRequest), []byte{0x80}, "key"},
		{new(IncrementRequest), cat([]byte{0x81}, s("key"), s("k")), "delta"},
	} {
		err := msgpack.Unmarshal(c.data, c.target)
		if want := fmt.Errorf("missing field %q", c.field).Error(); err == nil || err.Error() != want {
			t.Errorf("%T: got %v, want %q", c.target, err, want)
		}
	}
}
