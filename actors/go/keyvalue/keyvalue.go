// Package keyvalue is a typed client for the lattice:keyvalue contract.
//
// The package-level functions use the actor's default link; [Link] names
// another one, for an actor linked to two stores:
//
//	visits, err := keyvalue.Increment("visits:"+user, 1) // default link
//	cache := keyvalue.Link("cache")                       // the link named "cache"
//	err = cache.SetWithTTL(user, []byte("seen"), 60)
//
// The actor needs lattice:keyvalue in its claims and a link to a key-value
// provider (`lattice ctl link put ACTOR PROVIDER lattice:keyvalue
// [--link-name NAME]`); otherwise every call fails with an *actor.HostError
// naming the actor, the contract and the link name.
//
// Keys are any UTF-8 string (the empty one too); values any bytes, the empty
// value too. Counters written by [Increment] are stored as decimal text, so
// [Get] of a counter of 42 returns "42". The request and response types below
// are the contract's payloads (docs/contracts.md describes them field by
// field); they implement msgpack.Marshaler and msgpack.Unmarshaler.
package keyvalue

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"lattice.dev/actor"
	"lattice.dev/actor/internal/errtext"
	"lattice.dev/actor/msgpack"
)

// The contract id and its operations.
const (
	Contract    = "lattice:keyvalue"
	OpGet       = "KeyValue.Get"
	OpSet       = "KeyValue.Set"
	OpDelete    = "KeyValue.Delete"
	OpContains  = "KeyValue.Contains"
	OpIncrement = "KeyValue.Increment"
	OpKeys      = "KeyValue.Keys"
)

// Store is the key-value store behind one of the actor's links.
type Store struct {
	link string
}

// Default is the store behind the default link (what the package-level
// functions use).
var Default = Store{}

// Link returns the store behind the link named name ("" and "default" both
// mean the default link).
func Link(name string) Store { return Store{link: name} }

// LinkName is the link name passed to the host ("" for the default link).
func (s Store) LinkName() string { return s.link }

// Get returns the value of key, and whether it exists (an existing empty value
// is found with an empty, non-nil value).
func (s Store) Get(key string) (value []byte, found bool, err error) {
	var reply GetResponse
	if err := s.call(OpGet, GetRequest{Key: key}, &reply, "a GetResponse"); err != nil {
		return nil, false, err
	}
	if !reply.Found {
		return nil, false, nil
	}
	if reply.Value == nil {
		reply.Value = []byte{}
	}
	return reply.Value, true, nil
}

// Set sets key to value with no expiry (clearing any earlier expiry).
func (s Store) Set(key string, value []byte) error {
	return s.send(SetRequest{Key: key, Value: value})
}

// SetWithTTL sets key to value, expiring ttlSecs seconds from now (at least
// 1; providers refuse 0).
func (s Store) SetWithTTL(key string, value []byte, ttlSecs uint64) error {
	return s.send(SetRequest{Key: key, Value: value, TTLSecs: &ttlSecs})
}

func (s Store) send(req SetRequest) error {
	payload, err := msgpack.Marshal(req)
	if err != nil {
		return err
	}
	// The reply is msgpack nil; its bytes carry nothing, so any are accepted.
	_, err = actor.HostCall(s.link, Contract, OpSet, payload)
	return err
}

// Delete deletes key and reports whether it existed.
func (s Store) Delete(key string) (bool, error) {
	var existed bool
	err := s.call(OpDelete, KeyRequest{Key: key}, &existed, "a bool")
	return existed, err
}

// Contains reports whether key exists (and has not expired).
func (s Store) Contains(key string) (bool, error) {
	var exists bool
	err := s.call(OpContains, KeyRequest{Key: key}, &exists, "a bool")
	return exists, err
}

// Increment adds delta (may be negative) to the counter at key, atomically,
// and returns the new value. A missing key counts as 0; the counter is stored
// as decimal text. Fails when the value is not a decimal int64 or the sum
// overflows.
func (s Store) Increment(key string, delta int64) (int64, error) {
	var n int64
	err := s.call(OpIncrement, IncrementRequest{Key: key, Delta: delta}, &n, "an int64")
	return n, err
}

// MaxKeysPerPage is the largest page [Store.KeysPage] may ask for.
const MaxKeysPerPage = 1000

// TooManyKeys is what a provider's refusal of Keys without a limit says when
// the keys are too many for one answer: [Store.Keys] then asks in pages.
const TooManyKeys = "too many for one answer"

// Keys returns the keys starting with prefix (all keys for ""), sorted,
// however many: asked for in one answer, and when the provider finds them
// too many for one ([TooManyKeys]), in pages of [MaxKeysPerPage]
// ([Store.KeysPage] takes one page).
func (s Store) Keys(prefix string) ([]string, error) {
	var keys []string
	err := s.call(OpKeys, KeysRequest{Prefix: prefix}, &keys, "an array of strings")
	var he *actor.HostError
	if err != nil && !(errors.As(err, &he) && strings.Contains(he.Message, TooManyKeys)) {
		return nil, err
	}
	if err == nil {
		if keys == nil {
			keys = []string{}
		}
		return keys, nil
	}
	keys = []string{}
	var after *string
	for {
		page, err := s.KeysPage(prefix, after, MaxKeysPerPage)
		if err != nil {
			return nil, err
		}
		keys = append(keys, page...)
		if len(page) < MaxKeysPerPage {
			return keys, nil
		}
		last := page[len(page)-1]
		after = &last
	}
}

// KeysPage returns one page of the keys starting with prefix, sorted: at most
// limit (1 to [MaxKeysPerPage]) of those after *after (nil: from the first).
// Fewer than limit means the listing ended; else ask again after the page's
// last key. A limit out of range is refused by the provider, naming the range.
// An answer that is not such a page (more keys than limit, not sorted, or
// keys not after *after: a provider that does not know pages) is an error, so
// a listing cannot go round in circles.
func (s Store) KeysPage(prefix string, after *string, limit uint32) ([]string, error) {
	var keys []string
	req := KeysRequest{Prefix: prefix, After: after, Limit: &limit}
	if err := s.call(OpKeys, req, &keys, "an array of strings"); err != nil {
		return nil, err
	}
	behind := after != nil && len(keys) > 0 && keys[0] <= *after
	sorted := true
	for i := 1; i < len(keys); i++ {
		sorted = sorted && keys[i-1] < keys[i]
	}
	if len(keys) > int(limit) || behind || !sorted {
		return nil, errors.New("the reply to " + Contract + " " + OpKeys + " is not a page of at most " +
			strconv.FormatUint(uint64(limit), 10) + " keys: " + strconv.Itoa(len(keys)) +
			" keys (a provider that does not know pages?)")
	}
	if keys == nil {
		keys = []string{}
	}
	return keys, nil
}

func (s Store) call(op string, req msgpack.Marshaler, reply any, what string) error {
	payload, err := msgpack.Marshal(req)
	if err != nil {
		return err
	}
	raw, err := actor.HostCall(s.link, Contract, op, payload)
	if err != nil {
		return err
	}
	if err := msgpack.Unmarshal(raw, reply); err != nil {
		return errtext.Wrap("could not decode msgpack: the reply to "+Contract+" "+op+" is not "+what+": ", err)
	}
	return nil
}

// Get returns the value of key through the default link; see [Store.Get].
func Get(key string) ([]byte, bool, error) { return Default.Get(key) }

// Set sets key through the default link; see [Store.Set].
func Set(key string, value []byte) error { return Default.Set(key, value) }

// SetWithTTL sets key with an expiry through the default link; see
// [Store.SetWithTTL].
func SetWithTTL(key string, value []byte, ttlSecs uint64) error {
	return Default.SetWithTTL(key, value, ttlSecs)
}

// Delete deletes key through the default link; see [Store.Delete].
func Delete(key string) (bool, error) { return Default.Delete(key) }

// Contains reports whether key exists, through the default link; see
// [Store.Contains].
func Contains(key string) (bool, error) { return Default.Contains(key) }

// Increment adds delta to the counter at key through the default link; see
// [Store.Increment].
func Increment(key string, delta int64) (int64, error) { return Default.Increment(key, delta) }

// Keys lists keys through the default link; see [Store.Keys].
func Keys(prefix string) ([]string, error) { return Default.Keys(prefix) }

// KeysPage lists one page of keys through the default link; see
// [Store.KeysPage].
func KeysPage(prefix string, after *string, limit uint32) ([]string, error) {
	return Default.KeysPage(prefix, after, limit)
}

// GetRequest is the argument of KeyValue.Get: {key}.
type GetRequest struct {
	Key string
}

// MarshalMsgpack writes {"key": Key}.
func (r GetRequest) MarshalMsgpack(e *msgpack.Encoder) error { return writeKey(e, r.Key) }

// UnmarshalMsgpack reads {"key"}.
func (r *GetRequest) UnmarshalMsgpack(d *msgpack.Decoder) error { return readKey(d, &r.Key) }

// KeyRequest is the argument of KeyValue.Delete and KeyValue.Contains: {key}.
type KeyRequest struct {
	Key string
}

// MarshalMsgpack writes {"key": Key}.
func (r KeyRequest) MarshalMsgpack(e *msgpack.Encoder) error { return writeKey(e, r.Key) }

// UnmarshalMsgpack reads {"key"}.
func (r *KeyRequest) UnmarshalMsgpack(d *msgpack.Decoder) error { return readKey(d, &r.Key) }

func writeKey(e *msgpack.Encoder, key string) error {
	e.WriteMapHeader(1)
	e.WriteString("key")
	e.WriteString(key)
	return nil
}

func readKey(d *msgpack.Decoder, key *string) error {
	seen := false
	err := d.ReadMap(func(field string) error {
		if field == "key" {
			seen = true
			var err error
			*key, err = d.ReadString()
			return err
		}
		return d.Skip()
	})
	if err == nil && !seen {
		err = errors.New(`missing field "key"`)
	}
	return err
}

// GetResponse is the result of KeyValue.Get: {found, value}.
type GetResponse struct {
	Found bool
	Value []byte
}

// MarshalMsgpack writes {"found", "value" (bin)}.
func (r GetResponse) MarshalMsgpack(e *msgpack.Encoder) error {
	e.WriteMapHeader(2)
	e.WriteString("found")
	e.WriteBool(r.Found)
	e.WriteString("value")
	e.WriteBin(r.Value)
	return nil
}

// UnmarshalMsgpack reads {"found", "value"}; value may be missing or nil.
func (r *GetResponse) UnmarshalMsgpack(d *msgpack.Decoder) error {
	seen := false
	err := d.ReadMap(func(field string) error {
		var err error
		switch field {
		case "found":
			seen = true
			r.Found, err = d.ReadBool()
		case "value":
			if !d.TryNil() {
				r.Value, err = d.ReadBin()
			}
		default:
			err = d.Skip()
		}
		return err
	})
	if err == nil && !seen {
		err = errors.New(`missing field "found"`)
	}
	return err
}

// SetRequest is the argument of KeyValue.Set: {key, value, ttl_secs?}.
type SetRequest struct {
	Key   string
	Value []byte
	// TTLSecs, when set, makes the key expire that many seconds later
	// (at least 1); nil means never.
	TTLSecs *uint64
}

// MarshalMsgpack writes {"key", "value" (bin), "ttl_secs" when set}.
func (r SetRequest) MarshalMsgpack(e *msgpack.Encoder) error {
	if r.TTLSecs != nil {
		e.WriteMapHeader(3)
	} else {
		e.WriteMapHeader(2)
	}
	e.WriteString("key")
	e.WriteString(r.Key)
	e.WriteString("value")
	e.WriteBin(r.Value)
	if r.TTLSecs != nil {
		e.WriteString("ttl_secs")
		e.WriteUint(*r.TTLSecs)
	}
	return nil
}

// UnmarshalMsgpack reads {"key", "value", "ttl_secs"}.
func (r *SetRequest) UnmarshalMsgpack(d *msgpack.Decoder) error {
	seen := false
	err := d.ReadMap(func(field string) error {
		var err error
		switch field {
		case "key":
			seen = true
			r.Key, err = d.ReadString()
		case "value":
			if !d.TryNil() {
				r.Value, err = d.ReadBin()
			}
		case "ttl_secs":
			if !d.TryNil() {
				var n uint64
				n, err = d.ReadUint()
				r.TTLSecs = &n
			}
		default:
			err = d.Skip()
		}
		return err
	})
	if err == nil && !seen {
		err = errors.New(`missing field "key"`)
	}
	return err
}

// IncrementRequest is the argument of KeyValue.Increment: {key, delta}.
type IncrementRequest struct {
	Key   string
	Delta int64
}

// MarshalMsgpack writes {"key", "delta"}.
func (r IncrementRequest) MarshalMsgpack(e *msgpack.Encoder) error {
	e.WriteMapHeader(2)
	e.WriteString("key")
	e.WriteString(r.Key)
	e.WriteString("delta")
	e.WriteInt(r.Delta)
	return nil
}

// UnmarshalMsgpack reads {"key", "delta"}.
func (r *IncrementRequest) UnmarshalMsgpack(d *msgpack.Decoder) error {
	var seenKey, seenDelta bool
	err := d.ReadMap(func(field string) error {
		var err error
		switch field {
		case "key":
			seenKey = true
			r.Key, err = d.ReadString()
		case "delta":
			seenDelta = true
			r.Delta, err = d.ReadInt()
		default:
			err = d.Skip()
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case !seenKey:
		return errors.New(`missing field "key"`)
	case !seenDelta:
		return errors.New(`missing field "delta"`)
	}
	return nil
}

// KeysRequest is the argument of KeyValue.Keys: {prefix, after?, limit?}.
type KeysRequest struct {
	Prefix string
	// After: only keys sorted after this one; nil: from the first.
	After *string
	// Limit: at most this many keys (a page); nil: every key.
	Limit *uint32
}

// MarshalMsgpack writes {"prefix", "after"?, "limit"?} (absent when nil).
func (r KeysRequest) MarshalMsgpack(e *msgpack.Encoder) error {
	n := 1
	if r.After != nil {
		n++
	}
	if r.Limit != nil {
		n++
	}
	e.WriteMapHeader(n)
	e.WriteString("prefix")
	e.WriteString(r.Prefix)
	if r.After != nil {
		e.WriteString("after")
		e.WriteString(*r.After)
	}
	if r.Limit != nil {
		e.WriteString("limit")
		e.WriteUint(uint64(*r.Limit))
	}
	return nil
}

// UnmarshalMsgpack reads {"prefix", "after", "limit"} (missing or nil means
// "", nil and nil).
func (r *KeysRequest) UnmarshalMsgpack(d *msgpack.Decoder) error {
	return d.ReadMap(func(field string) error {
		switch field {
		case "prefix":
			var err error
			r.Prefix, err = d.ReadString()
			return err
		case "after":
			if d.TryNil() {
				r.After = nil
				return nil
			}
			after, err := d.ReadString()
			r.After = &after
			return err
		case "limit":
			if d.TryNil() {
				r.Limit = nil
				return nil
			}
			n, err := d.ReadIntRange(0, math.MaxUint32)
			limit := uint32(n)
			r.Limit = &limit
			return err
		}
		return d.Skip()
	})
}
