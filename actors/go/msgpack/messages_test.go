package msgpack

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"lattice.dev/actor/internal/fmtcheck"
)

// The package builds its messages without fmt (to keep modules small); these
// tests check them against the fmt format strings they replaced.

func sameAs(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if want := fmt.Sprintf(format, args...); err == nil || err.Error() != want {
		t.Errorf("message\n got %v\nwant %q", err, want)
	}
}

type unsupported struct{ A []int }

func TestMessagesAreFmts(t *testing.T) {
	_, err := Marshal(unsupported{})
	sameAs(t, err, "msgpack: cannot encode a value of type %T (implement msgpack.Marshaler)", unsupported{})
	_, err = Marshal([]any{1, "x", &unsupported{}})
	fmtcheck.Wraps(t, err, "element %d: %w", 2)
	_, err = Marshal(map[string]any{"a": 1, "q\"\n\u00e9\x01": []int{1}})
	fmtcheck.Wraps(t, err, "field %q: %w", "q\"\n\u00e9\x01")
	if errors.Unwrap(errors.Unwrap(err)) != nil {
		t.Errorf("%v: the innermost error wraps nothing", err)
	}

	// TypeError, for every first byte and a few wants.
	for b := 0; b < 256; b++ {
		for _, want := range []string{"string", "unsigned integer"} {
			e := &TypeError{Want: want, Got: kindOf(byte(b)), Byte: byte(b)}
			var f string
			if e.Got == KindInvalid {
				f = fmt.Sprintf("msgpack: expected %s, found invalid byte 0x%02x", e.Want, e.Byte)
			} else {
				f = fmt.Sprintf("msgpack: expected %s, found %s", e.Want, e.Got)
			}
			if e.Error() != f {
				t.Errorf("%q != %q", e.Error(), f)
			}
		}
	}
	err = Unmarshal(nil, new(string))
	fmtcheck.Wraps(t, err, "msgpack: expected %s: %w", "string")
	if !errors.Is(err, ErrShort) {
		t.Errorf("%v is not ErrShort", err)
	}

	max := []byte{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	err = Unmarshal(max, new(int64))
	sameAs(t, err, "msgpack: integer %d does not fit in an int64", uint64(math.MaxUint64))
	err = Unmarshal([]byte{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, new(uint64))
	sameAs(t, err, "msgpack: expected an unsigned integer, found %d", int64(math.MinInt64))
	err = Unmarshal([]byte{0xd0, 0x80}, new(int8))
	if err != nil {
		t.Errorf("-128 fits in an int8: %v", err)
	}
	err = Unmarshal([]byte{0xd1, 0xff, 0x7f}, new(int8))
	sameAs(t, err, "msgpack: integer %d is out of range [%d, %d]", int64(-129), int64(math.MinInt8), int64(math.MaxInt8))
	_, err = NewDecoder(max[:0]).ReadIntRange(math.MinInt64, math.MaxInt64)
	fmtcheck.Wraps(t, err, "msgpack: expected %s: %w", "integer")
	_, err = NewDecoder([]byte{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}).ReadIntRange(math.MinInt64+1, math.MaxInt64)
	sameAs(t, err, "msgpack: integer %d is out of range [%d, %d]", int64(math.MinInt64), int64(math.MinInt64+1), int64(math.MaxInt64))
	err = Unmarshal(max, new(uint32))
	sameAs(t, err, "msgpack: integer %d is out of range [0, %d]", uint64(math.MaxUint64), uint64(math.MaxUint32))

	_, err = NewDecoder([]byte{0x93, 1, 2, 0xcc}).ReadBin()
	fmtcheck.Wraps(t, err, "byte %d: %w", 2)
	_, err = NewDecoder([]byte{0x93, 1, 0xd1, 0x01, 0x00, 3}).ReadBin()
	fmtcheck.Wraps(t, err, "byte %d: %w", 1)

	d := NewDecoder([]byte{0x82, 0xa1, 'a', 1, 0x07, 2})
	err = d.ReadMap(func(string) error { return d.Skip() })
	fmtcheck.Wraps(t, err, "map key %d: %w", 1)
	var te *TypeError
	if !errors.As(err, &te) || te.Got != KindInt {
		t.Errorf("%v does not unwrap to a TypeError", err)
	}
	err = Unmarshal([]byte{0x81, 0xa3, 'k', '"', 'y', 0x01}, new(map[string][]string))
	fmtcheck.Wraps(t, err, "field %q: %w", "k\"y")

	_, err = NewDecoder([]byte{0x92, 0xa1, 'x', 0xc3}).ReadStringArray()
	fmtcheck.Wraps(t, err, "element %d: %w", 1)

	_, err = NewDecoder([]byte{0x82, 0xa1, 'a', 1, 0x92, 1}).Decode()
	sameAs(t, err, "msgpack: map key %d is a %s; only string keys are supported", 1, KindArray)

	err = Unmarshal([]byte{0xc0}, new(unsupported))
	sameAs(t, err, "msgpack: cannot decode into a value of type %T (implement msgpack.Unmarshaler on a pointer)", new(unsupported))
	err = Unmarshal([]byte{0xc0}, nil)
	sameAs(t, err, "msgpack: cannot decode into a value of type %T (implement msgpack.Unmarshaler on a pointer)", nil)
	err = Unmarshal([]byte{0xc0}, map[string]any{})
	sameAs(t, err, "msgpack: cannot decode into a value of type %T (implement msgpack.Unmarshaler on a pointer)", map[string]any{})
}
