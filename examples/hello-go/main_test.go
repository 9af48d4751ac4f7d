package main

import (
	"bytes"
	"strings"
	"testing"

	"lattice.dev/actor"
	"lattice.dev/actor/msgpack"
)

func TestSayHelloAndEcho(t *testing.T) {
	name, _ := msgpack.Marshal("World")
	reply, err := actor.Dispatch("SayHello", name)
	var got string
	if err != nil || msgpack.Unmarshal(reply, &got) != nil || got != "Hello, World!" {
		t.Errorf("%q %v", got, err)
	}
	if reply, err := actor.Dispatch("Echo", []byte{0, 1, 0xc1}); err != nil || !bytes.Equal(reply, []byte{0, 1, 0xc1}) {
		t.Errorf("% x %v", reply, err)
	}
	_, err = actor.Dispatch("Bye", nil)
	if err == nil || err.Error() != `unknown operation "Bye"; this actor handles: SayHello, Echo, Call, Count, Panic` {
		t.Errorf("%v", err)
	}
}

func TestCountCountsPerInstance(t *testing.T) {
	for want := int64(1); want <= 2; want++ {
		reply, err := actor.Dispatch("Count", nil)
		var n int64
		if err != nil || msgpack.Unmarshal(reply, &n) != nil || n != want {
			t.Errorf("%d %v", n, err)
		}
	}
}

func TestCallRelays(t *testing.T) {
	restore := actor.MockHost(func(r actor.HostCallRequest) ([]byte, error) {
		if r.Namespace != "hello" || r.Operation != "SayHello" {
			t.Errorf("%+v", r)
		}
		return []byte("reply"), nil
	})
	defer restore()
	payload, _ := msgpack.Marshal(map[string]any{"target": "hello", "operation": "SayHello", "payload": []byte{0xa1, 'x'}})
	reply, err := actor.Dispatch("Call", payload)
	if err != nil || string(reply) != "reply" {
		t.Errorf("%q %v", reply, err)
	}
	if _, err := actor.Dispatch("Call", []byte{0x80}); err == nil || !strings.Contains(err.Error(), "must not be empty") {
		t.Errorf("%v", err)
	}
}
