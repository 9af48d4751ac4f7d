// kvcounter-go: counts HTTP requests, per path, in key-value storage; the Go
// twin of the Rust examples/kvcounter, with the same behaviour.
//
// Every request that reaches it through lattice:httpserver
// (HttpServer.HandleRequest), whatever its method, increments the counter
// under the key "counter" + path (/a → counter/a, / → counter/) through
// lattice:keyvalue and answers 200 with content-type: application/json and
// {"count":N}, the new value. When the key-value call fails the answer is 500
// with the error message as text.
//
// Build, with claims for both contracts (see the Makefile):
//
//	make            # go build -buildmode=c-shared, then lattice claims put
//
// Deploy:
//
//	lattice up &
//	lattice ctl start actor kvcounter-go.wasm
//	lattice ctl start provider builtin:httpserver
//	lattice ctl start provider builtin:keyvalue
//	lattice ctl link put kvcounter-go httpserver lattice:httpserver address=127.0.0.1:8080
//	lattice ctl link put kvcounter-go keyvalue lattice:keyvalue
//	curl http://127.0.0.1:8080/a      # {"count":1}
package main

import (
	"strconv"

	"lattice.dev/actor/httpserver"
	"lattice.dev/actor/keyvalue"
)

func init() {
	httpserver.Handle(handleRequest)
}

// main is required by Go but never runs in a -buildmode=c-shared module.
func main() {}

// counterKey is the key counting requests to path: "counter" + path.
func counterKey(path string) string { return "counter" + path }

// countResponse is the answer to the outcome of the increment: 200
// {"count":N}, or 500 with the error message.
func countResponse(count int64, err error) httpserver.Response {
	if err != nil {
		return httpserver.Status(500, err.Error()+"\n")
	}
	return httpserver.JSON([]byte(`{"count":` + strconv.FormatInt(count, 10) + `}`))
}

// handleRequest is HttpServer.HandleRequest: increments the path's counter
// and reports it.
func handleRequest(req httpserver.Request) (httpserver.Response, error) {
	return countResponse(keyvalue.Increment(counterKey(req.Path), 1)), nil
}
