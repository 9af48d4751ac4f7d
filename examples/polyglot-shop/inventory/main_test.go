package main

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"lattice.dev/actor"
	"lattice.dev/actor/keyvalue"
	"lattice.dev/actor/msgpack"
)

// standIn plays the key-value provider with a map, as the host would.
func standIn(t *testing.T, store map[string][]byte) func() {
	return actor.MockHost(func(c actor.HostCallRequest) ([]byte, error) {
		if c.Binding != "" || c.Namespace != keyvalue.Contract {
			t.Errorf("unexpected host call %+v", c)
		}
		switch c.Operation {
		case keyvalue.OpGet:
			var req keyvalue.GetRequest
			if err := msgpack.Unmarshal(c.Payload, &req); err != nil {
				return nil, err
			}
			v, ok := store[req.Key]
			return msgpack.Marshal(keyvalue.GetResponse{Found: ok, Value: v})
		case keyvalue.OpIncrement:
			var req keyvalue.IncrementRequest
			if err := msgpack.Unmarshal(c.Payload, &req); err != nil {
				return nil, err
			}
			n, _ := strconv.ParseInt(string(store[req.Key]), 10, 64)
			n += req.Delta
			store[req.Key] = []byte(strconv.FormatInt(n, 10))
			return msgpack.Marshal(n)
		}
		return nil, errors.New("unexpected operation " + c.Operation)
	})
}

func call[Out any](t *testing.T, op string, arg msgpack.Marshaler) (Out, error) {
	t.Helper()
	var out Out
	payload, err := msgpack.Marshal(arg)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := actor.Dispatch(op, payload)
	if err != nil {
		return out, err
	}
	if err := msgpack.Unmarshal(reply, &out); err != nil {
		t.Fatal(err)
	}
	return out, nil
}

func TestStockStartsAtZeroAndAddStockCounts(t *testing.T) {
	store := map[string][]byte{}
	defer standIn(t, store)()
	got, err := call[StockLevel](t, "Stock", StockRequest{Item: "apple"})
	if err != nil || got != (StockLevel{Item: "apple", Stock: 0}) {
		t.Fatalf("%+v %v", got, err)
	}
	for _, want := range []int64{5, 12} {
		got, err = call[StockLevel](t, "AddStock", AddStockRequest{Item: "apple", Qty: want - got.Stock})
		if err != nil || got != (StockLevel{Item: "apple", Stock: want}) {
			t.Fatalf("%+v %v", got, err)
		}
	}
	got, err = call[StockLevel](t, "Stock", StockRequest{Item: "apple"})
	if err != nil || got.Stock != 12 {
		t.Fatalf("%+v %v", got, err)
	}
	if string(store["stock/apple"]) != "12" || len(store) != 1 {
		t.Errorf("%q", store)
	}
}

func TestBadRequestsAreRefused(t *testing.T) {
	store := map[string][]byte{"stock/odd": []byte("many")}
	defer standIn(t, store)()
	for _, c := range []struct {
		op   string
		arg  msgpack.Marshaler
		want string
	}{
		{"Stock", StockRequest{}, "item must not be empty"},
		{"AddStock", AddStockRequest{Item: "fig", Qty: 0}, "qty must be at least 1, got 0"},
		{"AddStock", AddStockRequest{Item: "fig", Qty: -3}, "qty must be at least 1, got -3"},
		{"Stock", StockRequest{Item: "odd"}, `stock of "odd" is not a number: "many"`},
	} {
		if _, err := call[StockLevel](t, c.op, c.arg); err == nil || err.Error() != c.want {
			t.Errorf("%s %+v: %v", c.op, c.arg, err)
		}
	}
	// A payload without the fields names the operation and the missing field.
	empty, _ := msgpack.Marshal(map[string]any{})
	if _, err := actor.Dispatch("AddStock", empty); err == nil || !strings.Contains(err.Error(), `missing field "item"`) {
		t.Errorf("%v", err)
	}
}

func TestKeyValueFailuresPassThrough(t *testing.T) {
	defer actor.MockHost(func(actor.HostCallRequest) ([]byte, error) {
		return nil, errors.New("provider keyvalue: bucket unavailable")
	})()
	_, err := call[StockLevel](t, "Stock", StockRequest{Item: "pear"})
	if err == nil || err.Error() != "call to lattice:keyvalue KeyValue.Get failed: provider keyvalue: bucket unavailable" {
		t.Errorf("%v", err)
	}
}
