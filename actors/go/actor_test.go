package actor

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"lattice.dev/actor/msgpack"
)

func reset() {
	registry.Lock()
	registry.handlers = nil
	registry.order = nil
	registry.Unlock()
}

func mp(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRawAndTypedHandlers(t *testing.T) {
	reset()
	Handle("Echo", func(p []byte) ([]byte, error) { return p, nil })
	HandleTyped("SayHello", func(name string) (string, error) {
		if name == "" {
			return "", errors.New("name must not be empty")
		}
		return "Hello, " + name + "!", nil
	})
	HandleTyped("Add", func(pair []any) (int64, error) {
		return pair[0].(int64) + pair[1].(int64), nil
	})
	HandleTyped("Nothing", func(in any) (any, error) { return in, nil })

	if got, err := Dispatch("Echo", []byte{1, 0xc1}); err != nil || string(got) != "\x01\xc1" {
		t.Errorf("Echo: %v %v", got, err)
	}
	reply, err := Dispatch("SayHello", mp(t, "Ada"))
	var s string
	if err != nil || msgpack.Unmarshal(reply, &s) != nil || s != "Hello, Ada!" {
		t.Errorf("SayHello: %q %v", s, err)
	}
	if _, err := Dispatch("SayHello", mp(t, "")); err == nil || err.Error() != "name must not be empty" {
		t.Errorf("handler error: %v", err)
	}
	_, err = Dispatch("SayHello", mp(t, 7))
	if err == nil || !strings.HasPrefix(err.Error(), "SayHello: payload is not valid msgpack for string: ") {
		t.Errorf("bad payload: %v", err)
	}
	reply, err = Dispatch("Add", mp(t, []any{2, 40}))
	var n int64
	if err != nil || msgpack.Unmarshal(reply, &n) != nil || n != 42 {
		t.Errorf("Add: %d %v", n, err)
	}
	// An empty payload reads as nil.
	if reply, err := Dispatch("Nothing", nil); err != nil || string(reply) != "\xc0" {
		t.Errorf("empty payload: % x %v", reply, err)
	}
	if got := Operations(); !reflect.DeepEqual(got, []string{"Echo", "SayHello", "Add", "Nothing"}) {
		t.Errorf("Operations: %v", got)
	}
}

func TestUnknownOperationListsTheKnownOnes(t *testing.T) {
	reset()
	_, err := Dispatch("Nope", nil)
	if err == nil || !strings.Contains(err.Error(), "handles no operations") {
		t.Errorf("no handlers: %v", err)
	}
	Handle("SayHello", func(p []byte) ([]byte, error) { return p, nil })
	Handle("Echo", func(p []byte) ([]byte, error) { return p, nil })
	Handle("SayHello", func(p []byte) ([]byte, error) { return nil, nil }) // replaces, keeps order
	_, err = Dispatch("Bye", nil)
	if err == nil || err.Error() != `unknown operation "Bye"; this actor handles: SayHello, Echo` {
		t.Errorf("unknown: %v", err)
	}
}

func TestHostCallsWithoutHostAndWithMock(t *testing.T) {
	if _, err := Call("other", "SayHello", nil); !errors.Is(err, ErrNoHost) {
		t.Errorf("no host: %v", err)
	}
	var seen []HostCallRequest
	restore := MockHost(func(r HostCallRequest) ([]byte, error) {
		seen = append(seen, r)
		if r.Namespace == "broken" {
			return nil, errors.New("no responders")
		}
		var name string
		if err := msgpack.Unmarshal(r.Payload, &name); err != nil {
			return nil, err
		}
		return msgpack.Marshal("Hello, " + name + "!")
	})
	defer restore()
	greeting, err := CallTyped[string]("hello", "SayHello", "Go")
	if err != nil || greeting != "Hello, Go!" {
		t.Errorf("CallTyped: %q %v", greeting, err)
	}
	if seen[0].Binding != "" || seen[0].Namespace != "hello" || seen[0].Operation != "SayHello" {
		t.Errorf("request: %+v", seen[0])
	}
	_, err = Call("broken", "X", nil)
	var he *HostError
	if !errors.As(err, &he) || err.Error() != "call to broken X failed: no responders" {
		t.Errorf("host error: %v", err)
	}
	if _, err := CallTyped[int64]("hello", "SayHello", "x"); err == nil ||
		!strings.HasPrefix(err.Error(), "the reply of hello SayHello is not valid msgpack for int64") {
		t.Errorf("reply type: %v", err)
	}
	restore()
	if _, err := HostCall("", "lattice:keyvalue", "KeyValue.Get", nil); !errors.Is(err, ErrNoHost) {
		t.Errorf("restored: %v", err)
	}
}

func TestLogOutsideHost(t *testing.T) {
	Log("hello from a test")
	Logf("%d + %d", 1, 2)
}
