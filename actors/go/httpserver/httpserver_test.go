package httpserver

import (
	"bytes"
	"strings"
	"testing"

	"lattice.dev/actor"
	"lattice.dev/actor/msgpack"
)

func TestConstructors(t *testing.T) {
	r := OK([]byte{1, 2})
	if r.Status != 200 || len(r.Headers) != 0 {
		t.Errorf("%+v", r)
	}
	r = Text("hi")
	if r.Header("Content-Type") != TextPlain || string(r.Body) != "hi" {
		t.Errorf("%+v", r)
	}
	r = JSON([]byte(`{"count":3}`))
	if r.Headers["content-type"][0] != "application/json" {
		t.Errorf("%+v", r)
	}
	r = Status(503, "busy")
	if r.Status != 503 || r.Header("content-type") != TextPlain {
		t.Errorf("%+v", r)
	}
	if r := Status(204, ""); len(r.Headers) != 0 {
		t.Errorf("%+v", r)
	}
	if r := NotFound(); r.Status != 404 || string(r.Body) != "not found\n" {
		t.Errorf("%+v", r)
	}
	r = JSON([]byte("1")).WithStatus(201).WithContentType("application/problem+json").WithHeader("X-Id", "7")
	if r.Status != 201 || r.Header("content-type") != "application/problem+json" || r.Header("x-id") != "7" || r.Header("missing") != "" {
		t.Errorf("%+v", r)
	}
}

func TestWireShapes(t *testing.T) {
	b, err := Text("ok").Encode()
	if err != nil {
		t.Fatal(err)
	}
	// fixmap of 3; "status" then 200 as uint8
	if !bytes.HasPrefix(b, append([]byte{0x83, 0xa6}, append([]byte("status"), 0xcc, 200)...)) {
		t.Errorf("% x", b)
	}
	if !bytes.Contains(b, []byte{0xc4, 2, 'o', 'k'}) {
		t.Errorf("body is bin: % x", b)
	}
	resp, err := DecodeResponse(b)
	if err != nil || resp.Status != 200 || string(resp.Body) != "ok" || resp.Header("content-type") != TextPlain {
		t.Errorf("%+v %v", resp, err)
	}

	req := Request{Method: "GET", Path: "/a", Query: "x=1", Headers: map[string][]string{"accept": {"a/b", "c/d"}}, Body: []byte{0}}
	b = req.Encode()
	if b[0] != 0x85 || !bytes.Contains(b, []byte{0xc4, 1, 0}) {
		t.Errorf("% x", b)
	}
	back, err := DecodeRequest(b)
	if err != nil || back.Method != "GET" || back.Path != "/a" || back.Query != "x=1" || back.Header("Accept") != "a/b" || len(back.Headers["accept"]) != 2 {
		t.Errorf("%+v %v", back, err)
	}
	// A minimal request decodes.
	min, _ := msgpack.Marshal(map[string]any{"method": "GET", "path": "/"})
	if r, err := DecodeRequest(min); err != nil || r.Path != "/" || r.Body != nil {
		t.Errorf("%+v %v", r, err)
	}
	noPath, _ := msgpack.Marshal(map[string]any{"method": "GET"})
	if _, err := DecodeRequest(noPath); err == nil || !strings.Contains(err.Error(), `"path"`) {
		t.Errorf("missing path: %v", err)
	}
	if _, err := (Response{Status: -1}).Encode(); err == nil {
		t.Error("negative status")
	}
}

func TestHandleRegistersHandleRequest(t *testing.T) {
	Handle(func(r Request) (Response, error) {
		if r.Path == "/fail" {
			return Response{}, errTest
		}
		return Text(r.Method + " " + r.Path), nil
	})
	reply, err := actor.Dispatch(HandleRequest, Request{Method: "GET", Path: "/x"}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := DecodeResponse(reply)
	if err != nil || string(resp.Body) != "GET /x" {
		t.Errorf("%+v %v", resp, err)
	}
	if _, err := actor.Dispatch(HandleRequest, Request{Method: "GET", Path: "/fail"}.Encode()); err != errTest {
		t.Errorf("%v", err)
	}
	_, err = actor.Dispatch(HandleRequest, []byte{0x01})
	if err == nil || !strings.HasPrefix(err.Error(), "HttpServer.HandleRequest: payload is not valid msgpack for httpserver.Request") {
		t.Errorf("%v", err)
	}
}

type testError struct{}

func (testError) Error() string { return "boom" }

var errTest error = testError{}
