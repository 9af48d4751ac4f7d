/*
 * lattice.h: write Lattice actors in C.
 *
 * An actor is a core WebAssembly module for wasm32-wasip1 that speaks the waPC
 * guest ABI (docs/abi.md). This SDK, one header and one source file
 * (lattice.c), gives a C actor what the Rust SDK (crate `lattice-actor`)
 * gives a Rust one:
 *
 *   - the waPC glue: the `__guest_call` export and the `wapc` imports;
 *   - a table of operation handlers (`lattice_register`) and dispatch, with
 *     the same errors as the Rust SDK (an unknown operation lists the known
 *     ones);
 *   - per-call memory (`lattice_alloc`, `lattice_buf`): everything the SDK
 *     allocates for a call is freed when the call ends, so handlers never call
 *     free() and nothing leaks from one call to the next;
 *   - msgpack: a cursor-based reader with bounds checks and error messages,
 *     and a writer into a growable buffer;
 *   - host calls: any contract or actor (`lattice_host_call`,
 *     `lattice_call_actor`), typed clients for `lattice:keyvalue` and the
 *     request/response of `lattice:httpserver`, and logging.
 *
 * A minimal actor:
 *
 *     #include "lattice.h"
 *
 *     static lattice_err echo(lattice_bytes payload, lattice_buf *reply) {
 *         lattice_buf_append(reply, payload.ptr, payload.len);
 *         return NULL;                       // NULL: success, reply is sent
 *     }
 *
 *     static lattice_err greet(lattice_bytes payload, lattice_buf *reply) {
 *         lattice_reader r;
 *         const char *name;
 *         lattice_reader_init(&r, payload.ptr, payload.len);
 *         if (!lattice_read_cstr(&r, &name))
 *             return lattice_concat("SayHello: ", lattice_reader_error(&r), NULL);
 *         if (!*name)
 *             return "name must not be empty";   // the caller sees this error
 *         lattice_write_cstr(reply, lattice_concat("Hello, ", name, "!", NULL));
 *         return NULL;
 *     }
 *
 *     void wapc_init(void) {                 // exported; the host runs it once
 *         lattice_register("Echo", echo);
 *         lattice_register("SayHello", greet);
 *     }
 *
 * Build (Debian packages clang, lld, wasi-libc, libclang-rt-dev-wasm32):
 *
 *     clang --target=wasm32-wasi -mexec-model=reactor -O2 -std=c11 \
 *         -Wall -Wextra -Werror -I actors/c -o my.wasm my.c actors/c/lattice.c
 *     lattice claims put my.wasm --name my-actor --contract lattice:keyvalue
 *
 * (add --sysroot=DIR when wasi-libc lives in a sysroot directory such as
 * /usr/share/wasi-sysroot rather than in clang's default search path). See
 * actors/c/README.md and examples/echo-c.
 *
 * Conventions:
 *
 *   - Functions that can fail return `lattice_err`: NULL on success, else an
 *     error message (UTF-8, NUL-terminated) that lives until the call ends.
 *   - Strings (names, keys, header values) are NUL-terminated `const char *`;
 *     byte strings (payloads, values, bodies) are `lattice_bytes`.
 *   - Memory handed out by the SDK (reply buffers, decoded strings, error
 *     messages, `lattice_alloc`) belongs to the current call and is freed when
 *     it ends: do not keep pointers to it in globals. Memory allocated in
 *     `wapc_init` is freed at the end of the first call. For state that
 *     outlives a call use malloc() yourself, or a contract such as keyvalue.
 *   - One instance serves one call at a time, so globals need no locking.
 */
#ifndef LATTICE_H
#define LATTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LATTICE_SDK_VERSION "0.1.0"

#if defined(__wasm__)
#define LATTICE_EXPORT(name) __attribute__((export_name(name)))
#else
#define LATTICE_EXPORT(name)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LATTICE_SENTINEL __attribute__((sentinel))
#define LATTICE_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define LATTICE_SENTINEL
#define LATTICE_WARN_UNUSED
#endif

/* ------------------------------------------------------------------------ */
/* Basic types                                                               */
/* ------------------------------------------------------------------------ */

/* An error message, or NULL for success. */
typedef const char *lattice_err;

/* Borrowed bytes: a pointer and a length (ptr may be NULL when len is 0). */
typedef struct lattice_bytes {
    const uint8_t *ptr;
    size_t len;
} lattice_bytes;

/* A growable byte buffer in per-call memory. Zero-initialise it
 * (`lattice_buf b = LATTICE_BUF_INIT;`) and append; it is freed when the call
 * ends. When memory runs out, `failed` is set and later appends do nothing;
 * a handler's reply with `failed` set becomes an out-of-memory error. */
typedef struct lattice_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
    bool failed;
} lattice_buf;

#define LATTICE_BUF_INIT {NULL, 0, 0, false}

/* The bytes of a NUL-terminated string (without the NUL); NULL gives empty. */
lattice_bytes lattice_cbytes(const char *s);
/* The bytes of `ptr[0..len)`. */
lattice_bytes lattice_bytes_of(const void *ptr, size_t len);
/* The bytes written to a buffer so far. */
lattice_bytes lattice_buf_bytes(const lattice_buf *buf);

/* ------------------------------------------------------------------------ */
/* Handlers and dispatch                                                     */
/* ------------------------------------------------------------------------ */

/* A handler gets the call's payload exactly as the caller sent it (usually
 * msgpack) and writes its reply into `reply` (empty to start with). It
 * returns NULL for success, or an error message, which the caller receives as
 * the call's error (the reply is then discarded). Error messages may be string
 * literals or built in per-call memory (`lattice_concat`, `lattice_buf_cstr`). */
typedef lattice_err (*lattice_handler)(lattice_bytes payload, lattice_buf *reply);

/* waPC initialisation. Define it in your actor and register your handlers
 * there; it is exported, and the host runs it once per instance, before the
 * first call (after `_initialize`, which runs C constructors). An actor that
 * registers from a `__attribute__((constructor))` function instead may leave
 * it undefined. */
LATTICE_EXPORT("wapc_init") void wapc_init(void);

/* Registers `handler` for `operation` (copied). Registering an operation again
 * replaces its handler. Returns false only when out of memory. */
bool lattice_register(const char *operation, lattice_handler handler);

/* Runs the handler for `operation`, as `__guest_call` does. An unknown
 * operation gives `unknown operation "Op"; this actor handles: A, B` (or says
 * that none are registered). Handy in native unit tests. */
lattice_err lattice_dispatch(const char *operation, lattice_bytes payload, lattice_buf *reply);

/* The waPC entry point, exported as `__guest_call`; the host calls it.
 * Declared here for native tests that play the host. */
LATTICE_EXPORT("__guest_call") int32_t lattice_guest_call(int32_t op_len, int32_t msg_len);

/* ------------------------------------------------------------------------ */
/* Per-call memory                                                           */
/* ------------------------------------------------------------------------ */

/* `size` bytes (16-byte aligned, uninitialised) that stay valid until the
 * current call ends; NULL when out of memory. Never free them. */
void *lattice_alloc(size_t size) LATTICE_WARN_UNUSED;
/* A NUL-terminated copy of `s[0..n)`, or of a C string; NULL when out of memory. */
char *lattice_strndup(const char *s, size_t n);
char *lattice_strdup(const char *s);
/* The concatenation of the strings given, up to a terminating NULL:
 * `lattice_concat("key ", key, " not found", NULL)`. Never NULL: when out of
 * memory it returns a static "out of memory" message. */
const char *lattice_concat(const char *first, ...) LATTICE_SENTINEL;
/* Decimal text of a number, in per-call memory. */
const char *lattice_fmt_i64(int64_t value);
const char *lattice_fmt_u64(uint64_t value);

/* What the SDK's allocator holds, for leak checks (see examples/echo-c `Stats`). */
typedef struct lattice_stats {
    uint64_t calls;           /* __guest_call invocations of this instance */
    uint32_t live_blocks;     /* malloc'd blocks the SDK holds right now */
    uint64_t live_bytes;      /* their total size */
    uint32_t idle_live_blocks; /* the same, measured when the last call ended */
    uint64_t idle_live_bytes;
    uint64_t call_bytes;      /* per-call memory in use right now */
    uint64_t peak_call_bytes; /* most per-call memory one call has used */
    uint32_t memory_pages;    /* size of linear memory, in 64 KiB pages */
} lattice_stats;

void lattice_get_stats(lattice_stats *out);

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */
/* ------------------------------------------------------------------------ */

/* Makes room for `extra` more bytes; false (and `failed` set) when out of memory. */
bool lattice_buf_reserve(lattice_buf *buf, size_t extra);
void lattice_buf_append(lattice_buf *buf, const void *data, size_t len);
void lattice_buf_putc(lattice_buf *buf, char c);
void lattice_buf_puts(lattice_buf *buf, const char *s);
void lattice_buf_put_i64(lattice_buf *buf, int64_t value);
void lattice_buf_put_u64(lattice_buf *buf, uint64_t value);
/* Appends `s[0..len)` as a quoted JSON string: escapes `"`, `\` and control
 * characters; bytes that are not valid UTF-8 become U+FFFD. */
void lattice_buf_put_json_string(lattice_buf *buf, const char *s, size_t len);
/* Empties the buffer (keeps its memory). */
void lattice_buf_clear(lattice_buf *buf);
/* The contents as a NUL-terminated string (the NUL is not counted in `len`);
 * "out of memory" when the buffer failed. */
const char *lattice_buf_cstr(lattice_buf *buf);

/* ------------------------------------------------------------------------ */
/* msgpack writer: appends one value (or a container header) to a buffer      */
/* ------------------------------------------------------------------------ */

/* Integers use the smallest encoding that holds the value. Containers: write
 * the header with the element count (a map counts pairs), then the elements. */
void lattice_write_nil(lattice_buf *buf);
void lattice_write_bool(lattice_buf *buf, bool value);
void lattice_write_int(lattice_buf *buf, int64_t value);
void lattice_write_uint(lattice_buf *buf, uint64_t value);
void lattice_write_f64(lattice_buf *buf, double value);
void lattice_write_str(lattice_buf *buf, const char *s, size_t len);
void lattice_write_cstr(lattice_buf *buf, const char *s);
void lattice_write_bin(lattice_buf *buf, const void *data, size_t len);
void lattice_write_array(lattice_buf *buf, uint32_t count);
void lattice_write_map(lattice_buf *buf, uint32_t pairs);

/* ------------------------------------------------------------------------ */
/* msgpack reader: a cursor over borrowed bytes                               */
/* ------------------------------------------------------------------------ */

typedef enum lattice_mp_type {
    LATTICE_MP_NIL,
    LATTICE_MP_BOOL,
    LATTICE_MP_UINT,  /* a non-negative integer */
    LATTICE_MP_INT,   /* a negative integer */
    LATTICE_MP_FLOAT,
    LATTICE_MP_STR,
    LATTICE_MP_BIN,
    LATTICE_MP_ARRAY,
    LATTICE_MP_MAP,
    LATTICE_MP_EXT,
    LATTICE_MP_END,    /* no bytes left */
    LATTICE_MP_INVALID /* the reserved marker 0xc1, or the reader failed */
} lattice_mp_type;

/* Every read checks bounds and types. The first failure sets `error` (a
 * message naming what was expected, what was found and the byte offset) and
 * makes every later read fail too, so a decoder can read a whole structure
 * and check once at the end. Strings and bins read with `lattice_read_str` /
 * `lattice_read_bin` point into the input (no copy). */
typedef struct lattice_reader {
    const uint8_t *start;
    const uint8_t *pos;
    const uint8_t *end;
    const char *error;
} lattice_reader;

/* Starts reading `data[0..len)`. An empty input reads as a single nil, as in
 * the Rust SDK (a call without a payload means "nil"). */
void lattice_reader_init(lattice_reader *r, const void *data, size_t len);
/* The first error, or NULL. */
const char *lattice_reader_error(const lattice_reader *r);
/* Fails the reader with `message` (unless it failed before); returns false. */
bool lattice_read_fail(lattice_reader *r, const char *message);
/* The type of the next value, without consuming it. */
lattice_mp_type lattice_read_peek(const lattice_reader *r);
/* The name of a type, e.g. "str". */
const char *lattice_mp_type_name(lattice_mp_type type);

bool lattice_read_nil(lattice_reader *r);
/* If the next value is nil, consumes it and returns true; else returns false
 * and consumes nothing (not an error): for optional fields. */
bool lattice_read_try_nil(lattice_reader *r);
bool lattice_read_bool(lattice_reader *r, bool *out);
/* Any integer encoding; fails when the value does not fit. */
bool lattice_read_int(lattice_reader *r, int64_t *out);
bool lattice_read_uint(lattice_reader *r, uint64_t *out);
/* float32, float64, or any integer. */
bool lattice_read_f64(lattice_reader *r, double *out);
/* A str, pointing into the input (not NUL-terminated). */
bool lattice_read_str(lattice_reader *r, lattice_bytes *out);
/* A str, copied NUL-terminated into per-call memory. */
bool lattice_read_cstr(lattice_reader *r, const char **out);
/* A bin; a str is accepted too (its bytes), as the Rust decoders do. */
bool lattice_read_bin(lattice_reader *r, lattice_bytes *out);
/* Container headers: the element count (pairs for a map) follows. */
bool lattice_read_array(lattice_reader *r, uint32_t *count);
bool lattice_read_map(lattice_reader *r, uint32_t *pairs);
/* Skips one whole value, containers included (nesting up to 64 deep). */
bool lattice_read_skip(lattice_reader *r);
/* Succeeds when every byte was read (fails on trailing bytes). */
bool lattice_read_end(lattice_reader *r);

/* ------------------------------------------------------------------------ */
/* Host calls and logging                                                    */
/* ------------------------------------------------------------------------ */

/* Calls the host (waPC `__host_call`): `binding` is the link name (NULL or ""
 * for the default link), `ns` a contract id such as "lattice:keyvalue" or
 * another actor's id, `op` the operation. On success `*reply` (may be NULL)
 * holds the reply bytes in per-call memory. A failure reads
 * `call to NS OP failed: MESSAGE`, as in the Rust SDK. */
lattice_err lattice_host_call(const char *binding, const char *ns, const char *op,
                              lattice_bytes payload, lattice_bytes *reply);
/* Calls `op` on the actor with id `actor_id` (in-process or over NATS). */
lattice_err lattice_call_actor(const char *actor_id, const char *op, lattice_bytes payload,
                               lattice_bytes *reply);
/* Writes a line to the host's log for this actor (waPC `__console_log`). */
void lattice_log(const char *message);
void lattice_log_bytes(lattice_bytes message);

/* ------------------------------------------------------------------------ */
/* Contract lattice:keyvalue (docs/contracts.md)                             */
/* ------------------------------------------------------------------------ */

#define LATTICE_KEYVALUE "lattice:keyvalue"
#define LATTICE_KV_GET "KeyValue.Get"
#define LATTICE_KV_SET "KeyValue.Set"
#define LATTICE_KV_DELETE "KeyValue.Delete"
#define LATTICE_KV_CONTAINS "KeyValue.Contains"
#define LATTICE_KV_INCREMENT "KeyValue.Increment"
#define LATTICE_KV_KEYS "KeyValue.Keys"

/* A list of NUL-terminated strings in per-call memory. */
typedef struct lattice_str_list {
    size_t count;
    const char **items;
} lattice_str_list;

/* `link`: the link name, NULL or "" for the default link. Output pointers
 * marked "may be NULL" can be NULL when the result is not wanted. */
/* *found: whether the key exists; *value (may be NULL): its bytes (empty when not found). */
lattice_err lattice_kv_get(const char *link, const char *key, bool *found, lattice_bytes *value);
/* Stores `value` under `key`, with no expiry (clearing an earlier one). */
lattice_err lattice_kv_set(const char *link, const char *key, lattice_bytes value);
/* Stores `value`, expiring `ttl_secs` (>= 1) seconds later. */
lattice_err lattice_kv_set_ttl(const char *link, const char *key, lattice_bytes value,
                               uint64_t ttl_secs);
/* *existed (may be NULL): whether the key existed. */
lattice_err lattice_kv_delete(const char *link, const char *key, bool *existed);
lattice_err lattice_kv_contains(const char *link, const char *key, bool *exists);
/* Adds `delta` to the decimal counter at `key` (missing = 0); *value (may be NULL): the new value. */
lattice_err lattice_kv_increment(const char *link, const char *key, int64_t delta,
                                 int64_t *value);
/* The keys starting with `prefix` (NULL or "" for all), sorted, however many:
 * asked for in one answer, and when the provider finds them too many for one
 * (its error says LATTICE_KV_TOO_MANY_KEYS), in pages of
 * LATTICE_KV_MAX_KEYS_PER_PAGE; lattice_kv_keys_page takes one page. */
lattice_err lattice_kv_keys(const char *link, const char *prefix, lattice_str_list *keys);
/* The largest page lattice_kv_keys_page may ask for. */
#define LATTICE_KV_MAX_KEYS_PER_PAGE 1000u
/* What a provider's refusal of Keys without a limit says when the keys are too
 * many for one answer. */
#define LATTICE_KV_TOO_MANY_KEYS "too many for one answer"
/* One page of the keys starting with `prefix`, sorted: at most `limit` (1 to
 * LATTICE_KV_MAX_KEYS_PER_PAGE) of those after `after` (NULL: from the first).
 * Fewer than `limit` means the listing ended; else ask again after the page's
 * last key. A limit out of range is refused by the provider, naming the range;
 * an answer that is not such a page (a provider that does not know pages) is
 * an error. */
lattice_err lattice_kv_keys_page(const char *link, const char *prefix, const char *after,
                                 uint32_t limit, lattice_str_list *keys);

/* ------------------------------------------------------------------------ */
/* Contract lattice:httpserver (docs/contracts.md)                           */
/* ------------------------------------------------------------------------ */

#define LATTICE_HTTPSERVER "lattice:httpserver"
#define LATTICE_HTTP_HANDLE_REQUEST "HttpServer.HandleRequest"

typedef struct lattice_http_header {
    const char *name;
    const char *value;
} lattice_http_header;

/* A request, as the provider sends it to HttpServer.HandleRequest. Strings are
 * NUL-terminated copies; `headers` has one entry per value, names lowercase,
 * in the order received; `body` points into the payload. */
typedef struct lattice_http_request {
    const char *method;
    const char *path;  /* percent-encoded as received, e.g. "/items/42" */
    const char *query; /* raw query without '?', "" when none */
    const lattice_http_header *headers;
    size_t header_count;
    lattice_bytes body;
} lattice_http_request;

/* Decodes the payload of HttpServer.HandleRequest. */
lattice_err lattice_http_decode_request(lattice_bytes payload, lattice_http_request *req);
/* The first value of header `name` (any case), or NULL. */
const char *lattice_http_request_header(const lattice_http_request *req, const char *name);

/* A response under construction. Header names and values are not copied:
 * they must live until the response is encoded (literals and SDK strings do). */
typedef struct lattice_http_response {
    uint16_t status;
    lattice_http_header *headers;
    size_t header_count;
    size_t header_cap;
    lattice_bytes body;
    bool failed; /* out of memory while adding headers */
} lattice_http_response;

void lattice_http_response_init(lattice_http_response *resp, uint16_t status);
/* Adds a header value; several values of one name are sent in order. */
void lattice_http_response_add_header(lattice_http_response *resp, const char *name,
                                      const char *value);
void lattice_http_response_set_body(lattice_http_response *resp, lattice_bytes body);
/* Writes the HttpResponse msgpack (status, headers, body) to `out`; fails only
 * when out of memory. */
lattice_err lattice_http_encode_response(const lattice_http_response *resp, lattice_buf *out);
/* One-shot: a response with `status`, an optional content-type (NULL for
 * none) and `body`, written to `reply`. */
lattice_err lattice_http_reply(lattice_buf *reply, uint16_t status, const char *content_type,
                               lattice_bytes body);

#ifdef __cplusplus
}
#endif

#endif /* LATTICE_H */
