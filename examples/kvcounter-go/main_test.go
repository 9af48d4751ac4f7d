package main

import (
	"errors"
	"strings"
	"testing"

	"lattice.dev/actor"
	"lattice.dev/actor/httpserver"
	"lattice.dev/actor/keyvalue"
	"lattice.dev/actor/msgpack"
)

func TestKeysAreCounterPlusPath(t *testing.T) {
	for path, want := range map[string]string{"/a": "counter/a", "/": "counter/", "": "counter", "/ü%20x": "counter/ü%20x"} {
		if got := counterKey(path); got != want {
			t.Errorf("%q: %q", path, got)
		}
	}
}

func TestCountIsJSON(t *testing.T) {
	r := countResponse(42, nil)
	if r.Status != 200 || string(r.Body) != `{"count":42}` || r.Header("content-type") != "application/json" || len(r.Headers) != 1 {
		t.Errorf("%+v", r)
	}
	if r := countResponse(-1, nil); string(r.Body) != `{"count":-1}` {
		t.Errorf("%s", r.Body)
	}
	r = countResponse(0, errors.New("store down"))
	if r.Status != 500 || string(r.Body) != "store down\n" {
		t.Errorf("%+v", r)
	}
}

func TestHandleRequestWithAStandInStore(t *testing.T) {
	store := map[string]int64{}
	restore := actor.MockHost(func(c actor.HostCallRequest) ([]byte, error) {
		if c.Binding != "" || c.Namespace != "lattice:keyvalue" || c.Operation != "KeyValue.Increment" {
			t.Errorf("%+v", c)
		}
		var req keyvalue.IncrementRequest
		if err := msgpack.Unmarshal(c.Payload, &req); err != nil {
			return nil, err
		}
		store[req.Key] += req.Delta
		return msgpack.Marshal(store[req.Key])
	})
	defer restore()
	hit := func(path string) string {
		reply, err := actor.Dispatch(httpserver.HandleRequest, httpserver.Request{Method: "GET", Path: path}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := httpserver.DecodeResponse(reply)
		if err != nil {
			t.Fatal(err)
		}
		return string(resp.Body)
	}
	for _, c := range [][2]string{{"/a", `{"count":1}`}, {"/a", `{"count":2}`}, {"/b", `{"count":1}`}} {
		if got := hit(c[0]); got != c[1] {
			t.Errorf("%s: %s", c[0], got)
		}
	}
	if store["counter/a"] != 2 || store["counter/b"] != 1 {
		t.Errorf("%v", store)
	}
}

func TestRefusedCallIsA500(t *testing.T) {
	restore := actor.MockHost(func(actor.HostCallRequest) ([]byte, error) {
		return nil, errors.New(`actor kvcounter-go may not call contract lattice:keyvalue through link "default": there is no such link`)
	})
	defer restore()
	r, err := handleRequest(httpserver.Request{Method: "GET", Path: "/"})
	if err != nil || r.Status != 500 || !strings.HasPrefix(string(r.Body), `call to lattice:keyvalue KeyValue.Increment failed: actor kvcounter-go may not call`) {
		t.Errorf("%+v %v", r, err)
	}
	restore()
	if r, _ := handleRequest(httpserver.Request{Method: "GET", Path: "/"}); r.Status != 500 {
		t.Errorf("without host: %+v", r)
	}
}
