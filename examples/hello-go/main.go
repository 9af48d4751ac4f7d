// hello-go: the smallest useful Lattice actor in Go, the twin of the Rust
// examples/hello.
//
// Operations:
//
//   - SayHello: payload a msgpack string name; replies with the msgpack string
//     "Hello, <name>!".
//   - Echo: replies with the payload bytes unchanged.
//   - Call: payload a map {target: str, operation: str, payload: bin}; calls
//     that operation on another actor (any language, any host) and replies
//     with the callee's reply bytes, or its error.
//   - Count: replies with a msgpack integer, how many times Count has run in
//     this instance (1, 2, 3, ...): state lives as long as the instance.
//   - Panic: panics, which traps the instance (the host reports it and the next
//     call gets a fresh instance, whose Count starts again at 1).
//
// Build (see the Makefile):
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -buildmode=c-shared -o hello-go.wasm .
//	tinygo build -target=wasip1 -buildmode=c-shared -o hello-go.wasm .
package main

import (
	"errors"

	"lattice.dev/actor"
	"lattice.dev/actor/msgpack"
)

// PanicMessage is the value the Panic operation panics with.
const PanicMessage = "hello-go panicked on purpose"

func init() {
	actor.HandleTyped("SayHello", sayHello)
	actor.Handle("Echo", echo)
	actor.Handle("Call", call)
	actor.HandleTyped("Count", count)
	actor.Handle("Panic", func([]byte) ([]byte, error) { panic(PanicMessage) })
}

// main is required by Go but never runs: a -buildmode=c-shared module runs
// its init functions (registering the handlers) from _initialize.
func main() {}

// greeting builds the greeting for name.
func greeting(name string) string { return "Hello, " + name + "!" }

func sayHello(name string) (string, error) { return greeting(name), nil }

func echo(payload []byte) ([]byte, error) { return payload, nil }

// calls counts the Count calls of this instance.
var calls int64

func count(any) (int64, error) {
	calls++
	return calls, nil
}

// callRequest is the payload of Call.
type callRequest struct {
	Target    string
	Operation string
	Payload   []byte
}

func (c *callRequest) UnmarshalMsgpack(d *msgpack.Decoder) error {
	return d.ReadMap(func(field string) error {
		var err error
		switch field {
		case "target":
			c.Target, err = d.ReadString()
		case "operation":
			c.Operation, err = d.ReadString()
		case "payload":
			c.Payload, err = d.ReadBin()
		default:
			err = d.Skip()
		}
		return err
	})
}

func call(payload []byte) ([]byte, error) {
	var req callRequest
	if err := msgpack.Unmarshal(payload, &req); err != nil {
		return nil, errors.New("Call: payload is not a {target, operation, payload} map: " + err.Error())
	}
	if req.Target == "" || req.Operation == "" {
		return nil, errors.New("Call: target and operation must not be empty")
	}
	actor.Log("calling " + req.Target + " " + req.Operation)
	return actor.Call(req.Target, req.Operation, req.Payload)
}
