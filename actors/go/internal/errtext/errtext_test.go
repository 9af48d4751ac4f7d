package errtext

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

type order struct{ ID string }

type pair[K comparable, V any] struct {
	Key K
	Val V
}

type code int

// typeOf passes a value of a type parameter on, as the SDK's generic
// functions (actor.HandleTyped, actor.CallTyped) do.
func typeOf[T any](v T) (got, want string) { return TypeName(v), fmt.Sprintf("%T", v) }

func TestTypeNameIsWhatFmtPrints(t *testing.T) {
	var nilErr error
	var nilPtr *order
	values := []any{
		nil, nilErr, nilPtr, "s", 1, int8(1), uint64(1), 1.5, float32(1), true, 'x', byte(1), 1i,
		[]byte{1}, []string{"a"}, []any{1}, map[string]any{}, map[string]string{}, map[string][]string{},
		order{}, &order{}, []order{}, [2]int{}, code(1), pair[string, int]{}, &pair[string, []order]{},
		struct{ A int }{}, func(int) error { return nil }, make(chan int), errors.New("e"), io.EOF,
		fmt.Errorf("w: %w", io.EOF), Wrap("w: ", io.EOF),
	}
	for _, v := range values {
		if got, want := TypeName(v), fmt.Sprintf("%T", v); got != want {
			t.Errorf("TypeName(%#v) = %q, fmt's %%T = %q", v, got, want)
		}
	}
	check := func(got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("through a type parameter: %q, fmt's %%T: %q", got, want)
		}
	}
	check(typeOf("s"))
	check(typeOf(order{}))
	check(typeOf([]string(nil)))
	check(typeOf(map[string]any(nil)))
	check(typeOf(map[string]interface{}{}))
	check(typeOf[any](nil))
	check(typeOf[any](order{}))
	check(typeOf[error](nil))
	check(typeOf(pair[code, *order]{}))
	check(typeOf[fmt.Stringer](nil))
	for want, v := range map[string]any{
		"string": "", "[]string": []string{}, "map[string]interface {}": map[string]any{},
		"errtext.order": order{}, "errtext.pair[string,int]": pair[string, int]{},
	} {
		if got := TypeName(v); got != want {
			t.Errorf("TypeName(%#v) = %q, want %q", v, got, want)
		}
	}
}

type testError struct{ msg string }

func (e *testError) Error() string { return e.msg }

func TestWrapIsLikeErrorfW(t *testing.T) {
	inner := &testError{"inner"}
	for _, err := range []error{Wrap("field \"x\": ", inner), Wrap("a: ", Wrap("b: ", inner))} {
		var te *testError
		if !errors.Is(err, inner) || !errors.As(err, &te) || te != inner {
			t.Errorf("%v does not unwrap to the inner error", err)
		}
	}
	if got, want := Wrap("element 3: ", inner).Error(), fmt.Errorf("element %d: %w", 3, inner).Error(); got != want {
		t.Errorf("%q != %q", got, want)
	}
	if got, want := Wrap("a: ", Wrap("b: ", io.EOF)).Error(), "a: b: EOF"; got != want {
		t.Errorf("%q != %q", got, want)
	}
	if !errors.Is(Wrap("x: ", io.EOF), io.EOF) || errors.Unwrap(Wrap("x: ", io.EOF)) != io.EOF {
		t.Error("Unwrap")
	}
}

func TestHex2IsPercent02x(t *testing.T) {
	for b := 0; b < 256; b++ {
		if got, want := Hex2(byte(b)), fmt.Sprintf("%02x", b); got != want {
			t.Errorf("Hex2(%d) = %q, want %q", b, got, want)
		}
	}
}
