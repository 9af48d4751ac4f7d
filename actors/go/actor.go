// Package actor writes Lattice actors in Go.
//
// An actor is a WebAssembly module for wasm32-wasip1 that speaks the waPC
// guest ABI (docs/abi.md). Importing this package gives the module that ABI:
// it exports __guest_call (with //go:wasmexport) and imports the host's wapc
// functions (with //go:wasmimport). The actor registers a handler per
// operation, in an init function:
//
//	package main
//
//	import "lattice.dev/actor"
//
//	func init() {
//		actor.HandleTyped("SayHello", func(name string) (string, error) {
//			return "Hello, " + name + "!", nil
//		})
//		actor.Handle("Echo", func(payload []byte) ([]byte, error) {
//			return payload, nil
//		})
//	}
//
//	func main() {} // required by Go, never run in a c-shared module
//
// # Building
//
// With the standard toolchain (Go 1.24 or later):
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -buildmode=c-shared -o hello.wasm .
//
// (-trimpath and -ldflags="-s -w" are optional: they leave build paths, the
// symbol table and DWARF out of the module.)
//
// -buildmode=c-shared is required: it makes a WASI reactor, which exports
// _initialize (Go's runtime start-up and every init function, so the handlers
// are registered) instead of _start. The host runs _initialize once per
// instance and then calls __guest_call for each request. Without it the
// module is a WASI command whose runtime exits when main returns, and the host
// refuses to start it, saying so.
//
// With TinyGo (0.34 or later):
//
//	tinygo build -target=wasip1 -buildmode=c-shared -o hello.wasm .
//
// Registering in init works for both. A TinyGo command build (no
// -buildmode=c-shared) is not supported: TinyGo refuses //go:wasmexport calls
// after main has returned.
//
// # Payloads
//
// Payloads are msgpack. [HandleTyped] and [CallTyped] encode and decode with
// the [lattice.dev/actor/msgpack] package (strings, integers, floats, bools,
// binary data, arrays, maps with string keys, and types implementing its
// Marshaler and Unmarshaler). [Handle] and [Call] work on raw bytes.
//
// # Contracts
//
// [lattice.dev/actor/keyvalue] is a typed client for the lattice:keyvalue
// contract; [lattice.dev/actor/httpserver] has the request and response types
// of lattice:httpserver and registers HttpServer.HandleRequest. Other
// contracts are reachable with [HostCall]. An actor may call a contract only
// when its claims list it (add them with `lattice claims put`) and a link for
// it exists.
//
// # Instances, goroutines, panics
//
// One instance serves one call at a time, so handlers and package-level state
// need no locking; state lives as long as the instance (the host keeps warm
// instances and may start more, so do not rely on it across calls).
// Goroutines a handler starts run only while a call is in progress: wait for
// them (a channel, a sync.WaitGroup) before returning. A handler that blocks
// with nothing left to run ends in Go's deadlock error, which traps the
// instance.
//
// A panic in a handler traps the instance: the SDK logs the panic value and
// the stack, writes "panic in the handler for OP: VALUE" to stderr (the host
// adds the last stderr lines to the caller's error), and exits, so the host
// discards the instance and the next call gets a fresh one. (TinyGo cannot
// recover on wasm: there the instance traps with TinyGo's own "panic: VALUE"
// on stderr.) Return an error for failures the caller should handle; it
// reaches the caller as the call's error message.
//
// # Outside a host
//
// Built for any other platform (go test), the wasm imports are replaced:
// [HostCall] returns [ErrNoHost] unless a test installed a stand-in with
// [MockHost], [Log] writes to stderr, and [Dispatch] runs handlers the way the
// host would.
package actor

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"lattice.dev/actor/internal/errtext"
	"lattice.dev/actor/msgpack"
)

// HandlerFunc handles one operation: it gets the call's payload and returns
// the reply, or an error whose message becomes the call's error.
type HandlerFunc func(payload []byte) ([]byte, error)

var registry struct {
	sync.Mutex
	handlers map[string]HandlerFunc
	order    []string
}

// Handle registers handler for operation, replacing an earlier one. Call it
// from an init function (see the package documentation).
func Handle(operation string, handler HandlerFunc) {
	if handler == nil {
		panic("actor.Handle: nil handler for operation " + operation)
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.handlers == nil {
		registry.handlers = map[string]HandlerFunc{}
	}
	if _, ok := registry.handlers[operation]; !ok {
		registry.order = append(registry.order, operation)
	}
	registry.handlers[operation] = handler
}

// HandleTyped registers a handler that takes and returns msgpack-encoded
// values. The payload is decoded into In (an empty payload reads as msgpack
// nil); the result is encoded; an error is passed on. A payload that does not
// decode fails with an error naming the operation and the type, e.g.
// `SayHello: payload is not valid msgpack for string: ...`.
//
// In and Out are the types [msgpack.Marshal] and [msgpack.Unmarshal] support:
// basic types, []byte, slices and maps of them, and types implementing
// msgpack.Marshaler (Out) and msgpack.Unmarshaler (*In).
func HandleTyped[In, Out any](operation string, handler func(In) (Out, error)) {
	Handle(operation, func(payload []byte) ([]byte, error) {
		var in In
		if len(payload) == 0 {
			payload = msgpack.Nil
		}
		if err := msgpack.Unmarshal(payload, &in); err != nil {
			return nil, errtext.Wrap(operation+": payload is not valid msgpack for "+errtext.TypeName(in)+": ", err)
		}
		out, err := handler(in)
		if err != nil {
			return nil, err
		}
		reply, err := msgpack.Marshal(out)
		if err != nil {
			return nil, errtext.Wrap(operation+": could not encode the reply ("+errtext.TypeName(out)+") as msgpack: ", err)
		}
		return reply, nil
	})
}

// Operations returns the registered operations, in registration order.
func Operations() []string {
	registry.Lock()
	defer registry.Unlock()
	return append([]string(nil), registry.order...)
}

// Dispatch runs the handler registered for operation, as the host's call
// does. Useful in unit tests of an actor. An unknown operation is an error
// that lists the registered ones:
// `unknown operation "Foo"; this actor handles: SayHello, Echo`.
func Dispatch(operation string, payload []byte) ([]byte, error) {
	registry.Lock()
	handler := registry.handlers[operation]
	registry.Unlock()
	if handler == nil {
		return nil, unknownOperation(operation)
	}
	return handler(payload)
}

func unknownOperation(operation string) error {
	known := Operations()
	if len(known) == 0 {
		return errors.New("unknown operation " + strconv.Quote(operation) + "; this actor handles no operations (did an init function register any with actor.Handle?)")
	}
	return errors.New("unknown operation " + strconv.Quote(operation) + "; this actor handles: " + strings.Join(known, ", "))
}

// ErrNoHost is what host calls return outside a Lattice host (native builds,
// unit tests) when no [MockHost] is installed.
var ErrNoHost = errors.New("host calls are only available inside a Lattice host")

// HostError is a failed host call: the host's (or the callee's) message, and
// the call it answers.
type HostError struct {
	Binding   string // the link name passed ("" = default)
	Namespace string // contract id or actor id
	Operation string
	Message   string // what the host said
}

func (e *HostError) Error() string {
	return "call to " + e.Namespace + " " + e.Operation + " failed: " + e.Message
}

// HostCallRequest is one host call, as a [MockHost] stand-in sees it.
type HostCallRequest struct {
	Binding   string
	Namespace string
	Operation string
	Payload   []byte
}

var mock func(HostCallRequest) ([]byte, error)

// MockHost makes host calls go to fn instead of the host, for unit tests;
// call the returned function to remove it. An error fn returns reaches the
// caller as a [HostError] (unless it already is one, or is [ErrNoHost]).
func MockHost(fn func(HostCallRequest) ([]byte, error)) (restore func()) {
	previous := mock
	mock = fn
	return func() { mock = previous }
}

// HostCall calls the host. binding is the link name ("" means the default
// link), namespace a contract id such as "lattice:keyvalue" or another actor's
// id, operation e.g. "KeyValue.Get", payload the request (msgpack by
// convention). It returns the reply bytes or a [*HostError].
func HostCall(binding, namespace, operation string, payload []byte) ([]byte, error) {
	if fn := mock; fn != nil {
		reply, err := fn(HostCallRequest{Binding: binding, Namespace: namespace, Operation: operation, Payload: payload})
		if err != nil {
			var he *HostError
			if errors.As(err, &he) || errors.Is(err, ErrNoHost) {
				return nil, err
			}
			return nil, &HostError{Binding: binding, Namespace: namespace, Operation: operation, Message: err.Error()}
		}
		return reply, nil
	}
	return hostCall(binding, namespace, operation, payload)
}

// Call calls operation on another actor, by actor id, with raw payload bytes,
// and returns the reply bytes. The callee may run on this host or any other
// host of the lattice.
func Call(target, operation string, payload []byte) ([]byte, error) {
	return HostCall("", target, operation, payload)
}

// CallTyped calls operation on another actor with arg encoded as msgpack and
// decodes the reply into an Out:
//
//	greeting, err := actor.CallTyped[string]("hello", "SayHello", "Ada")
func CallTyped[Out any](target, operation string, arg any) (Out, error) {
	var out Out
	payload, err := msgpack.Marshal(arg)
	if err != nil {
		return out, errtext.Wrap("call to "+target+" "+operation+": could not encode the argument: ", err)
	}
	reply, err := Call(target, operation, payload)
	if err != nil {
		return out, err
	}
	if err := msgpack.Unmarshal(reply, &out); err != nil {
		return out, errtext.Wrap("the reply of "+target+" "+operation+" is not valid msgpack for "+errtext.TypeName(out)+": ", err)
	}
	return out, nil
}

// Log writes a line to the host's log for this actor (waPC __console_log).
// Outside a host it goes to stderr.
func Log(message string) { consoleLog(message) }

// Logf formats like fmt.Sprintf and logs the result.
//
// Logf links package fmt, which adds about half a megabyte to the module
// (the Go linker drops fmt from actors that never call Logf, as the rest of
// this SDK does not use it). To keep an actor small, build the line yourself
// (strconv for numbers) and use [Log].
func Logf(format string, args ...any) { consoleLog(fmt.Sprintf(format, args...)) }

// guestCall runs one call for __guest_call: the handler for op, with panics
// turned into a trap that names the operation.
func guestCall(op string, payload []byte) (reply []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			handlerPanicked(op, r)
		}
	}()
	return Dispatch(op, payload)
}

// handlerPanicked reports a handler's panic and ends the instance. The panic
// value and the stack go to the host's log (through __console_log); one line
// naming the operation goes to stderr, which the host quotes in the caller's
// error (it keeps the last stderr bytes of a trapped call). Exiting traps the
// instance, so the host discards it.
func handlerPanicked(op string, value any) {
	line := "panic in the handler for " + op + ": " + panicText(value)
	if stack := debug.Stack(); len(stack) > 0 {
		consoleLog(line + "\n" + string(stack))
	}
	setGuestError(line)
	os.Stderr.WriteString(line + "\n")
	os.Exit(2)
}
