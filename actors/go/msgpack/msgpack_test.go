package msgpack

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func enc(t *testing.T, v any) []byte {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%#v): %v", v, err)
	}
	return b
}

func TestIntegerEncodingsAreMinimal(t *testing.T) {
	cases := []struct {
		v    any
		want []byte
	}{
		{0, []byte{0x00}},
		{127, []byte{0x7f}},
		{128, []byte{0xcc, 0x80}},
		{200, []byte{0xcc, 200}},
		{256, []byte{0xcd, 1, 0}},
		{65536, []byte{0xce, 0, 1, 0, 0}},
		{uint64(1) << 32, []byte{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}},
		{-1, []byte{0xff}},
		{-32, []byte{0xe0}},
		{-33, []byte{0xd0, 0xdf}},
		{-129, []byte{0xd1, 0xff, 0x7f}},
		{-32769, []byte{0xd2, 0xff, 0xff, 0x7f, 0xff}},
		{int64(math.MinInt64), []byte{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}},
		{uint8(5), []byte{5}},
	}
	for _, c := range cases {
		if got := enc(t, c.v); !bytes.Equal(got, c.want) {
			t.Errorf("%v: got % x, want % x", c.v, got, c.want)
		}
	}
}

func TestIntegersRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxInt32, math.MaxInt32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64} {
		var got int64
		if err := Unmarshal(enc(t, n), &got); err != nil || got != n {
			t.Errorf("%d: got %d, %v", n, got, err)
		}
		var generic any
		if err := Unmarshal(enc(t, n), &generic); err != nil || generic != n {
			t.Errorf("%d as any: got %#v, %v", n, generic, err)
		}
	}
	var big any
	if err := Unmarshal(enc(t, uint64(math.MaxUint64)), &big); err != nil || big != uint64(math.MaxUint64) {
		t.Errorf("max uint64 as any: %#v %v", big, err)
	}
	var i64 int64
	if err := Unmarshal(enc(t, uint64(math.MaxUint64)), &i64); err == nil {
		t.Error("max uint64 into int64 should fail")
	}
	var u8 uint8
	if err := Unmarshal(enc(t, 300), &u8); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("300 into uint8: %v", err)
	}
	var u uint64
	if err := Unmarshal(enc(t, -1), &u); err == nil {
		t.Error("-1 into uint64 should fail")
	}
}

func TestStringsBinAndLengths(t *testing.T) {
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		s := strings.Repeat("x", n)
		b := enc(t, s)
		var got string
		if err := Unmarshal(b, &got); err != nil || got != s {
			t.Errorf("string of %d: %v", n, err)
		}
		bin := bytes.Repeat([]byte{7}, n)
		var gotBin []byte
		if err := Unmarshal(enc(t, bin), &gotBin); err != nil || !bytes.Equal(gotBin, bin) {
			t.Errorf("bin of %d: %v", n, err)
		}
	}
	if got := enc(t, "ab"); !bytes.Equal(got, []byte{0xa2, 'a', 'b'}) {
		t.Errorf("fixstr: % x", got)
	}
	if got := enc(t, []byte("ab")); !bytes.Equal(got, []byte{0xc4, 2, 'a', 'b'}) {
		t.Errorf("bin8: % x", got)
	}
	// Bin also reads a str and an array of small integers, as the Rust decoders do.
	var b []byte
	if err := Unmarshal([]byte{0xa2, 'h', 'i'}, &b); err != nil || string(b) != "hi" {
		t.Errorf("str as bin: %q %v", b, err)
	}
	if err := Unmarshal([]byte{0x92, 1, 0xcc, 255}, &b); err != nil || !bytes.Equal(b, []byte{1, 255}) {
		t.Errorf("array as bin: %v %v", b, err)
	}
	if err := Unmarshal([]byte{0x91, 0xcd, 1, 0}, &b); err == nil {
		t.Error("array element 256 as a byte should fail")
	}
	var s string
	if err := Unmarshal([]byte{0xa1, 0xff}, &s); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8: %v", err)
	}
}

func TestMapsAreSortedAndNamed(t *testing.T) {
	got := enc(t, map[string]any{"key": "n", "delta": 1})
	// sorted keys: delta, key
	want := []byte{0x82, 0xa5, 'd', 'e', 'l', 't', 'a', 0x01, 0xa3, 'k', 'e', 'y', 0xa1, 'n'}
	if !bytes.Equal(got, want) {
		t.Errorf("got % x\nwant % x", got, want)
	}
}

func TestGenericRoundTrip(t *testing.T) {
	v := map[string]any{
		"nil":    nil,
		"t":      true,
		"f":      false,
		"int":    int64(-5),
		"big":    int64(1 << 40),
		"float":  1.5,
		"str":    "héllo",
		"bin":    []byte{0, 1, 2},
		"array":  []any{int64(1), "two", []any{}},
		"nested": map[string]any{"a": map[string]any{}},
		"ext":    Ext{Type: 5, Data: []byte{1, 2, 3}},
	}
	var got any
	if err := Unmarshal(enc(t, v), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, any(v)) {
		t.Errorf("got %#v\nwant %#v", got, v)
	}
	var f32 any
	if err := Unmarshal(enc(t, float32(2.5)), &f32); err != nil || f32 != float32(2.5) {
		t.Errorf("float32: %#v %v", f32, err)
	}
	var f float64
	if err := Unmarshal(enc(t, 3), &f); err != nil || f != 3 {
		t.Errorf("int as float: %v %v", f, err)
	}
}

func TestTypedContainers(t *testing.T) {
	var ss []string
	if err := Unmarshal(enc(t, []string{"a", "b"}), &ss); err != nil || !reflect.DeepEqual(ss, []string{"a", "b"}) {
		t.Errorf("[]string: %v %v", ss, err)
	}
	var ms map[string]string
	if err := Unmarshal(enc(t, map[string]string{"a": "1"}), &ms); err != nil || ms["a"] != "1" {
		t.Errorf("map[string]string: %v %v", ms, err)
	}
	var h map[string][]string
	// a single string is accepted in place of an array
	if err := Unmarshal(enc(t, map[string]any{"a": "x", "b": []string{"y", "z"}}), &h); err != nil ||
		!reflect.DeepEqual(h, map[string][]string{"a": {"x"}, "b": {"y", "z"}}) {
		t.Errorf("headers: %v %v", h, err)
	}
	var m map[string]any
	if err := Unmarshal([]byte{0x81, 0x01, 0x02}, &m); err == nil || !strings.Contains(err.Error(), "string keys") {
		t.Errorf("integer key: %v", err)
	}
	var raw Raw
	d := NewDecoder(append(enc(t, []any{int64(1), "x"}), 0xc3))
	if err := d.DecodeInto(&raw); err != nil || !bytes.Equal(raw, []byte{0x92, 1, 0xa1, 'x'}) {
		t.Errorf("raw: % x %v", raw, err)
	}
	if b, err := d.ReadBool(); err != nil || !b || d.Remaining() != 0 {
		t.Errorf("after raw: %v %v %d", b, err, d.Remaining())
	}
}

func TestErrors(t *testing.T) {
	var s string
	err := Unmarshal([]byte{0x2a}, &s)
	var te *TypeError
	if !errors.As(err, &te) || te.Want != "string" || te.Got != KindInt {
		t.Errorf("type error: %v", err)
	}
	if err.Error() != "msgpack: expected string, found integer" {
		t.Errorf("message: %q", err)
	}
	for _, short := range [][]byte{{}, {0xa5, 'a'}, {0xcd, 1}, {0xc4, 3, 1}, {0x92, 1}, {0x81, 0xa1, 'k'}, {0xdb, 0, 0}} {
		var v any
		if err := Unmarshal(short, &v); err == nil {
			t.Errorf("% x: no error", short)
		}
	}
	if err := Unmarshal([]byte{0xc1}, new(any)); err == nil || !strings.Contains(err.Error(), "0xc1") {
		t.Errorf("reserved byte: %v", err)
	}
	if _, err := Marshal(struct{}{}); err == nil || !strings.Contains(err.Error(), "Marshaler") {
		t.Errorf("unsupported type: %v", err)
	}
	if err := Unmarshal([]byte{0xc0}, new(struct{})); err == nil || !strings.Contains(err.Error(), "Unmarshaler") {
		t.Errorf("unsupported target: %v", err)
	}
	deep := append(bytes.Repeat([]byte{0x91}, 600), 0xc0)
	if err := Unmarshal(deep, new(any)); err == nil || !strings.Contains(err.Error(), "deeper") {
		t.Errorf("deep nesting: %v", err)
	}
}

type point struct{ X, Y int64 }

func (p point) MarshalMsgpack(e *Encoder) error {
	e.WriteMapHeader(2)
	e.WriteString("x")
	e.WriteInt(p.X)
	e.WriteString("y")
	e.WriteInt(p.Y)
	return nil
}

func (p *point) UnmarshalMsgpack(d *Decoder) error {
	return d.ReadMap(func(key string) error {
		var err error
		switch key {
		case "x":
			p.X, err = d.ReadInt()
		case "y":
			p.Y, err = d.ReadInt()
		default:
			err = d.Skip()
		}
		return err
	})
}

func TestMarshalerAndSkip(t *testing.T) {
	b := enc(t, []any{point{1, -2}})
	var arr []any
	if err := Unmarshal(b, &arr); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"x": int64(1), "y": int64(-2)}
	if !reflect.DeepEqual(arr[0], want) {
		t.Errorf("%#v", arr[0])
	}
	// Unknown fields of every kind are skipped.
	extra := enc(t, map[string]any{"x": 3, "zz": map[string]any{"a": []any{1.5, nil, []byte{1}, Ext{1, []byte{9}}}}, "y": 4})
	var p point
	if err := Unmarshal(extra, &p); err != nil || p != (point{3, 4}) {
		t.Errorf("%v %v", p, err)
	}
	var bad point
	err := Unmarshal(enc(t, map[string]any{"x": "no"}), &bad)
	if err == nil || err.Error() != `field "x": msgpack: expected integer, found string` {
		t.Errorf("field error: %v", err)
	}
}
