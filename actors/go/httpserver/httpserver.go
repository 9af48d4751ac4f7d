// Package httpserver serves HTTP through the lattice:httpserver contract.
//
// The HTTP server provider calls HttpServer.HandleRequest on the actor with a
// [Request] and sends the [Response] the actor returns. Register the handler
// with [Handle], in an init function:
//
//	func init() {
//		httpserver.Handle(func(req httpserver.Request) (httpserver.Response, error) {
//			switch {
//			case req.Method == "GET" && req.Path == "/":
//				return httpserver.Text("hello\n"), nil
//			case req.Method == "POST" && req.Path == "/echo":
//				return httpserver.OK(req.Body), nil
//			}
//			return httpserver.NotFound(), nil
//		})
//	}
//
// An error from the handler becomes a 500 whose body starts with
// "actor error: "; return a Response with the status you mean where the client
// should see something else. The actor needs a link (`lattice ctl link put
// ACTOR PROVIDER lattice:httpserver address=HOST:PORT`); it does not need
// lattice:httpserver in its claims to be called, but listing it documents
// what the actor is for.
package httpserver

import (
	"errors"
	"strconv"
	"strings"

	"lattice.dev/actor"
	"lattice.dev/actor/msgpack"
)

// The contract id, the operation the provider calls, and the link config keys.
const (
	Contract        = "lattice:httpserver"
	HandleRequest   = "HttpServer.HandleRequest"
	ConfigAddress   = "address"
	ConfigMaxBody   = "max_body_bytes"
	TextPlain       = "text/plain; charset=utf-8"
	ApplicationJSON = "application/json"
)

// Request is an HTTP request (the contract's HttpRequest).
type Request struct {
	Method string // GET, POST, ...
	Path   string // percent-encoded as received, e.g. /items/42
	Query  string // the raw query string without '?'; "" when none
	// Headers: names in lowercase, each with all its values in order.
	Headers map[string][]string
	Body    []byte
}

// Header returns the first value of header name (any case), or "".
func (r Request) Header(name string) string { return firstHeader(r.Headers, name) }

// MarshalMsgpack writes the request as a map with named fields.
func (r Request) MarshalMsgpack(e *msgpack.Encoder) error {
	e.WriteMapHeader(5)
	e.WriteString("method")
	e.WriteString(r.Method)
	e.WriteString("path")
	e.WriteString(r.Path)
	e.WriteString("query")
	e.WriteString(r.Query)
	e.WriteString("headers")
	e.WriteHeaders(r.Headers)
	e.WriteString("body")
	e.WriteBin(r.Body)
	return nil
}

// UnmarshalMsgpack reads a request; method and path are required.
func (r *Request) UnmarshalMsgpack(d *msgpack.Decoder) error {
	var method, path bool
	err := d.ReadMap(func(field string) error {
		var err error
		switch field {
		case "method":
			method = true
			r.Method, err = d.ReadString()
		case "path":
			path = true
			r.Path, err = d.ReadString()
		case "query":
			if !d.TryNil() {
				r.Query, err = d.ReadString()
			}
		case "headers":
			if !d.TryNil() {
				r.Headers, err = d.ReadHeaders()
			}
		case "body":
			if !d.TryNil() {
				r.Body, err = d.ReadBin()
			}
		default:
			err = d.Skip()
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case !method:
		return errors.New(`missing field "method"`)
	case !path:
		return errors.New(`missing field "path"`)
	}
	return nil
}

// Encode returns the request as msgpack.
func (r Request) Encode() []byte {
	var e msgpack.Encoder
	_ = r.MarshalMsgpack(&e)
	return e.Bytes()
}

// DecodeRequest decodes a msgpack HttpRequest.
func DecodeRequest(payload []byte) (Request, error) {
	var r Request
	err := msgpack.Unmarshal(payload, &r)
	return r, err
}

// Response is an HTTP response (the contract's HttpResponse).
type Response struct {
	Status  int // 200-999
	Headers map[string][]string
	Body    []byte
}

// MarshalMsgpack writes the response as a map with named fields.
func (r Response) MarshalMsgpack(e *msgpack.Encoder) error {
	if r.Status < 0 {
		return errors.New("invalid HTTP status " + strconv.Itoa(r.Status))
	}
	e.WriteMapHeader(3)
	e.WriteString("status")
	e.WriteUint(uint64(r.Status))
	e.WriteString("headers")
	e.WriteHeaders(r.Headers)
	e.WriteString("body")
	e.WriteBin(r.Body)
	return nil
}

// UnmarshalMsgpack reads a response; status is required.
func (r *Response) UnmarshalMsgpack(d *msgpack.Decoder) error {
	status := false
	err := d.ReadMap(func(field string) error {
		var err error
		switch field {
		case "status":
			status = true
			var n int64
			n, err = d.ReadIntRange(0, 65535)
			r.Status = int(n)
		case "headers":
			if !d.TryNil() {
				r.Headers, err = d.ReadHeaders()
			}
		case "body":
			if !d.TryNil() {
				r.Body, err = d.ReadBin()
			}
		default:
			err = d.Skip()
		}
		return err
	})
	if err == nil && !status {
		err = errors.New(`missing field "status"`)
	}
	return err
}

// Encode returns the response as msgpack.
func (r Response) Encode() ([]byte, error) {
	var e msgpack.Encoder
	if err := r.MarshalMsgpack(&e); err != nil {
		return nil, err
	}
	return e.Bytes(), nil
}

// DecodeResponse decodes a msgpack HttpResponse.
func DecodeResponse(payload []byte) (Response, error) {
	var r Response
	err := msgpack.Unmarshal(payload, &r)
	return r, err
}

// OK is a 200 with body and no content-type.
func OK(body []byte) Response { return Response{Status: 200, Body: body} }

// Text is a 200 with a text body, content-type text/plain; charset=utf-8.
func Text(body string) Response {
	return OK([]byte(body)).WithContentType(TextPlain)
}

// JSON is a 200 with body (already JSON text), content-type application/json.
func JSON(body []byte) Response {
	return OK(body).WithContentType(ApplicationJSON)
}

// Status is code with a text body (content-type text/plain; charset=utf-8
// when the body is not empty).
func Status(code int, body string) Response {
	r := Response{Status: code, Body: []byte(body)}
	if body != "" {
		r = r.WithContentType(TextPlain)
	}
	return r
}

// NotFound is a 404 with the body "not found\n".
func NotFound() Response { return Status(404, "not found\n") }

// WithStatus returns r with the status code replaced.
func (r Response) WithStatus(code int) Response {
	r.Status = code
	return r
}

// WithHeader returns r with header name (lowercased) set to value, replacing
// earlier values.
func (r Response) WithHeader(name, value string) Response {
	headers := make(map[string][]string, len(r.Headers)+1)
	for k, v := range r.Headers {
		if !strings.EqualFold(k, name) {
			headers[k] = v
		}
	}
	headers[strings.ToLower(name)] = []string{value}
	r.Headers = headers
	return r
}

// WithContentType returns r with content-type set.
func (r Response) WithContentType(contentType string) Response {
	return r.WithHeader("content-type", contentType)
}

// Header returns the first value of header name (any case), or "".
func (r Response) Header(name string) string { return firstHeader(r.Headers, name) }

func firstHeader(headers map[string][]string, name string) string {
	values, ok := headers[name]
	if !ok {
		for k, v := range headers {
			if strings.EqualFold(k, name) {
				values = v
				break
			}
		}
	}
	if len(values) == 0 {
		return ""
	}
	return values[0]
}

// Handle registers handler for HttpServer.HandleRequest.
func Handle(handler func(Request) (Response, error)) {
	actor.HandleTyped(HandleRequest, handler)
}
