// Package msgpack is a small MessagePack encoder and decoder, enough for
// Lattice payloads: nil, bools, integers, floats, strings, binary data,
// arrays, and maps with string keys. It uses no reflection, so it works the
// same with the standard Go toolchain and with TinyGo.
//
// Payloads in Lattice are msgpack with structs written as maps keyed by field
// name (what Rust's rmp_serde::to_vec_named produces). Encode such a struct by
// hand with an [Encoder], or implement [Marshaler] and [Unmarshaler] on it so
// that [Marshal] and [Unmarshal] (and actor.HandleTyped) can use it:
//
//	type Greeting struct{ Name string }
//
//	func (g Greeting) MarshalMsgpack(e *msgpack.Encoder) error {
//		e.WriteMapHeader(1)
//		e.WriteString("name")
//		e.WriteString(g.Name)
//		return nil
//	}
//
//	func (g *Greeting) UnmarshalMsgpack(d *msgpack.Decoder) error {
//		return d.ReadMap(func(key string) error {
//			var err error
//			switch key {
//			case "name":
//				g.Name, err = d.ReadString()
//			default:
//				err = d.Skip() // unknown fields are ignored
//			}
//			return err
//		})
//	}
package msgpack

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"lattice.dev/actor/internal/errtext"
)

// Marshaler is implemented by types that write themselves as msgpack.
type Marshaler interface {
	MarshalMsgpack(e *Encoder) error
}

// Unmarshaler is implemented by (pointers to) types that read themselves from
// msgpack.
type Unmarshaler interface {
	UnmarshalMsgpack(d *Decoder) error
}

// Raw is an already encoded msgpack value; [Marshal] and [Encoder.Encode]
// copy it unchanged, and [Unmarshal] into a *Raw stores the next value's bytes.
type Raw []byte

// Ext is a msgpack extension value (type and data), as [Decoder.Decode]
// returns it.
type Ext struct {
	Type int8
	Data []byte
}

// Nil is msgpack nil, the encoding of "no value".
var Nil = []byte{0xc0}

// Marshal encodes v. Supported: nil, bool, every int and uint type, float32,
// float64, string, []byte (as bin), Raw, []any, []string, map[string]any,
// map[string]string, map[string][]string, pointers to those, and any
// [Marshaler]. Map keys are written in sorted order.
func Marshal(v any) ([]byte, error) {
	var e Encoder
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return e.Bytes(), nil
}

// Unmarshal decodes data into the value v points to. Supported targets:
// *any, *bool, pointers to every int and uint type, *float32, *float64,
// *string, *[]byte, *Raw, *[]any, *[]string, *map[string]any,
// *map[string]string, *map[string][]string, and any [Unmarshaler]. Bytes after
// the first value are ignored.
func Unmarshal(data []byte, v any) error {
	d := NewDecoder(data)
	return d.DecodeInto(v)
}

// Encoder appends msgpack values to a buffer. Writing cannot fail; only
// [Encoder.Encode] of an unsupported type returns an error.
type Encoder struct {
	buf []byte
}

// NewEncoder returns an encoder that appends to buf (which may be nil).
func NewEncoder(buf []byte) *Encoder { return &Encoder{buf: buf} }

// Bytes returns the encoded bytes.
func (e *Encoder) Bytes() []byte { return e.buf }

// WriteNil writes nil.
func (e *Encoder) WriteNil() { e.buf = append(e.buf, 0xc0) }

// WriteBool writes true or false.
func (e *Encoder) WriteBool(b bool) {
	if b {
		e.buf = append(e.buf, 0xc3)
	} else {
		e.buf = append(e.buf, 0xc2)
	}
}

// WriteInt writes a signed integer in the smallest encoding that holds it
// (non-negative values use the unsigned encodings, as most encoders do).
func (e *Encoder) WriteInt(n int64) {
	switch {
	case n >= 0:
		e.WriteUint(uint64(n))
	case n >= -32:
		e.buf = append(e.buf, byte(n))
	case n >= math.MinInt8:
		e.buf = append(e.buf, 0xd0, byte(n))
	case n >= math.MinInt16:
		e.buf = append(e.buf, 0xd1, byte(n>>8), byte(n))
	case n >= math.MinInt32:
		e.buf = append(e.buf, 0xd2, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		e.buf = append(e.buf, 0xd3)
		e.buf = appendUint64(e.buf, uint64(n))
	}
}

// WriteUint writes an unsigned integer in the smallest encoding that holds it.
func (e *Encoder) WriteUint(n uint64) {
	switch {
	case n <= 0x7f:
		e.buf = append(e.buf, byte(n))
	case n <= math.MaxUint8:
		e.buf = append(e.buf, 0xcc, byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xcd, byte(n>>8), byte(n))
	case n <= math.MaxUint32:
		e.buf = append(e.buf, 0xce, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		e.buf = append(e.buf, 0xcf)
		e.buf = appendUint64(e.buf, n)
	}
}

// WriteFloat64 writes a 64-bit float.
func (e *Encoder) WriteFloat64(f float64) {
	e.buf = append(e.buf, 0xcb)
	e.buf = appendUint64(e.buf, math.Float64bits(f))
}

// WriteFloat32 writes a 32-bit float.
func (e *Encoder) WriteFloat32(f float32) {
	b := math.Float32bits(f)
	e.buf = append(e.buf, 0xca, byte(b>>24), byte(b>>16), byte(b>>8), byte(b))
}

// WriteString writes a str.
func (e *Encoder) WriteString(s string) {
	n := len(s)
	switch {
	case n <= 31:
		e.buf = append(e.buf, 0xa0|byte(n))
	case n <= math.MaxUint8:
		e.buf = append(e.buf, 0xd9, byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xda, byte(n>>8), byte(n))
	default:
		e.buf = append(e.buf, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	e.buf = append(e.buf, s...)
}

// WriteBin writes binary data (msgpack bin; a nil slice is an empty bin).
func (e *Encoder) WriteBin(b []byte) {
	n := len(b)
	switch {
	case n <= math.MaxUint8:
		e.buf = append(e.buf, 0xc4, byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xc5, byte(n>>8), byte(n))
	default:
		e.buf = append(e.buf, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	e.buf = append(e.buf, b...)
}

// WriteArrayHeader starts an array of n elements; write them next.
func (e *Encoder) WriteArrayHeader(n int) {
	switch {
	case n <= 15:
		e.buf = append(e.buf, 0x90|byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xdc, byte(n>>8), byte(n))
	default:
		e.buf = append(e.buf, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// WriteMapHeader starts a map of n entries; write n keys and values next,
// alternating.
func (e *Encoder) WriteMapHeader(n int) {
	switch {
	case n <= 15:
		e.buf = append(e.buf, 0x80|byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xde, byte(n>>8), byte(n))
	default:
		e.buf = append(e.buf, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// WriteRaw appends already encoded msgpack.
func (e *Encoder) WriteRaw(b []byte) { e.buf = append(e.buf, b...) }

// WriteStringArray writes a []string as an array of str.
func (e *Encoder) WriteStringArray(ss []string) {
	e.WriteArrayHeader(len(ss))
	for _, s := range ss {
		e.WriteString(s)
	}
}

// WriteHeaders writes a map of string to array of strings with sorted keys
// (the shape of HTTP headers in the lattice:httpserver contract).
func (e *Encoder) WriteHeaders(m map[string][]string) {
	e.WriteMapHeader(len(m))
	for _, k := range sortedKeys(m) {
		e.WriteString(k)
		e.WriteStringArray(m[k])
	}
}

// Encode writes v; see [Marshal] for the supported types.
func (e *Encoder) Encode(v any) error {
	switch v := v.(type) {
	case nil:
		e.WriteNil()
	case Marshaler:
		return v.MarshalMsgpack(e)
	case bool:
		e.WriteBool(v)
	case int:
		e.WriteInt(int64(v))
	case int8:
		e.WriteInt(int64(v))
	case int16:
		e.WriteInt(int64(v))
	case int32:
		e.WriteInt(int64(v))
	case int64:
		e.WriteInt(v)
	case uint:
		e.WriteUint(uint64(v))
	case uint8:
		e.WriteUint(uint64(v))
	case uint16:
		e.WriteUint(uint64(v))
	case uint32:
		e.WriteUint(uint64(v))
	case uint64:
		e.WriteUint(v)
	case uintptr:
		e.WriteUint(uint64(v))
	case float32:
		e.WriteFloat32(v)
	case float64:
		e.WriteFloat64(v)
	case string:
		e.WriteString(v)
	case []byte:
		e.WriteBin(v)
	case Raw:
		if len(v) == 0 {
			e.WriteNil()
		} else {
			e.WriteRaw(v)
		}
	case Ext:
		e.writeExt(v)
	case []string:
		e.WriteStringArray(v)
	case []any:
		e.WriteArrayHeader(len(v))
		for i, x := range v {
			if err := e.Encode(x); err != nil {
				return errtext.Wrap("element "+strconv.Itoa(i)+": ", err)
			}
		}
	case map[string]any:
		e.WriteMapHeader(len(v))
		for _, k := range sortedKeys(v) {
			e.WriteString(k)
			if err := e.Encode(v[k]); err != nil {
				return errtext.Wrap("field "+strconv.Quote(k)+": ", err)
			}
		}
	case map[string]string:
		e.WriteMapHeader(len(v))
		for _, k := range sortedKeys(v) {
			e.WriteString(k)
			e.WriteString(v[k])
		}
	case map[string][]string:
		e.WriteHeaders(v)
	case *string:
		return e.encodePtr(v == nil, func() { e.WriteString(*v) })
	case *bool:
		return e.encodePtr(v == nil, func() { e.WriteBool(*v) })
	case *int64:
		return e.encodePtr(v == nil, func() { e.WriteInt(*v) })
	case *uint64:
		return e.encodePtr(v == nil, func() { e.WriteUint(*v) })
	case *int:
		return e.encodePtr(v == nil, func() { e.WriteInt(int64(*v)) })
	case *float64:
		return e.encodePtr(v == nil, func() { e.WriteFloat64(*v) })
	case *[]byte:
		return e.encodePtr(v == nil, func() { e.WriteBin(*v) })
	case *any:
		if v == nil {
			e.WriteNil()
			return nil
		}
		return e.Encode(*v)
	default:
		return errors.New("msgpack: cannot encode a value of type " + errtext.TypeName(v) + " (implement msgpack.Marshaler)")
	}
	return nil
}

func (e *Encoder) encodePtr(isNil bool, write func()) error {
	if isNil {
		e.WriteNil()
	} else {
		write()
	}
	return nil
}

func (e *Encoder) writeExt(x Ext) {
	n := len(x.Data)
	switch n {
	case 1:
		e.buf = append(e.buf, 0xd4)
	case 2:
		e.buf = append(e.buf, 0xd5)
	case 4:
		e.buf = append(e.buf, 0xd6)
	case 8:
		e.buf = append(e.buf, 0xd7)
	case 16:
		e.buf = append(e.buf, 0xd8)
	default:
		switch {
		case n <= math.MaxUint8:
			e.buf = append(e.buf, 0xc7, byte(n))
		case n <= math.MaxUint16:
			e.buf = append(e.buf, 0xc8, byte(n>>8), byte(n))
		default:
			e.buf = append(e.buf, 0xc9, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
	}
	e.buf = append(e.buf, byte(x.Type))
	e.buf = append(e.buf, x.Data...)
}

func appendUint64(b []byte, n uint64) []byte {
	return append(b, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Kind is the broad type of the next value in a [Decoder].
type Kind int

// The kinds of msgpack values.
const (
	KindInvalid Kind = iota // no more input, or a reserved byte (0xc1)
	KindNil
	KindBool
	KindInt // any integer encoding
	KindFloat
	KindString
	KindBin
	KindArray
	KindMap
	KindExt
)

var kindNames = [...]string{"end of input", "nil", "bool", "integer", "float", "string", "bin", "array", "map", "ext"}

// String names the kind, e.g. "string".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind " + strconv.Itoa(int(k))
}

// ErrShort means the input ended inside a value.
var ErrShort = errors.New("msgpack: unexpected end of input")

// TypeError says that a value of one kind was found where another was expected.
type TypeError struct {
	Want string // what the caller asked for, e.g. "string"
	Got  Kind   // what the input holds
	Byte byte   // the value's first byte
}

func (e *TypeError) Error() string {
	if e.Got == KindInvalid {
		return "msgpack: expected " + e.Want + ", found invalid byte 0x" + errtext.Hex2(e.Byte)
	}
	return "msgpack: expected " + e.Want + ", found " + e.Got.String()
}

// Decoder reads msgpack values from a byte slice, one after the other.
type Decoder struct {
	data []byte
	pos  int
}

// NewDecoder returns a decoder reading data.
func NewDecoder(data []byte) *Decoder { return &Decoder{data: data} }

// Remaining returns how many bytes are left unread.
func (d *Decoder) Remaining() int { return len(d.data) - d.pos }

// Offset returns how many bytes have been read.
func (d *Decoder) Offset() int { return d.pos }

// PeekKind returns the kind of the next value without reading it
// ([KindInvalid] at the end of the input).
func (d *Decoder) PeekKind() Kind {
	if d.pos >= len(d.data) {
		return KindInvalid
	}
	return kindOf(d.data[d.pos])
}

func kindOf(b byte) Kind {
	switch {
	case b <= 0x7f || b >= 0xe0:
		return KindInt
	case b <= 0x8f:
		return KindMap
	case b <= 0x9f:
		return KindArray
	case b <= 0xbf:
		return KindString
	}
	switch b {
	case 0xc0:
		return KindNil
	case 0xc2, 0xc3:
		return KindBool
	case 0xc4, 0xc5, 0xc6:
		return KindBin
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return KindExt
	case 0xca, 0xcb:
		return KindFloat
	case 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3:
		return KindInt
	case 0xd9, 0xda, 0xdb:
		return KindString
	case 0xdc, 0xdd:
		return KindArray
	case 0xde, 0xdf:
		return KindMap
	}
	return KindInvalid
}

func (d *Decoder) typeErr(want string) error {
	if d.pos >= len(d.data) {
		return errtext.Wrap("msgpack: expected "+want+": ", ErrShort)
	}
	b := d.data[d.pos]
	return &TypeError{Want: want, Got: kindOf(b), Byte: b}
}

func (d *Decoder) take(n int) ([]byte, error) {
	if n < 0 || d.Remaining() < n {
		return nil, ErrShort
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *Decoder) readN(n int) (uint64, error) {
	b, err := d.take(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v, nil
}

// TryNil reads a nil and returns true when the next value is nil; otherwise
// it reads nothing and returns false. Use it for optional fields.
func (d *Decoder) TryNil() bool {
	if d.pos < len(d.data) && d.data[d.pos] == 0xc0 {
		d.pos++
		return true
	}
	return false
}

// ReadNil reads a nil.
func (d *Decoder) ReadNil() error {
	if d.TryNil() {
		return nil
	}
	return d.typeErr("nil")
}

// ReadBool reads a bool.
func (d *Decoder) ReadBool() (bool, error) {
	if d.pos < len(d.data) {
		switch d.data[d.pos] {
		case 0xc2:
			d.pos++
			return false, nil
		case 0xc3:
			d.pos++
			return true, nil
		}
	}
	return false, d.typeErr("bool")
}

// readInteger reads any integer encoding; neg reports whether the value is
// negative (then it is the int64 in v), else v is the unsigned value.
func (d *Decoder) readInteger(want string) (v uint64, neg bool, err error) {
	if d.pos >= len(d.data) {
		return 0, false, d.typeErr(want)
	}
	b := d.data[d.pos]
	switch {
	case b <= 0x7f:
		d.pos++
		return uint64(b), false, nil
	case b >= 0xe0:
		d.pos++
		return uint64(int64(int8(b))), true, nil
	}
	start := d.pos
	d.pos++
	switch b {
	case 0xcc, 0xcd, 0xce, 0xcf:
		v, err = d.readN(1 << (b - 0xcc))
		if err != nil {
			d.pos = start
		}
		return v, false, err
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (b - 0xd0)
		v, err = d.readN(n)
		if err != nil {
			d.pos = start
			return 0, false, err
		}
		// sign-extend from n bytes
		shift := uint(64 - 8*n)
		s := int64(v<<shift) >> shift
		return uint64(s), s < 0, nil
	}
	d.pos = start
	return 0, false, d.typeErr(want)
}

// ReadInt reads an integer (any encoding) that fits in an int64.
func (d *Decoder) ReadInt() (int64, error) {
	v, neg, err := d.readInteger("integer")
	if err != nil {
		return 0, err
	}
	if !neg && v > math.MaxInt64 {
		return 0, errors.New("msgpack: integer " + strconv.FormatUint(v, 10) + " does not fit in an int64")
	}
	return int64(v), nil
}

// ReadUint reads a non-negative integer (any encoding).
func (d *Decoder) ReadUint() (uint64, error) {
	v, neg, err := d.readInteger("unsigned integer")
	if err != nil {
		return 0, err
	}
	if neg {
		return 0, errors.New("msgpack: expected an unsigned integer, found " + strconv.FormatInt(int64(v), 10))
	}
	return v, nil
}

// ReadIntRange reads an integer and checks it lies in [lo, hi].
func (d *Decoder) ReadIntRange(lo, hi int64) (int64, error) {
	n, err := d.ReadInt()
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, errors.New("msgpack: integer " + strconv.FormatInt(n, 10) + " is out of range [" +
			strconv.FormatInt(lo, 10) + ", " + strconv.FormatInt(hi, 10) + "]")
	}
	return n, nil
}

// ReadFloat64 reads a float (32 or 64 bit) or an integer, as a float64.
func (d *Decoder) ReadFloat64() (float64, error) {
	if d.pos < len(d.data) {
		switch d.data[d.pos] {
		case 0xca:
			d.pos++
			v, err := d.readN(4)
			if err != nil {
				d.pos--
				return 0, err
			}
			return float64(math.Float32frombits(uint32(v))), nil
		case 0xcb:
			d.pos++
			v, err := d.readN(8)
			if err != nil {
				d.pos--
				return 0, err
			}
			return math.Float64frombits(v), nil
		}
	}
	v, neg, err := d.readInteger("float")
	if err != nil {
		return 0, err
	}
	if neg {
		return float64(int64(v)), nil
	}
	return float64(v), nil
}

func (d *Decoder) strLen() (int, bool, error) {
	if d.pos >= len(d.data) {
		return 0, false, nil
	}
	b := d.data[d.pos]
	var n uint64
	var err error
	switch {
	case b >= 0xa0 && b <= 0xbf:
		d.pos++
		return int(b & 0x1f), true, nil
	case b == 0xd9:
		d.pos++
		n, err = d.readN(1)
	case b == 0xda:
		d.pos++
		n, err = d.readN(2)
	case b == 0xdb:
		d.pos++
		n, err = d.readN(4)
	default:
		return 0, false, nil
	}
	if err != nil {
		d.pos--
	}
	return int(n), true, err
}

func (d *Decoder) binLen() (int, bool, error) {
	if d.pos >= len(d.data) {
		return 0, false, nil
	}
	b := d.data[d.pos]
	if b < 0xc4 || b > 0xc6 {
		return 0, false, nil
	}
	d.pos++
	n, err := d.readN(1 << (b - 0xc4))
	if err != nil {
		d.pos--
	}
	return int(n), true, err
}

// ReadString reads a str; it must be valid UTF-8.
func (d *Decoder) ReadString() (string, error) {
	start := d.pos
	n, ok, err := d.strLen()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", d.typeErr("string")
	}
	b, err := d.take(n)
	if err != nil {
		d.pos = start
		return "", err
	}
	if !utf8.Valid(b) {
		d.pos = start
		return "", errors.New("msgpack: string is not valid UTF-8")
	}
	return string(b), nil
}

// ReadBin reads binary data. Like the Rust decoders, it also accepts a str
// (its bytes) and an array of integers 0-255. The result is a copy.
func (d *Decoder) ReadBin() ([]byte, error) {
	start := d.pos
	n, ok, err := d.binLen()
	if err == nil && !ok {
		n, ok, err = d.strLen()
	}
	if err != nil {
		return nil, err
	}
	if ok {
		b, err := d.take(n)
		if err != nil {
			d.pos = start
			return nil, err
		}
		return append([]byte{}, b...), nil
	}
	if d.PeekKind() == KindArray {
		count, err := d.ReadArrayHeader()
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, min(count, d.Remaining()))
		for i := 0; i < count; i++ {
			v, err := d.ReadIntRange(0, 255)
			if err != nil {
				d.pos = start
				return nil, errtext.Wrap("byte "+strconv.Itoa(i)+": ", err)
			}
			out = append(out, byte(v))
		}
		return out, nil
	}
	return nil, d.typeErr("bin")
}

// ReadArrayHeader reads the header of an array and returns its length; read
// that many values next.
func (d *Decoder) ReadArrayHeader() (int, error) {
	if d.pos < len(d.data) {
		b := d.data[d.pos]
		switch {
		case b >= 0x90 && b <= 0x9f:
			d.pos++
			return int(b & 0x0f), nil
		case b == 0xdc || b == 0xdd:
			d.pos++
			n, err := d.readN(2 << (b - 0xdc))
			if err != nil {
				d.pos--
			}
			return int(n), err
		}
	}
	return 0, d.typeErr("array")
}

// ReadMapHeader reads the header of a map and returns its number of entries;
// read that many keys and values next, alternating.
func (d *Decoder) ReadMapHeader() (int, error) {
	if d.pos < len(d.data) {
		b := d.data[d.pos]
		switch {
		case b >= 0x80 && b <= 0x8f:
			d.pos++
			return int(b & 0x0f), nil
		case b == 0xde || b == 0xdf:
			d.pos++
			n, err := d.readN(2 << (b - 0xde))
			if err != nil {
				d.pos--
			}
			return int(n), err
		}
	}
	return 0, d.typeErr("map")
}

// ReadMap reads a map with string keys, calling field for each key; field
// must read (or [Decoder.Skip]) the value. Errors name the field.
func (d *Decoder) ReadMap(field func(key string) error) error {
	n, err := d.ReadMapHeader()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		key, err := d.ReadString()
		if err != nil {
			return errtext.Wrap("map key "+strconv.Itoa(i)+": ", err)
		}
		if err := field(key); err != nil {
			return errtext.Wrap("field "+strconv.Quote(key)+": ", err)
		}
	}
	return nil
}

// ReadStringArray reads an array of strings.
func (d *Decoder) ReadStringArray() ([]string, error) {
	n, err := d.ReadArrayHeader()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(n, d.Remaining()))
	for i := 0; i < n; i++ {
		s, err := d.ReadString()
		if err != nil {
			return nil, errtext.Wrap("element "+strconv.Itoa(i)+": ", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// ReadHeaders reads a map of string to array of strings; a single string in
// place of an array is accepted as a one-element array.
func (d *Decoder) ReadHeaders() (map[string][]string, error) {
	out := map[string][]string{}
	err := d.ReadMap(func(key string) error {
		if d.PeekKind() == KindString {
			s, err := d.ReadString()
			out[key] = append(out[key], s)
			return err
		}
		values, err := d.ReadStringArray()
		out[key] = append(out[key], values...)
		return err
	})
	return out, err
}

// Skip reads the next value, whatever it is, and discards it.
func (d *Decoder) Skip() error {
	_, err := d.next(true)
	return err
}

// ReadRaw reads the next value and returns its encoded bytes.
func (d *Decoder) ReadRaw() (Raw, error) {
	start := d.pos
	if err := d.Skip(); err != nil {
		return nil, err
	}
	return append(Raw{}, d.data[start:d.pos]...), nil
}

// Decode reads the next value into a generic Go value: nil, bool, int64
// (uint64 for integers above the int64 range), float64, string, []byte (bin),
// []any, map[string]any, or [Ext]. Maps with keys that are not strings are an
// error.
func (d *Decoder) Decode() (any, error) {
	return d.next(false)
}

const maxDepth = 512

func (d *Decoder) next(skip bool) (any, error) {
	return d.value(skip, 0)
}

func (d *Decoder) value(skip bool, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("msgpack: nesting deeper than 512 levels")
	}
	start := d.pos
	switch k := d.PeekKind(); k {
	case KindNil:
		d.pos++
		return nil, nil
	case KindBool:
		return d.ReadBool()
	case KindInt:
		v, neg, err := d.readInteger("integer")
		if err != nil || neg || v <= math.MaxInt64 {
			return int64(v), err
		}
		return v, nil
	case KindFloat:
		if d.data[d.pos] == 0xca {
			f, err := d.ReadFloat64()
			return float32(f), err
		}
		return d.ReadFloat64()
	case KindString:
		if skip {
			n, _, err := d.strLen()
			if err == nil {
				_, err = d.take(n)
			}
			if err != nil {
				d.pos = start
			}
			return nil, err
		}
		return d.ReadString()
	case KindBin:
		if skip {
			n, _, err := d.binLen()
			if err == nil {
				_, err = d.take(n)
			}
			if err != nil {
				d.pos = start
			}
			return nil, err
		}
		return d.ReadBin()
	case KindArray:
		n, err := d.ReadArrayHeader()
		if err != nil {
			return nil, err
		}
		var out []any
		if !skip {
			out = make([]any, 0, min(n, d.Remaining()))
		}
		for i := 0; i < n; i++ {
			v, err := d.value(skip, depth+1)
			if err != nil {
				d.pos = start
				return nil, err
			}
			if !skip {
				out = append(out, v)
			}
		}
		return out, nil
	case KindMap:
		n, err := d.ReadMapHeader()
		if err != nil {
			return nil, err
		}
		var out map[string]any
		if !skip {
			out = make(map[string]any, min(n, d.Remaining()))
		}
		for i := 0; i < n; i++ {
			var key any
			if skip {
				_, err = d.value(true, depth+1)
			} else if d.PeekKind() != KindString {
				err = errors.New("msgpack: map key " + strconv.Itoa(i) + " is a " + d.PeekKind().String() + "; only string keys are supported")
			} else {
				key, err = d.ReadString()
			}
			if err != nil {
				d.pos = start
				return nil, err
			}
			v, err := d.value(skip, depth+1)
			if err != nil {
				d.pos = start
				return nil, err
			}
			if !skip {
				out[key.(string)] = v
			}
		}
		return out, nil
	case KindExt:
		x, err := d.readExt()
		if err != nil {
			d.pos = start
		}
		return x, err
	default:
		return nil, d.typeErr("a value")
	}
}

func (d *Decoder) readExt() (Ext, error) {
	b := d.data[d.pos]
	d.pos++
	var n uint64
	var err error
	switch b {
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		n = 1 << (b - 0xd4)
	case 0xc7, 0xc8, 0xc9:
		n, err = d.readN(1 << (b - 0xc7))
	}
	if err != nil {
		return Ext{}, err
	}
	t, err := d.take(1)
	if err != nil {
		return Ext{}, err
	}
	data, err := d.take(int(n))
	if err != nil {
		return Ext{}, err
	}
	return Ext{Type: int8(t[0]), Data: append([]byte{}, data...)}, nil
}

// DecodeInto reads the next value into the value v points to; see
// [Unmarshal] for the supported targets.
func (d *Decoder) DecodeInto(v any) error {
	var err error
	switch p := v.(type) {
	case Unmarshaler:
		return p.UnmarshalMsgpack(d)
	case *any:
		*p, err = d.Decode()
	case *bool:
		*p, err = d.ReadBool()
	case *int:
		var n int64
		n, err = d.ReadIntRange(math.MinInt, math.MaxInt)
		*p = int(n)
	case *int8:
		var n int64
		n, err = d.ReadIntRange(math.MinInt8, math.MaxInt8)
		*p = int8(n)
	case *int16:
		var n int64
		n, err = d.ReadIntRange(math.MinInt16, math.MaxInt16)
		*p = int16(n)
	case *int32:
		var n int64
		n, err = d.ReadIntRange(math.MinInt32, math.MaxInt32)
		*p = int32(n)
	case *int64:
		*p, err = d.ReadInt()
	case *uint:
		var n uint64
		n, err = d.readUintMax(math.MaxUint)
		*p = uint(n)
	case *uint8:
		var n uint64
		n, err = d.readUintMax(math.MaxUint8)
		*p = uint8(n)
	case *uint16:
		var n uint64
		n, err = d.readUintMax(math.MaxUint16)
		*p = uint16(n)
	case *uint32:
		var n uint64
		n, err = d.readUintMax(math.MaxUint32)
		*p = uint32(n)
	case *uint64:
		*p, err = d.ReadUint()
	case *float64:
		*p, err = d.ReadFloat64()
	case *float32:
		var f float64
		f, err = d.ReadFloat64()
		*p = float32(f)
	case *string:
		*p, err = d.ReadString()
	case *[]byte:
		*p, err = d.ReadBin()
	case *Raw:
		*p, err = d.ReadRaw()
	case *[]string:
		if d.TryNil() {
			*p = nil
			return nil
		}
		*p, err = d.ReadStringArray()
	case *[]any:
		if d.TryNil() {
			*p = nil
			return nil
		}
		if d.PeekKind() != KindArray {
			return d.typeErr("array")
		}
		var x any
		x, err = d.Decode()
		if err == nil {
			*p = x.([]any)
		}
	case *map[string]any:
		if d.TryNil() {
			*p = nil
			return nil
		}
		if d.PeekKind() != KindMap {
			return d.typeErr("map")
		}
		var x any
		x, err = d.Decode()
		if err == nil {
			*p = x.(map[string]any)
		}
	case *map[string]string:
		if d.TryNil() {
			*p = nil
			return nil
		}
		m := map[string]string{}
		err = d.ReadMap(func(key string) error {
			s, err := d.ReadString()
			m[key] = s
			return err
		})
		*p = m
	case *map[string][]string:
		if d.TryNil() {
			*p = nil
			return nil
		}
		*p, err = d.ReadHeaders()
	default:
		return errors.New("msgpack: cannot decode into a value of type " + errtext.TypeName(v) + " (implement msgpack.Unmarshaler on a pointer)")
	}
	return err
}

func (d *Decoder) readUintMax(hi uint64) (uint64, error) {
	n, err := d.ReadUint()
	if err == nil && n > hi {
		return 0, errors.New("msgpack: integer " + strconv.FormatUint(n, 10) + " is out of range [0, " + strconv.FormatUint(hi, 10) + "]")
	}
	return n, err
}
