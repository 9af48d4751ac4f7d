package actor

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"lattice.dev/actor/internal/fmtcheck"

	"lattice.dev/actor/msgpack"
)

// The SDK builds its messages without fmt (to keep modules small); these
// tests check them against the fmt format strings they replaced.

type order struct{ Item string }

func (o order) MarshalMsgpack(e *msgpack.Encoder) error { e.WriteString(o.Item); return nil }

func (o *order) UnmarshalMsgpack(d *msgpack.Decoder) error {
	var err error
	o.Item, err = d.ReadString()
	return err
}

func TestMessagesAreFmts(t *testing.T) {
	reset()
	HandleTyped("Str", func(s string) (string, error) { return s, nil })
	HandleTyped("Order", func(o order) (order, error) { return o, nil })
	HandleTyped("Map", func(m map[string]any) (map[string]any, error) { return m, nil })
	HandleTyped("Slice", func(s []string) ([]string, error) { return s, nil })
	HandleTyped("BadReply", func(any) (any, error) { return struct{ A int }{1}, nil })

	for op, in := range map[string]any{"Str": "", "Order": order{}, "Map": map[string]any{}, "Slice": []string{}} {
		_, err := Dispatch(op, []byte{0xc1})
		fmtcheck.Wraps(t, err, "%s: payload is not valid msgpack for %T: %w", op, in)
		var te *msgpack.TypeError
		if !errors.As(err, &te) {
			t.Errorf("%s: %v does not unwrap to a *msgpack.TypeError", op, err)
		}
	}
	_, err := Dispatch("BadReply", nil)
	fmtcheck.Wraps(t, err, "%s: could not encode the reply (%T) as msgpack: %w", "BadReply", struct{ A int }{1})

	_, err = Dispatch("Nope \"quoted\"\n", nil)
	want := fmt.Errorf("unknown operation %q; this actor handles: %s", "Nope \"quoted\"\n",
		"Str, Order, Map, Slice, BadReply").Error()
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	reset()
	_, err = Dispatch("Nope", nil)
	want = fmt.Errorf("unknown operation %q; this actor handles no operations (did an init function register any with actor.Handle?)", "Nope").Error()
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}

	_, err = CallTyped[string]("other", "Op", struct{}{})
	fmtcheck.Wraps(t, err, "call to %s %s: could not encode the argument: %w", "other", "Op")
	restore := MockHost(func(HostCallRequest) ([]byte, error) { return []byte{0xa1, 'x'}, nil })
	_, err = CallTyped[int64]("other", "Op", nil)
	fmtcheck.Wraps(t, err, "the reply of %s %s is not valid msgpack for %T: %w", "other", "Op", int64(0))
	_, err = CallTyped[map[string][]string]("other", "Op", nil)
	fmtcheck.Wraps(t, err, "the reply of %s %s is not valid msgpack for %T: %w", "other", "Op", map[string][]string(nil))
	restore()
	restore = MockHost(func(HostCallRequest) ([]byte, error) { return nil, nil })
	// Out = any: a nil interface, which %T prints as <nil>.
	_, err = CallTyped[any]("other", "Op", nil)
	fmtcheck.Wraps(t, err, "the reply of %s %s is not valid msgpack for %T: %w", "other", "Op", nil)
	if !errors.Is(err, msgpack.ErrShort) {
		t.Errorf("%v is not msgpack.ErrShort", err)
	}
	restore()
}

type code int

type point struct{ X, Y int }

type stringer struct{ s string }

func (s stringer) String() string { return "stringer " + s.s }

type panicky struct{}

func (panicky) Error() string { panic("no") }

func TestPanicText(t *testing.T) {
	var nilPoint *point
	type inner struct {
		P     *point
		Codes []code
		M     map[string]int
		E     error
		F     func()
		hid   string
	}
	for _, c := range []struct {
		value any
		want  string
	}{
		{"hello-go panicked on purpose", "hello-go panicked on purpose"},
		{errors.New("boom"), "boom"},
		{fmt.Errorf("wrapped: %w", io.EOF), "wrapped: EOF"},
		{stringer{"x"}, "stringer x"},
		{42, "42"}, {int8(-8), "-8"}, {uint64(1 << 63), "9223372036854775808"}, {uintptr(7), "7"},
		{1.5, "1.5"}, {float32(0.1), "0.1"}, {1e21, "1e+21"}, {1e6, "1e+06"}, {true, "true"},
		{nil, "<nil>"},
		{code(7), "(actor.code) 7"},
		{point{1, 2}, "(actor.point) {1 2}"},
		{&point{1, 2}, "(*actor.point) &{1 2}"},
		{nilPoint, "(*actor.point) <nil>"},
		{[]string{"a", "b"}, "([]string) [a b]"},
		{[]any{1, "x", nil, 2.5}, "([]interface {}) [1 x <nil> 2.5]"},
		{map[string]int{"b": 2, "a": 1}, "(map[string]int) map[a:1 b:2]"},
		{[2]bool{true, false}, "([2]bool) [true false]"},
		{1 + 2i, "(complex128) (1+2i)"},
		{inner{Codes: []code{1}, M: map[string]int{"k": 1}, E: io.EOF, hid: "h"},
			"(actor.inner) {<nil> [1] map[k:1] 0x0 <nil> h}"},
		{panicky{}, "(actor.panicky) (its Error or String method panicked)"},
	} {
		got := panicText(c.value)
		if strings.HasPrefix(c.want, "(actor.inner)") {
			// E holds io.EOF (a pointer): shown as an address.
			if !strings.HasPrefix(got, "(actor.inner) {<nil> [1] map[k:1] 0x") || !strings.HasSuffix(got, " <nil> h}") {
				t.Errorf("panicText(%#v) = %q", c.value, got)
			}
			continue
		}
		if got != c.want {
			t.Errorf("panicText(%#v) = %q, want %q", c.value, got, c.want)
		}
		// Where fmt prints it the same, say so.
		if !strings.HasPrefix(c.want, "(") && c.value != nil {
			if f := fmt.Sprint(c.value); f != got {
				t.Errorf("panicText(%#v) = %q, fmt.Sprint = %q", c.value, got, f)
			}
		}
	}
	long := make([]int, 40)
	if got := panicText(long); !strings.HasSuffix(got, " 0 ...]") || strings.Count(got, "0") != 32 {
		t.Errorf("long slice: %q", got)
	}
	deep := []any{[]any{[]any{[]any{[]any{[]any{1}}}}}}
	if got := panicText(deep); got != "([]interface {}) [[[[...]]]]" {
		t.Errorf("deep: %q", got)
	}
	loop := []any{nil}
	loop[0] = loop
	if got := panicText(loop); !strings.Contains(got, "...") {
		t.Errorf("loop: %q", got)
	}
}
