// inventory: the stock levels of the polyglot shop, in Go, kept in
// lattice:keyvalue (one decimal counter per item under "stock/{item}").
//
// Operations (msgpack maps keyed by field name):
//
//	Stock     {item}       → {item, stock}   KV Get of stock/{item}; missing = 0
//	AddStock  {item, qty}  → {item, stock}   KV Increment of stock/{item} by qty (≥ 1)
//
// An empty item, a qty below 1 or a stored value that is not a number fail
// with a message saying so; a failed key-value call fails with the host's
// message. The default keyvalue link must exist (see ../app.toml).
//
// Build, with claims for lattice:keyvalue (see the Makefile):
//
//	make            # go build -buildmode=c-shared, then lattice claims put
package main

import (
	"errors"
	"strconv"

	"lattice.dev/actor"
	"lattice.dev/actor/keyvalue"
	"lattice.dev/actor/msgpack"
)

func init() {
	actor.HandleTyped("Stock", stock)
	actor.HandleTyped("AddStock", addStock)
}

// main is required by Go but never runs in a -buildmode=c-shared module.
func main() {}

// StockRequest is the argument of Stock: {item}.
type StockRequest struct {
	Item string
}

// UnmarshalMsgpack reads {"item"}; unknown fields are ignored.
func (r *StockRequest) UnmarshalMsgpack(d *msgpack.Decoder) error {
	seen := false
	err := d.ReadMap(func(key string) error {
		if key == "item" {
			seen = true
			var err error
			r.Item, err = d.ReadString()
			return err
		}
		return d.Skip()
	})
	if err == nil && !seen {
		err = errors.New(`missing field "item"`)
	}
	return err
}

// MarshalMsgpack writes {"item"}.
func (r StockRequest) MarshalMsgpack(e *msgpack.Encoder) error {
	e.WriteMapHeader(1)
	e.WriteString("item")
	e.WriteString(r.Item)
	return nil
}

// AddStockRequest is the argument of AddStock: {item, qty}.
type AddStockRequest struct {
	Item string
	Qty  int64
}

// UnmarshalMsgpack reads {"item", "qty"}; unknown fields are ignored.
func (r *AddStockRequest) UnmarshalMsgpack(d *msgpack.Decoder) error {
	var seenItem, seenQty bool
	err := d.ReadMap(func(key string) error {
		var err error
		switch key {
		case "item":
			seenItem = true
			r.Item, err = d.ReadString()
		case "qty":
			seenQty = true
			r.Qty, err = d.ReadInt()
		default:
			err = d.Skip()
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case !seenItem:
		return errors.New(`missing field "item"`)
	case !seenQty:
		return errors.New(`missing field "qty"`)
	}
	return nil
}

// MarshalMsgpack writes {"item", "qty"}.
func (r AddStockRequest) MarshalMsgpack(e *msgpack.Encoder) error {
	e.WriteMapHeader(2)
	e.WriteString("item")
	e.WriteString(r.Item)
	e.WriteString("qty")
	e.WriteInt(r.Qty)
	return nil
}

// StockLevel is the reply of both operations: {item, stock}.
type StockLevel struct {
	Item  string
	Stock int64
}

// MarshalMsgpack writes {"item", "stock"}.
func (s StockLevel) MarshalMsgpack(e *msgpack.Encoder) error {
	e.WriteMapHeader(2)
	e.WriteString("item")
	e.WriteString(s.Item)
	e.WriteString("stock")
	e.WriteInt(s.Stock)
	return nil
}

// UnmarshalMsgpack reads {"item", "stock"}.
func (s *StockLevel) UnmarshalMsgpack(d *msgpack.Decoder) error {
	return d.ReadMap(func(key string) error {
		var err error
		switch key {
		case "item":
			s.Item, err = d.ReadString()
		case "stock":
			s.Stock, err = d.ReadInt()
		default:
			err = d.Skip()
		}
		return err
	})
}

// stockKey is the key-value key holding item's stock level.
func stockKey(item string) string { return "stock/" + item }

func checkItem(item string) error {
	if item == "" {
		return errors.New("item must not be empty")
	}
	return nil
}

// stock is Stock: the item's stock level, 0 when it was never stocked.
func stock(req StockRequest) (StockLevel, error) {
	if err := checkItem(req.Item); err != nil {
		return StockLevel{}, err
	}
	value, found, err := keyvalue.Get(stockKey(req.Item))
	if err != nil {
		return StockLevel{}, err
	}
	level := StockLevel{Item: req.Item}
	if found {
		level.Stock, err = strconv.ParseInt(string(value), 10, 64)
		if err != nil {
			return StockLevel{}, errors.New("stock of " + strconv.Quote(req.Item) + " is not a number: " + strconv.Quote(string(value)))
		}
	}
	return level, nil
}

// addStock is AddStock: adds qty to the item's stock level and returns the
// new level. Atomic across replicas and hosts (KeyValue.Increment).
func addStock(req AddStockRequest) (StockLevel, error) {
	if err := checkItem(req.Item); err != nil {
		return StockLevel{}, err
	}
	if req.Qty < 1 {
		return StockLevel{}, errors.New("qty must be at least 1, got " + strconv.FormatInt(req.Qty, 10))
	}
	n, err := keyvalue.Increment(stockKey(req.Item), req.Qty)
	if err != nil {
		return StockLevel{}, err
	}
	return StockLevel{Item: req.Item, Stock: n}, nil
}
