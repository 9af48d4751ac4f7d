/*
 * echo-c: an HTTP echo actor in C, and a test bed for the C SDK.
 *
 * Operations:
 *
 *   HttpServer.HandleRequest  the request body comes back as the response body
 *                             (status 200), with headers
 *                               x-method: the request method
 *                               x-path:   the request path (percent-encoded as received)
 *                               x-query:  the raw query, when there is one
 *                               content-type: the request's, else application/octet-stream
 *                             With the query `format=json` the reply is instead JSON:
 *                               {"method":"POST","path":"/a","query":"format=json","body":"..."}
 *                             (the body as a string; bytes that are not UTF-8 become U+FFFD).
 *                             Path /fail answers with an actor error (HTTP 500).
 *   Echo                      the payload bytes, unchanged
 *   Fail                      always an error: "echo-c failed on purpose: TEXT" when the
 *                             payload is a msgpack str TEXT, else "echo-c failed on purpose"
 *   Call                      payload {target: str, operation: str, payload: bin}: calls
 *                             that actor (or contract) on the default link and returns its
 *                             reply bytes unchanged, or its error
 *   KeyValue                  payload {key: str, value: bin}: runs every lattice:keyvalue
 *                             operation once on the default link (see kv_tour) and returns
 *                             a map of what it saw
 *   Stats                     a map of the SDK's allocator counters (lattice_stats), for
 *                             leak checks: calls, live_blocks, live_bytes, idle_live_blocks,
 *                             idle_live_bytes, peak_call_bytes, memory_pages
 *   Leak                      payload uint N: malloc()s N bytes and never frees them (how a
 *                             leak shows in Stats' memory_pages; for tests)
 *
 * Build: `make` in this directory (see the Makefile).
 */
#include "lattice.h"

#include <stdlib.h>
#include <string.h>

/* ---- HttpServer.HandleRequest ------------------------------------------- */

static bool query_has(const char *query, const char *param) {
    size_t n = strlen(param);
    for (const char *p = query; *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len == n && strncmp(p, param, n) == 0) return true;
        if (!amp) break;
        p = amp + 1;
    }
    return false;
}

static lattice_err json_reply(const lattice_http_request *req, lattice_buf *reply) {
    lattice_buf json = LATTICE_BUF_INIT;
    lattice_buf_puts(&json, "{\"method\":");
    lattice_buf_put_json_string(&json, req->method, strlen(req->method));
    lattice_buf_puts(&json, ",\"path\":");
    lattice_buf_put_json_string(&json, req->path, strlen(req->path));
    lattice_buf_puts(&json, ",\"query\":");
    lattice_buf_put_json_string(&json, req->query, strlen(req->query));
    lattice_buf_puts(&json, ",\"body\":");
    lattice_buf_put_json_string(&json, (const char *)req->body.ptr, req->body.len);
    lattice_buf_puts(&json, "}");
    return lattice_http_reply(reply, 200, "application/json", lattice_buf_bytes(&json));
}

static lattice_err handle_request(lattice_bytes payload, lattice_buf *reply) {
    lattice_http_request req;
    lattice_err err = lattice_http_decode_request(payload, &req);
    if (err) return err;
    if (strcmp(req.path, "/fail") == 0)
        return lattice_concat("echo-c refused ", req.method, " ", req.path, NULL);
    if (query_has(req.query, "format=json")) return json_reply(&req, reply);

    const char *content_type = lattice_http_request_header(&req, "content-type");
    lattice_http_response resp;
    lattice_http_response_init(&resp, 200);
    lattice_http_response_add_header(&resp, "content-type",
                                     content_type ? content_type : "application/octet-stream");
    lattice_http_response_add_header(&resp, "x-method", req.method);
    lattice_http_response_add_header(&resp, "x-path", req.path);
    if (*req.query) lattice_http_response_add_header(&resp, "x-query", req.query);
    lattice_http_response_set_body(&resp, req.body);
    return lattice_http_encode_response(&resp, reply);
}

/* ---- Echo, Fail ---------------------------------------------------------- */

static lattice_err echo(lattice_bytes payload, lattice_buf *reply) {
    lattice_buf_append(reply, payload.ptr, payload.len);
    return NULL;
}

static lattice_err fail(lattice_bytes payload, lattice_buf *reply) {
    (void)reply;
    lattice_reader r;
    const char *why;
    lattice_reader_init(&r, payload.ptr, payload.len);
    if (lattice_read_cstr(&r, &why)) return lattice_concat("echo-c failed on purpose: ", why, NULL);
    return "echo-c failed on purpose";
}

/* ---- Call ---------------------------------------------------------------- */

static lattice_err call(lattice_bytes payload, lattice_buf *reply) {
    lattice_reader r;
    uint32_t fields;
    const char *target = NULL, *operation = NULL;
    lattice_bytes inner = {NULL, 0};
    lattice_reader_init(&r, payload.ptr, payload.len);
    if (lattice_read_map(&r, &fields)) {
        for (uint32_t i = 0; i < fields; i++) {
            lattice_bytes key;
            if (!lattice_read_str(&r, &key)) break;
            if (key.len == 6 && memcmp(key.ptr, "target", 6) == 0) lattice_read_cstr(&r, &target);
            else if (key.len == 9 && memcmp(key.ptr, "operation", 9) == 0) lattice_read_cstr(&r, &operation);
            else if (key.len == 7 && memcmp(key.ptr, "payload", 7) == 0) lattice_read_bin(&r, &inner);
            else lattice_read_skip(&r);
        }
    }
    if (!lattice_reader_error(&r) && (!target || !operation))
        lattice_read_fail(&r, "needs the fields target and operation");
    if (lattice_reader_error(&r))
        return lattice_concat("Call: payload is not a {target, operation, payload} map: ",
                              lattice_reader_error(&r), NULL);
    lattice_bytes answer;
    lattice_err err = lattice_host_call("", target, operation, inner, &answer);
    if (err) return err;
    lattice_buf_append(reply, answer.ptr, answer.len);
    return NULL;
}

/* ---- KeyValue: every lattice:keyvalue operation once ---------------------- */

static lattice_err kv_tour(lattice_bytes payload, lattice_buf *reply) {
    lattice_reader r;
    uint32_t fields;
    const char *key = NULL;
    lattice_bytes value = {NULL, 0};
    lattice_reader_init(&r, payload.ptr, payload.len);
    if (lattice_read_map(&r, &fields)) {
        for (uint32_t i = 0; i < fields; i++) {
            lattice_bytes name;
            if (!lattice_read_str(&r, &name)) break;
            if (name.len == 3 && memcmp(name.ptr, "key", 3) == 0) lattice_read_cstr(&r, &key);
            else if (name.len == 5 && memcmp(name.ptr, "value", 5) == 0) lattice_read_bin(&r, &value);
            else lattice_read_skip(&r);
        }
    }
    if (!lattice_reader_error(&r) && !key) lattice_read_fail(&r, "missing field `key`");
    if (lattice_reader_error(&r))
        return lattice_concat("KeyValue: payload is not a {key, value} map: ",
                              lattice_reader_error(&r), NULL);

    const char *counter = lattice_concat(key, "/counter", NULL);
    const char *ttl_key = lattice_concat(key, "/ttl", NULL);
    bool found = false, contains = false, deleted = false, contains_after = true,
         found_after = true;
    lattice_bytes got = {NULL, 0};
    int64_t count = 0;
    lattice_str_list keys = {0, NULL};
    lattice_err err;
    if ((err = lattice_kv_set(NULL, key, value))) return err;
    if ((err = lattice_kv_get(NULL, key, &found, &got))) return err;
    if ((err = lattice_kv_contains(NULL, key, &contains))) return err;
    if ((err = lattice_kv_increment(NULL, counter, 5, NULL))) return err;
    if ((err = lattice_kv_increment(NULL, counter, -2, &count))) return err;
    if ((err = lattice_kv_set_ttl(NULL, ttl_key, lattice_cbytes("soon"), 60))) return err;
    if ((err = lattice_kv_keys(NULL, key, &keys))) return err;
    if ((err = lattice_kv_delete(NULL, key, &deleted))) return err;
    if ((err = lattice_kv_contains(NULL, key, &contains_after))) return err;
    if ((err = lattice_kv_get(NULL, key, &found_after, NULL))) return err;

    lattice_write_map(reply, 8);
    lattice_write_cstr(reply, "found");
    lattice_write_bool(reply, found);
    lattice_write_cstr(reply, "value");
    lattice_write_bin(reply, got.ptr, got.len);
    lattice_write_cstr(reply, "contains");
    lattice_write_bool(reply, contains);
    lattice_write_cstr(reply, "counter");
    lattice_write_int(reply, count);
    lattice_write_cstr(reply, "keys");
    lattice_write_array(reply, (uint32_t)keys.count);
    for (size_t i = 0; i < keys.count; i++) lattice_write_cstr(reply, keys.items[i]);
    lattice_write_cstr(reply, "deleted");
    lattice_write_bool(reply, deleted);
    lattice_write_cstr(reply, "contains_after");
    lattice_write_bool(reply, contains_after);
    lattice_write_cstr(reply, "found_after");
    lattice_write_bool(reply, found_after);
    return NULL;
}

/* ---- Stats, Leak ----------------------------------------------------------- */

static lattice_err stats(lattice_bytes payload, lattice_buf *reply) {
    (void)payload;
    lattice_stats s;
    lattice_get_stats(&s);
    lattice_write_map(reply, 7);
    lattice_write_cstr(reply, "calls");
    lattice_write_uint(reply, s.calls);
    lattice_write_cstr(reply, "live_blocks");
    lattice_write_uint(reply, s.live_blocks);
    lattice_write_cstr(reply, "live_bytes");
    lattice_write_uint(reply, s.live_bytes);
    lattice_write_cstr(reply, "idle_live_blocks");
    lattice_write_uint(reply, s.idle_live_blocks);
    lattice_write_cstr(reply, "idle_live_bytes");
    lattice_write_uint(reply, s.idle_live_bytes);
    lattice_write_cstr(reply, "peak_call_bytes");
    lattice_write_uint(reply, s.peak_call_bytes);
    lattice_write_cstr(reply, "memory_pages");
    lattice_write_uint(reply, s.memory_pages);
    return NULL;
}

/* Keeps the compiler from proving the leaked block unused and dropping it. */
static void *volatile g_leaked;

static lattice_err leak(lattice_bytes payload, lattice_buf *reply) {
    lattice_reader r;
    uint64_t n = 0;
    lattice_reader_init(&r, payload.ptr, payload.len);
    if (!lattice_read_uint(&r, &n) || n > 64u * 1024u * 1024u)
        return "Leak: payload must be a uint of at most 64 MiB";
    char *p = malloc((size_t)n);
    if (!p) return "Leak: out of memory";
    memset(p, 1, (size_t)n); /* touch it: this memory is never freed */
    g_leaked = p;
    lattice_write_uint(reply, n);
    return NULL;
}

void wapc_init(void) {
    lattice_register(LATTICE_HTTP_HANDLE_REQUEST, handle_request);
    lattice_register("Echo", echo);
    lattice_register("Fail", fail);
    lattice_register("Call", call);
    lattice_register("KeyValue", kv_tour);
    lattice_register("Stats", stats);
    lattice_register("Leak", leak);
}
