package keyvalue

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"lattice.dev/actor"
	"lattice.dev/actor/msgpack"
)

func s(v string) []byte {
	b, _ := msgpack.Marshal(v)
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// recording installs a stand-in host that answers every call with reply and
// records the calls.
func recording(t *testing.T, reply []byte) *[]actor.HostCallRequest {
	t.Helper()
	var calls []actor.HostCallRequest
	restore := actor.MockHost(func(r actor.HostCallRequest) ([]byte, error) {
		calls = append(calls, r)
		return reply, nil
	})
	t.Cleanup(restore)
	return &calls
}

func TestIncrementMatchesTheContractExampleBytes(t *testing.T) {
	calls := recording(t, []byte{0x02})
	n, err := Increment("n", 1)
	if err != nil || n != 2 {
		t.Fatalf("%d %v", n, err)
	}
	c := (*calls)[0]
	want := []byte{0x82, 0xa3, 0x6b, 0x65, 0x79, 0xa1, 0x6e, 0xa5, 0x64, 0x65, 0x6c, 0x74, 0x61, 0x01}
	if c.Binding != "" || c.Namespace != "lattice:keyvalue" || c.Operation != "KeyValue.Increment" || !bytes.Equal(c.Payload, want) {
		t.Errorf("%+v", c)
	}
	if _, err := Link("counters").Increment("n", -5); err != nil {
		t.Fatal(err)
	}
	c = (*calls)[1]
	if c.Binding != "counters" || !bytes.Equal(c.Payload, cat([]byte{0x82}, s("key"), s("n"), s("delta"), []byte{0xfb})) {
		t.Errorf("%+v", c)
	}
}

func TestGet(t *testing.T) {
	found, _ := msgpack.Marshal(GetResponse{Found: true, Value: []byte("42")})
	calls := recording(t, found)
	v, ok, err := Get("k")
	if err != nil || !ok || string(v) != "42" {
		t.Errorf("%q %v %v", v, ok, err)
	}
	if !bytes.Equal((*calls)[0].Payload, cat([]byte{0x81}, s("key"), s("k"))) {
		t.Errorf("% x", (*calls)[0].Payload)
	}

	empty, _ := msgpack.Marshal(map[string]any{"found": true}) // value left out
	recording(t, empty)
	v, ok, err = Get("k")
	if err != nil || !ok || v == nil || len(v) != 0 {
		t.Errorf("empty value: %v %v %v", v, ok, err)
	}
	missing, _ := msgpack.Marshal(map[string]any{"found": false, "value": []byte{}})
	recording(t, missing)
	v, ok, err = Get("k")
	if err != nil || ok || v != nil {
		t.Errorf("missing: %v %v %v", v, ok, err)
	}
}

func TestSetWireShape(t *testing.T) {
	calls := recording(t, []byte{0xc0})
	if err := Set("k", []byte("ab")); err != nil {
		t.Fatal(err)
	}
	if err := SetWithTTL("k", []byte{0, 255}, 30); err != nil {
		t.Fatal(err)
	}
	if err := Link("cache").Set("k", nil); err != nil {
		t.Fatal(err)
	}
	got := *calls
	if got[0].Operation != "KeyValue.Set" || !bytes.Equal(got[0].Payload, cat([]byte{0x82}, s("key"), s("k"), s("value"), []byte{0xc4, 2}, []byte("ab"))) {
		t.Errorf("set: % x", got[0].Payload)
	}
	if !bytes.Equal(got[1].Payload, cat([]byte{0x83}, s("key"), s("k"), s("value"), []byte{0xc4, 2, 0, 255}, s("ttl_secs"), []byte{30})) {
		t.Errorf("ttl: % x", got[1].Payload)
	}
	if got[2].Binding != "cache" || !bytes.Equal(got[2].Payload, cat([]byte{0x82}, s("key"), s("k"), s("value"), []byte{0xc4, 0})) {
		t.Errorf("cache: %+v", got[2])
	}
	// Any reply bytes are fine for Set.
	recording(t, nil)
	if err := Set("k", nil); err != nil {
		t.Error(err)
	}
}

func TestBoolAndListReplies(t *testing.T) {
	calls := recording(t, []byte{0xc3})
	if ok, err := Delete("k"); !ok || err != nil {
		t.Errorf("delete: %v %v", ok, err)
	}
	if ok, err := Contains("k"); !ok || err != nil {
		t.Errorf("contains: %v %v", ok, err)
	}
	if (*calls)[0].Operation != "KeyValue.Delete" || (*calls)[1].Operation != "KeyValue.Contains" {
		t.Errorf("%+v", *calls)
	}
	list, _ := msgpack.Marshal([]string{"a1", "a2"})
	calls = recording(t, list)
	keys, err := Keys("a")
	if err != nil || strings.Join(keys, ",") != "a1,a2" {
		t.Errorf("keys: %v %v", keys, err)
	}
	// {prefix: "a"}: one answer first, pages only when refused
	if !bytes.Equal((*calls)[0].Payload, cat([]byte{0x81}, s("prefix"), s("a"))) {
		t.Errorf("% x", (*calls)[0].Payload)
	}
	recording(t, []byte{0x90})
	if keys, err := Keys(""); err != nil || keys == nil || len(keys) != 0 {
		t.Errorf("no keys: %#v %v", keys, err)
	}
}

// provider stands in for a key-value provider holding stored keys k0000...:
// it refuses Keys without a limit past unpagedMax keys, and honours pages
// unless ignoresPages. It returns the log of (after/limit) asked.
func provider(t *testing.T, n, unpagedMax int, ignoresPages bool) *[]string {
	var stored []string
	for i := 0; i < n; i++ {
		stored = append(stored, fmt.Sprintf("k%04d", i))
	}
	asked := &[]string{}
	restore := actor.MockHost(func(c actor.HostCallRequest) ([]byte, error) {
		var req KeysRequest
		if err := msgpack.Unmarshal(c.Payload, &req); err != nil {
			return nil, err
		}
		after, limit := "-", "-"
		if req.After != nil {
			after = *req.After
		}
		if req.Limit != nil {
			limit = fmt.Sprint(*req.Limit)
		}
		*asked = append(*asked, after+"/"+limit)
		if req.Limit == nil && n > unpagedMax {
			return nil, errors.New("KeyValue.Keys: the keys are more than 512 KiB, " + TooManyKeys + "; ask for them in pages")
		}
		page := []string{}
		for _, k := range stored {
			paged := req.Limit != nil && !ignoresPages
			if paged && ((req.After != nil && k <= *req.After) || len(page) >= int(*req.Limit)) {
				continue
			}
			page = append(page, k)
		}
		return msgpack.Marshal(page)
	})
	t.Cleanup(restore)
	return asked
}

func TestKeysAsksOnceAndInPagesOnlyWhenRefused(t *testing.T) {
	asked := provider(t, 2500, 5000, false)
	if keys, err := Keys(""); err != nil || len(keys) != 2500 || strings.Join(*asked, " ") != "-/-" {
		t.Errorf("one answer: %d keys, %v, asked %v", len(keys), err, *asked)
	}
	asked = provider(t, 2500, 100, false)
	keys, err := Keys("")
	if err != nil || len(keys) != 2500 || keys[0] != "k0000" || keys[2499] != "k2499" {
		t.Errorf("pages: %d keys, %v", len(keys), err)
	}
	if strings.Join(*asked, " ") != "-/- -/1000 k0999/1000 k1999/1000" {
		t.Errorf("pages asked: %v", *asked)
	}
	// An exact multiple of the page: the last page is empty, no key twice.
	asked = provider(t, 2000, 100, false)
	if keys, err := Keys(""); err != nil || len(keys) != 2000 || len(*asked) != 4 {
		t.Errorf("2000 keys: %d keys, %v, asked %v", len(keys), err, *asked)
	}
	after := "k1997"
	if page, err := KeysPage("", &after, 5); err != nil || strings.Join(page, ",") != "k1998,k1999" {
		t.Errorf("one page: %v %v", page, err)
	}
}

func TestAProviderThatIgnoresPagesIsAnErrorNotALoop(t *testing.T) {
	asked := provider(t, 2500, 100, true)
	_, err := Keys("")
	if err == nil || !strings.Contains(err.Error(), "not a page of at most 1000 keys: 2500 keys") || len(*asked) != 2 {
		t.Errorf("%v, asked %v", err, *asked)
	}
	provider(t, 10, 100, true)
	after := "k0005"
	if _, err := KeysPage("", &after, 1000); err == nil {
		t.Error("a page not after `after` should fail")
	}
	unsorted, _ := msgpack.Marshal([]string{"b", "a"})
	recording(t, unsorted)
	if _, err := KeysPage("", nil, 5); err == nil || !strings.Contains(err.Error(), "not a page") {
		t.Errorf("an unsorted page should fail: %v", err)
	}
}

func TestErrors(t *testing.T) {
	recording(t, []byte{0xa1, 'x'})
	_, err := Increment("n", 1)
	if err == nil || !strings.HasPrefix(err.Error(), "could not decode msgpack: the reply to lattice:keyvalue KeyValue.Increment is not an int64: ") {
		t.Errorf("decode: %v", err)
	}
	restore := actor.MockHost(func(actor.HostCallRequest) ([]byte, error) {
		return nil, errors.New(`actor kvcounter may not call contract lattice:keyvalue through link "default": there is no such link`)
	})
	defer restore()
	_, _, err = Get("k")
	if err == nil || err.Error() != `call to lattice:keyvalue KeyValue.Get failed: actor kvcounter may not call contract lattice:keyvalue through link "default": there is no such link` {
		t.Errorf("host error: %v", err)
	}
}

func TestWithoutHost(t *testing.T) {
	if _, err := Increment("n", 1); !errors.Is(err, actor.ErrNoHost) {
		t.Errorf("no host: %v", err)
	}
}

func TestPayloadTypesRoundTrip(t *testing.T) {
	ttl := uint64(9)
	in := SetRequest{Key: "k", Value: []byte{1}, TTLSecs: &ttl}
	b, _ := msgpack.Marshal(in)
	var out SetRequest
	if err := msgpack.Unmarshal(b, &out); err != nil || out.Key != "k" || *out.TTLSecs != 9 || out.Value[0] != 1 {
		t.Errorf("%+v %v", out, err)
	}
	var inc IncrementRequest
	if err := msgpack.Unmarshal(cat([]byte{0x81}, s("key"), s("k")), &inc); err == nil || !strings.Contains(err.Error(), `"delta"`) {
		t.Errorf("missing delta: %v", err)
	}
	var kr KeyRequest
	if err := msgpack.Unmarshal([]byte{0x80}, &kr); err == nil {
		t.Error("missing key should fail")
	}
	var keys KeysRequest
	if err := msgpack.Unmarshal([]byte{0x80}, &keys); err != nil || keys.Prefix != "" || keys.After != nil || keys.Limit != nil {
		t.Errorf("prefix defaults to empty: %v", err)
	}
	after, limit := "x", uint32(7)
	b, _ = msgpack.Marshal(KeysRequest{Prefix: "p", After: &after, Limit: &limit})
	var page KeysRequest
	if err := msgpack.Unmarshal(b, &page); err != nil || page.Prefix != "p" || *page.After != "x" || *page.Limit != 7 {
		t.Errorf("%+v %v", page, err)
	}
	if Default.LinkName() != "" || Link("x").LinkName() != "x" {
		t.Error("link names")
	}
}
