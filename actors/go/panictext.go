package actor

import (
	"reflect"
	"sort"
	"strconv"
	"strings"

	"lattice.dev/actor/internal/errtext"
)

// panicText renders a handler's panic value for the line "panic in the
// handler for OP: VALUE", without package fmt:
//
//   - a string as it is, an error's Error(), a String() method's result;
//   - a value of a built-in bool, integer or float type as fmt prints it;
//   - anything else as "(TYPE) VALUE", e.g. "(main.Code) 7",
//     "(main.Point) {1 2}", "(*main.Point) &{1 2}", "([]string) [a b]".
//
// VALUE is close to fmt's %v, but made with the few reflect calls that keep
// the module small: nested values' Error and String methods are not called,
// map entries are sorted by their text, long or deep values are cut short
// with "...", a nested pointer is its address, and a channel or function is
// "non-nil".
func panicText(value any) (text string) {
	defer func() {
		if r := recover(); r != nil {
			text = "(" + errtext.TypeName(value) + ") (its Error or String method panicked)"
		}
	}()
	switch v := value.(type) {
	case nil:
		return "<nil>"
	case string:
		return v
	case error:
		return v.Error()
	case interface{ String() string }:
		return v.String()
	case bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, uintptr, float32, float64:
		return valueText(reflect.ValueOf(value), 0)
	}
	return "(" + errtext.TypeName(value) + ") " + valueText(reflect.ValueOf(value), 0)
}

const (
	panicMaxDepth = 4  // nesting shown before "..."
	panicMaxItems = 32 // elements of a slice, array or map shown before "..."
)

// valueText renders v for panicText. It avoids Value.Interface and
// Value.Pointer: either links reflect's method-call machinery, about 100 kB.
func valueText(v reflect.Value, depth int) string {
	if !v.IsValid() {
		return "<nil>"
	}
	switch v.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits())
	case reflect.Complex64, reflect.Complex128:
		return strconv.FormatComplex(v.Complex(), 'g', -1, v.Type().Bits())
	case reflect.String:
		return v.String()
	case reflect.Interface:
		if v.IsNil() {
			return "<nil>"
		}
		return valueText(v.Elem(), depth)
	case reflect.Pointer:
		if v.IsNil() {
			return "<nil>"
		}
		if depth == 0 {
			switch v.Elem().Kind() {
			case reflect.Struct, reflect.Array, reflect.Slice, reflect.Map:
				return "&" + valueText(v.Elem(), depth+1)
			}
		}
		return "0x" + strconv.FormatUint(uint64(v.Elem().UnsafeAddr()), 16)
	case reflect.Chan, reflect.Func, reflect.UnsafePointer:
		if v.IsNil() {
			return "<nil>"
		}
		return "non-nil"
	}
	if depth >= panicMaxDepth {
		return "..."
	}
	var parts []string
	more := false
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if i == panicMaxItems {
				more = true
				break
			}
			parts = append(parts, valueText(v.Index(i), depth+1))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			parts = append(parts, valueText(it.Key(), depth+1)+":"+valueText(it.Value(), depth+1))
		}
		sort.Strings(parts)
		if len(parts) > panicMaxItems {
			parts, more = parts[:panicMaxItems], true
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			parts = append(parts, valueText(v.Field(i), depth+1))
		}
	}
	if more {
		parts = append(parts, "...")
	}
	text := strings.Join(parts, " ")
	switch v.Kind() {
	case reflect.Map:
		return "map[" + text + "]"
	case reflect.Struct:
		return "{" + text + "}"
	}
	return "[" + text + "]"
}
