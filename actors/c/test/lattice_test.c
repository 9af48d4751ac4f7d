/*
 * Native unit tests of the C SDK: msgpack, buffers, dispatch, the per-call
 * arena, and the contract clients against a mock host.
 *
 * This program plays the host: it defines the `lattice_wapc_*` functions that
 * are wasm imports in an actor. Build and run (host/tests/all/c.rs does this, with
 * -fsanitize=address,undefined when the compiler supports it):
 *
 *     cc -std=c11 -Wall -Wextra -Werror -I actors/c \
 *        actors/c/lattice.c actors/c/test/lattice_test.c -o lattice_test && ./lattice_test
 *
 * It prints one line per failed check and ends with "N passed, N failed".
 */
#include "lattice.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                  \
    } while (0)

#define CHECK_STR(got, want)                                                               \
    do {                                                                                   \
        const char *g_ = (got), *w_ = (want);                                              \
        if (g_ && w_ && strcmp(g_, w_) == 0) {                                             \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "%s:%d: %s\n  got:  %s\n  want: %s\n", __FILE__, __LINE__,    \
                    #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)");                         \
        }                                                                                  \
    } while (0)

#define CHECK_PREFIX(got, prefix)                                                          \
    do {                                                                                   \
        const char *g_ = (got), *p_ = (prefix);                                            \
        if (g_ && strncmp(g_, p_, strlen(p_)) == 0) {                                      \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "%s:%d: %s\n  got:    %s\n  prefix: %s\n", __FILE__, __LINE__, \
                    #got, g_ ? g_ : "(null)", p_);                                         \
        }                                                                                  \
    } while (0)

static bool bytes_eq(lattice_bytes b, const void *want, size_t len) {
    return b.len == len && (len == 0 || memcmp(b.ptr, want, len) == 0);
}

/* ------------------------------------------------------------------------ */
/* The mock host                                                             */
/* ------------------------------------------------------------------------ */

static struct {
    const char *op;
    const uint8_t *msg;
    size_t msg_len;
    uint8_t *response;
    size_t response_len;
    char *error;
    /* host calls */
    char binding[64], ns[64], hop[64];
    uint8_t *sent;
    size_t sent_len;
    const uint8_t *answer;
    size_t answer_len;
    const char *host_error; /* non-NULL: the next host call fails */
    /* pages_left > 0: the next host calls answer pages[0], pages[1], ... */
    const lattice_buf *pages;
    size_t pages_left;
    /* non-NULL: the next host call fails with this, the one after succeeds */
    const char *fail_once;
    bool clear_error_next;
    int log_lines;
} mock;

void lattice_wapc_guest_request(uint8_t *op, uint8_t *msg) {
    memcpy(op, mock.op, strlen(mock.op));
    if (mock.msg_len) memcpy(msg, mock.msg, mock.msg_len);
}

void lattice_wapc_guest_response(const uint8_t *ptr, size_t len) {
    free(mock.response);
    mock.response = malloc(len ? len : 1);
    if (len) memcpy(mock.response, ptr, len);
    mock.response_len = len;
}

void lattice_wapc_guest_error(const uint8_t *ptr, size_t len) {
    free(mock.error);
    mock.error = malloc(len + 1);
    memcpy(mock.error, ptr, len);
    mock.error[len] = '\0';
}

static void copy_name(char *dst, const uint8_t *src, size_t len) {
    if (len > 63) len = 63;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

int32_t lattice_wapc_host_call(const uint8_t *bd, size_t bd_len, const uint8_t *ns, size_t ns_len,
                               const uint8_t *op, size_t op_len, const uint8_t *ptr, size_t len) {
    copy_name(mock.binding, bd, bd_len);
    copy_name(mock.ns, ns, ns_len);
    copy_name(mock.hop, op, op_len);
    free(mock.sent);
    mock.sent = malloc(len ? len : 1);
    if (len) memcpy(mock.sent, ptr, len);
    mock.sent_len = len;
    if (mock.fail_once) {
        mock.host_error = mock.fail_once;
        mock.fail_once = NULL;
        mock.clear_error_next = true;
        return 0;
    }
    if (mock.clear_error_next) {
        mock.host_error = NULL;
        mock.clear_error_next = false;
    }
    if (mock.pages_left) {
        mock.answer = mock.pages->ptr;
        mock.answer_len = mock.pages->len;
        mock.pages++;
        mock.pages_left--;
    }
    return mock.host_error ? 0 : 1;
}

size_t lattice_wapc_host_response_len(void) { return mock.answer_len; }
void lattice_wapc_host_response(uint8_t *ptr) {
    if (mock.answer_len) memcpy(ptr, mock.answer, mock.answer_len);
}
size_t lattice_wapc_host_error_len(void) { return strlen(mock.host_error); }
void lattice_wapc_host_error(uint8_t *ptr) { memcpy(ptr, mock.host_error, strlen(mock.host_error)); }
void lattice_wapc_console_log(const uint8_t *ptr, size_t len) {
    (void)ptr;
    (void)len;
    mock.log_lines++;
}

/* Plays one waPC call; returns __guest_call's result. */
static int32_t guest_call(const char *op, const void *msg, size_t len) {
    free(mock.response);
    free(mock.error);
    mock.response = NULL;
    mock.error = NULL;
    mock.op = op;
    mock.msg = msg;
    mock.msg_len = len;
    return lattice_guest_call((int32_t)strlen(op), (int32_t)len);
}

static void host_answers(const void *answer, size_t len) {
    mock.answer = answer;
    mock.answer_len = len;
    mock.host_error = NULL;
}

/* ------------------------------------------------------------------------ */
/* msgpack                                                                   */
/* ------------------------------------------------------------------------ */

static void check_int(int64_t v, const uint8_t *want, size_t want_len) {
    lattice_buf b = LATTICE_BUF_INIT;
    lattice_write_int(&b, v);
    CHECK(bytes_eq(lattice_buf_bytes(&b), want, want_len));
    lattice_reader r;
    int64_t back = 0;
    lattice_reader_init(&r, b.ptr, b.len);
    CHECK(lattice_read_int(&r, &back) && back == v && lattice_read_end(&r));
    double d = 0;
    lattice_reader_init(&r, b.ptr, b.len);
    CHECK(lattice_read_f64(&r, &d) && d == (double)v);
}

static void test_ints(void) {
    check_int(0, (const uint8_t[]){0x00}, 1);
    check_int(127, (const uint8_t[]){0x7f}, 1);
    check_int(128, (const uint8_t[]){0xcc, 0x80}, 2);
    check_int(255, (const uint8_t[]){0xcc, 0xff}, 2);
    check_int(256, (const uint8_t[]){0xcd, 0x01, 0x00}, 3);
    check_int(65535, (const uint8_t[]){0xcd, 0xff, 0xff}, 3);
    check_int(65536, (const uint8_t[]){0xce, 0x00, 0x01, 0x00, 0x00}, 5);
    check_int(4294967296LL, (const uint8_t[]){0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9);
    check_int(INT64_MAX, (const uint8_t[]){0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9);
    check_int(-1, (const uint8_t[]){0xff}, 1);
    check_int(-32, (const uint8_t[]){0xe0}, 1);
    check_int(-33, (const uint8_t[]){0xd0, 0xdf}, 2);
    check_int(-128, (const uint8_t[]){0xd0, 0x80}, 2);
    check_int(-129, (const uint8_t[]){0xd1, 0xff, 0x7f}, 3);
    check_int(-32769, (const uint8_t[]){0xd2, 0xff, 0xff, 0x7f, 0xff}, 5);
    check_int(INT64_MIN, (const uint8_t[]){0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9);

    /* uint64 beyond int64, and negatives where a uint is wanted */
    lattice_buf b = LATTICE_BUF_INIT;
    lattice_write_uint(&b, UINT64_MAX);
    lattice_reader r;
    uint64_t u = 0;
    int64_t i = 0;
    lattice_reader_init(&r, b.ptr, b.len);
    CHECK(lattice_read_uint(&r, &u) && u == UINT64_MAX);
    lattice_reader_init(&r, b.ptr, b.len);
    CHECK(!lattice_read_int(&r, &i));
    CHECK_STR(lattice_reader_error(&r),
              "msgpack: integer 18446744073709551615 at byte 0 does not fit in int64");
    static const uint8_t minus_five[] = {0xfb};
    lattice_reader_init(&r, minus_five, 1);
    CHECK(!lattice_read_uint(&r, &u));
    CHECK_STR(lattice_reader_error(&r), "msgpack: expected uint at byte 0, found -5");
    /* signed encodings of non-negative values read as uints */
    static const uint8_t int16_five[] = {0xd1, 0x00, 0x05};
    lattice_reader_init(&r, int16_five, 3);
    CHECK(lattice_read_uint(&r, &u) && u == 5);
}

static void test_strings_and_containers(void) {
    static const size_t str_lens[] = {0, 31, 32, 255, 256, 65535, 65536};
    static const uint8_t str_markers[] = {0xa0, 0xbf, 0xd9, 0xd9, 0xda, 0xda, 0xdb};
    char *big = malloc(70000);
    memset(big, 'x', 70000);
    for (size_t k = 0; k < sizeof str_lens / sizeof *str_lens; k++) {
        lattice_buf b = LATTICE_BUF_INIT;
        lattice_write_str(&b, big, str_lens[k]);
        CHECK(b.ptr[0] == str_markers[k]);
        lattice_reader r;
        lattice_bytes s;
        lattice_reader_init(&r, b.ptr, b.len);
        CHECK(lattice_read_str(&r, &s) && s.len == str_lens[k] && lattice_read_end(&r));
        /* a str is accepted where bin is wanted */
        lattice_reader_init(&r, b.ptr, b.len);
        CHECK(lattice_read_bin(&r, &s) && s.len == str_lens[k]);
    }
    static const size_t bin_lens[] = {0, 255, 256, 65536};
    static const uint8_t bin_markers[] = {0xc4, 0xc4, 0xc5, 0xc6};
    for (size_t k = 0; k < sizeof bin_lens / sizeof *bin_lens; k++) {
        lattice_buf b = LATTICE_BUF_INIT;
        lattice_write_bin(&b, big, bin_lens[k]);
        CHECK(b.ptr[0] == bin_markers[k]);
        lattice_reader r;
        lattice_bytes s;
        lattice_reader_init(&r, b.ptr, b.len);
        CHECK(lattice_read_bin(&r, &s) && bytes_eq(s, big, bin_lens[k]));
        /* but a bin is not a str */
        lattice_reader_init(&r, b.ptr, b.len);
        CHECK(!lattice_read_str(&r, &s));
        CHECK_STR(lattice_reader_error(&r), "msgpack: expected str at byte 0, found bin");
    }
    free(big);

    lattice_buf b = LATTICE_BUF_INIT;
    lattice_write_array(&b, 15);
    lattice_write_array(&b, 16);
    lattice_write_array(&b, 70000);
    lattice_write_map(&b, 15);
    lattice_write_map(&b, 16);
    lattice_write_map(&b, 70000);
    static const uint8_t want[] = {0x9f, 0xdc, 0x00, 0x10, 0xdd, 0x00, 0x01, 0x11, 0x70,
                                   0x8f, 0xde, 0x00, 0x10, 0xdf, 0x00, 0x01, 0x11, 0x70};
    CHECK(bytes_eq(lattice_buf_bytes(&b), want, sizeof want));
    lattice_reader r;
    uint32_t n[6];
    lattice_reader_init(&r, b.ptr, b.len);
    CHECK(lattice_read_array(&r, &n[0]) && lattice_read_array(&r, &n[1]) &&
          lattice_read_array(&r, &n[2]) && lattice_read_map(&r, &n[3]) &&
          lattice_read_map(&r, &n[4]) && lattice_read_map(&r, &n[5]) && lattice_read_end(&r));
    CHECK(n[0] == 15 && n[1] == 16 && n[2] == 70000 && n[3] == 15 && n[4] == 16 && n[5] == 70000);
}

static void test_reader_errors(void) {
    lattice_reader r;
    lattice_bytes s;
    bool flag;
    int64_t i;

    /* truncated str: says what, where, how much */
    static const uint8_t short_str[] = {0x91, 0xa5, 'a', 'b'};
    uint32_t n;
    lattice_reader_init(&r, short_str, sizeof short_str);
    CHECK(lattice_read_array(&r, &n) && n == 1);
    CHECK(!lattice_read_str(&r, &s));
    CHECK_STR(lattice_reader_error(&r),
              "msgpack: truncated input: str at byte 1 needs 6 bytes, 3 left");
    /* sticky: later reads fail too, the first error stays */
    CHECK(!lattice_read_nil(&r) && lattice_read_peek(&r) == LATTICE_MP_INVALID);
    CHECK_PREFIX(lattice_reader_error(&r), "msgpack: truncated input: str at byte 1");

    static const uint8_t short_u32[] = {0xce, 0x00, 0x01};
    lattice_reader_init(&r, short_u32, sizeof short_u32);
    CHECK(!lattice_read_int(&r, &i));
    CHECK_STR(lattice_reader_error(&r),
              "msgpack: truncated input: uint32 at byte 0 needs 5 bytes, 3 left");

    static const uint8_t big_bin_header[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    lattice_reader_init(&r, big_bin_header, sizeof big_bin_header);
    CHECK(!lattice_read_bin(&r, &s));
    CHECK_STR(lattice_reader_error(&r),
              "msgpack: truncated input: bin at byte 0 needs 4294967300 bytes, 6 left");

    static const uint8_t reserved[] = {0xc1};
    lattice_reader_init(&r, reserved, 1);
    CHECK(lattice_read_peek(&r) == LATTICE_MP_INVALID);
    CHECK(!lattice_read_bool(&r, &flag));
    CHECK_STR(lattice_reader_error(&r), "msgpack: expected bool at byte 0, found invalid marker 0xc1");

    static const uint8_t two[] = {0xc3, 0xc2};
    lattice_reader_init(&r, two, 2);
    CHECK(lattice_read_bool(&r, &flag) && flag);
    CHECK(!lattice_read_end(&r));
    CHECK_STR(lattice_reader_error(&r), "msgpack: 1 unexpected bytes after the value at byte 1");

    lattice_reader_init(&r, two, 1);
    CHECK(lattice_read_bool(&r, &flag) && lattice_read_peek(&r) == LATTICE_MP_END);
    CHECK(!lattice_read_bool(&r, &flag));
    CHECK_STR(lattice_reader_error(&r), "msgpack: expected bool at byte 1, found end of input");

    /* an empty payload reads as nil */
    lattice_reader_init(&r, NULL, 0);
    CHECK(lattice_read_peek(&r) == LATTICE_MP_NIL && lattice_read_try_nil(&r) && lattice_read_end(&r));
    lattice_reader_init(&r, two, 1);
    CHECK(!lattice_read_try_nil(&r) && lattice_reader_error(&r) == NULL);

    /* skip: nested values, ext, floats; depth limit */
    lattice_buf b = LATTICE_BUF_INIT;
    lattice_write_map(&b, 2);
    lattice_write_cstr(&b, "a");
    lattice_write_array(&b, 3);
    lattice_write_f64(&b, 1.5);
    lattice_write_nil(&b);
    lattice_write_bin(&b, "xyz", 3);
    lattice_write_cstr(&b, "b");
    static const uint8_t ext[] = {0xd6, 0x01, 1, 2, 3, 4, 0xc7, 0x02, 0x05, 9, 9, 0xca, 0x3f, 0xc0, 0, 0};
    lattice_buf_append(&b, ext, sizeof ext);
    /* the map (whose "b" is the fixext4), then an ext8, then a float32 */
    lattice_reader_init(&r, b.ptr, b.len);
    CHECK(lattice_read_skip(&r) && lattice_read_peek(&r) == LATTICE_MP_EXT);
    CHECK(lattice_read_skip(&r) && lattice_read_peek(&r) == LATTICE_MP_FLOAT);
    double d = 0;
    CHECK(lattice_read_f64(&r, &d) && d == 1.5 && lattice_read_end(&r));

    uint8_t deep[100];
    memset(deep, 0x91, sizeof deep);
    lattice_reader_init(&r, deep, sizeof deep);
    CHECK(!lattice_read_skip(&r));
    CHECK_STR(lattice_reader_error(&r), "msgpack: values nested more than 64 deep");

    static const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    lattice_reader_init(&r, huge_array, sizeof huge_array);
    CHECK(!lattice_read_skip(&r));
    CHECK_STR(lattice_reader_error(&r),
              "msgpack: expected a container element at byte 6, found end of input");
}

/* ------------------------------------------------------------------------ */
/* Buffers and strings                                                       */
/* ------------------------------------------------------------------------ */

static void test_buffers(void) {
    lattice_buf b = LATTICE_BUF_INIT;
    lattice_buf_puts(&b, "n=");
    lattice_buf_put_i64(&b, INT64_MIN);
    lattice_buf_putc(&b, ' ');
    lattice_buf_put_u64(&b, UINT64_MAX);
    CHECK_STR(lattice_buf_cstr(&b), "n=-9223372036854775808 18446744073709551615");
    CHECK(b.len == strlen("n=-9223372036854775808 18446744073709551615"));
    lattice_buf_clear(&b);
    CHECK_STR(lattice_buf_cstr(&b), "");

    /* growth across many appends keeps the contents */
    for (int k = 0; k < 10000; k++) lattice_buf_putc(&b, (char)('a' + k % 26));
    bool ok = b.len == 10000;
    for (int k = 0; k < 10000 && ok; k++) ok = b.ptr[k] == (uint8_t)('a' + k % 26);
    CHECK(ok);

    CHECK_STR(lattice_concat("a", "", "bc", NULL), "abc");
    CHECK_STR(lattice_fmt_i64(-42), "-42");
    CHECK_STR(lattice_fmt_u64(0), "0");
    CHECK_STR(lattice_strndup("hello", 4), "hell");

    lattice_buf j = LATTICE_BUF_INIT;
    static const char raw[] = "q\"b\\n\n\x01\xc3\xa9\xff\xe2\x82";
    lattice_buf_put_json_string(&j, raw, sizeof raw - 1);
    CHECK_STR(lattice_buf_cstr(&j), "\"q\\\"b\\\\n\\n\\u0001\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");

    void *p = lattice_alloc(3);
    CHECK(p && ((uintptr_t)p % 16) == 0);
}

/* ------------------------------------------------------------------------ */
/* Dispatch and __guest_call                                                 */
/* ------------------------------------------------------------------------ */

static lattice_err echo(lattice_bytes payload, lattice_buf *reply) {
    lattice_buf_append(reply, payload.ptr, payload.len);
    return NULL;
}

static lattice_err fail(lattice_bytes payload, lattice_buf *reply) {
    (void)payload;
    lattice_buf_puts(reply, "discarded");
    return "failed on purpose";
}

static lattice_err other(lattice_bytes payload, lattice_buf *reply) {
    (void)payload;
    lattice_write_cstr(reply, "other");
    return NULL;
}

/* Allocates a lot of per-call memory, in many pieces. */
static lattice_err churn(lattice_bytes payload, lattice_buf *reply) {
    lattice_buf big = LATTICE_BUF_INIT;
    for (int k = 0; k < 200; k++) {
        void *p = lattice_alloc(1000 + (size_t)k);
        if (!p) return "out of memory";
        lattice_buf_append(&big, payload.ptr, payload.len);
    }
    lattice_write_uint(reply, big.len);
    return NULL;
}

static void test_dispatch(void) {
    lattice_buf reply = LATTICE_BUF_INIT;
    CHECK_STR(lattice_dispatch("Echo", lattice_cbytes("x"), &reply),
              "unknown operation \"Echo\"; this actor handles no operations (did wapc_init register any?)");
    CHECK(lattice_register("Echo", echo));
    CHECK(lattice_register("Fail", fail));
    CHECK(lattice_register("Other", echo));
    CHECK(lattice_register("Other", other)); /* replaces */
    CHECK(lattice_register("Churn", churn));
    CHECK_STR(lattice_dispatch("Nope\"\n", lattice_cbytes(""), &reply),
              "unknown operation \"Nope\\\"\\n\"; this actor handles: Echo, Fail, Other, Churn");

    static const uint8_t payload[] = {0, 1, 2, 0xc1, 0xff};
    CHECK(guest_call("Echo", payload, sizeof payload) == 1);
    CHECK(mock.response_len == sizeof payload && memcmp(mock.response, payload, sizeof payload) == 0);
    CHECK(guest_call("Echo", NULL, 0) == 1 && mock.response_len == 0);
    CHECK(guest_call("Fail", payload, sizeof payload) == 0);
    CHECK_STR(mock.error, "failed on purpose");
    CHECK(guest_call("Other", NULL, 0) == 1 && mock.response_len == 6);
    CHECK(guest_call("Missing", NULL, 0) == 0);
    CHECK_STR(mock.error, "unknown operation \"Missing\"; this actor handles: Echo, Fail, Other, Churn");
    CHECK(lattice_guest_call(-1, 0) == 0);
    CHECK_STR(mock.error, "__guest_call: negative length");

    /* per-call memory is given back when each call ends */
    lattice_stats before, after, during;
    char *big = malloc(300000);
    memset(big, 7, 300000);
    CHECK(guest_call("Echo", big, 300000) == 1 && mock.response_len == 300000);
    lattice_get_stats(&before);
    for (int k = 0; k < 50; k++) {
        CHECK(guest_call(k % 2 ? "Churn" : "Echo", big, 1000 + (size_t)k * 5000) == 1);
        CHECK(guest_call("Fail", big, 100) == 0);
        CHECK(guest_call("Missing", big, 100) == 0);
    }
    lattice_get_stats(&after);
    CHECK(after.calls == before.calls + 150);
    CHECK(after.idle_live_blocks == before.idle_live_blocks);
    CHECK(after.idle_live_bytes == before.idle_live_bytes);
    CHECK(after.live_blocks == after.idle_live_blocks && after.call_bytes == 0);
    CHECK(after.peak_call_bytes >= 200000);
    CHECK(before.idle_live_blocks <= 7); /* table + 4 names + first chunk */
    CHECK(lattice_alloc(100) != NULL);
    lattice_get_stats(&during);
    CHECK(during.call_bytes >= 100);
    free(big);
}

/* ------------------------------------------------------------------------ */
/* Contract clients                                                          */
/* ------------------------------------------------------------------------ */

static void test_host_calls(void) {
    lattice_bytes reply;
    static const uint8_t pong[] = {0xa4, 'p', 'o', 'n', 'g'};
    host_answers(pong, sizeof pong);
    CHECK(lattice_call_actor("hello", "Ping", lattice_cbytes("x"), &reply) == NULL);
    CHECK(bytes_eq(reply, pong, sizeof pong));
    CHECK_STR(mock.binding, "");
    CHECK_STR(mock.ns, "hello");
    CHECK_STR(mock.hop, "Ping");
    mock.host_error = "no responders for hello";
    CHECK_STR(lattice_call_actor("hello", "Ping", lattice_cbytes(""), &reply),
              "call to hello Ping failed: no responders for hello");
    int before = mock.log_lines;
    lattice_log("a line");
    CHECK(mock.log_lines == before + 1);
}

static void test_keyvalue(void) {
    /* the example bytes of docs/contracts.md */
    static const uint8_t two[] = {0x02};
    host_answers(two, 1);
    int64_t n = 0;
    CHECK(lattice_kv_increment(NULL, "n", 1, &n) == NULL && n == 2);
    static const uint8_t inc[] = {0x82, 0xa3, 'k', 'e', 'y', 0xa1, 'n', 0xa5, 'd', 'e', 'l', 't', 'a', 0x01};
    CHECK(mock.sent_len == sizeof inc && memcmp(mock.sent, inc, sizeof inc) == 0);
    CHECK_STR(mock.ns, "lattice:keyvalue");
    CHECK_STR(mock.hop, "KeyValue.Increment");

    /* Get: found, value bin; unknown fields ignored; positional arrays too */
    lattice_buf a = LATTICE_BUF_INIT;
    lattice_write_map(&a, 3);
    lattice_write_cstr(&a, "extra");
    lattice_write_array(&a, 1);
    lattice_write_nil(&a);
    lattice_write_cstr(&a, "value");
    lattice_write_bin(&a, "v\0w", 3);
    lattice_write_cstr(&a, "found");
    lattice_write_bool(&a, true);
    host_answers(a.ptr, a.len);
    bool found = false;
    lattice_bytes value = {NULL, 0};
    CHECK(lattice_kv_get("cache", "k", &found, &value) == NULL && found && bytes_eq(value, "v\0w", 3));
    CHECK_STR(mock.binding, "cache");
    static const uint8_t positional[] = {0x92, 0xc2, 0xc4, 0x00};
    host_answers(positional, sizeof positional);
    CHECK(lattice_kv_get(NULL, "k", &found, &value) == NULL && !found && value.len == 0);
    static const uint8_t not_found[] = {0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0xc4, 0x00};
    host_answers(not_found, sizeof not_found);
    CHECK_STR(lattice_kv_get(NULL, "k", &found, &value),
              "could not decode msgpack: the reply to lattice:keyvalue KeyValue.Get is not a GetResponse: missing field `found`");

    /* Set with and without TTL */
    static const uint8_t nil[] = {0xc0};
    host_answers(nil, 1);
    CHECK(lattice_kv_set(NULL, "k", lattice_bytes_of("", 0)) == NULL);
    static const uint8_t set[] = {0x82, 0xa3, 'k', 'e', 'y', 0xa1, 'k', 0xa5, 'v', 'a', 'l', 'u', 'e', 0xc4, 0x00};
    CHECK(mock.sent_len == sizeof set && memcmp(mock.sent, set, sizeof set) == 0);
    CHECK(lattice_kv_set_ttl(NULL, "k", lattice_cbytes("v"), 60) == NULL);
    CHECK(mock.sent[0] == 0x83 && mock.sent[mock.sent_len - 1] == 60);

    static const uint8_t yes[] = {0xc3};
    host_answers(yes, 1);
    bool b = false;
    CHECK(lattice_kv_delete(NULL, "k", &b) == NULL && b);
    CHECK_STR(mock.hop, "KeyValue.Delete");
    b = false;
    CHECK(lattice_kv_contains(NULL, "k", &b) == NULL && b);
    CHECK_STR(mock.hop, "KeyValue.Contains");
    host_answers(two, 1);
    CHECK_STR(lattice_kv_contains(NULL, "k", &b),
              "could not decode msgpack: the reply to lattice:keyvalue KeyValue.Contains is not a bool: msgpack: expected bool at byte 0, found uint");

    lattice_buf k = LATTICE_BUF_INIT;
    lattice_write_array(&k, 2);
    lattice_write_cstr(&k, "a/1");
    lattice_write_cstr(&k, "a/2");
    host_answers(k.ptr, k.len);
    lattice_str_list keys = {0, NULL};
    CHECK(lattice_kv_keys(NULL, "a/", &keys) == NULL && keys.count == 2);
    CHECK(keys.count == 2 && strcmp(keys.items[0], "a/1") == 0 && strcmp(keys.items[1], "a/2") == 0);
    /* {prefix: "a/"}: one answer first, pages only when refused */
    static const uint8_t unpaged[] = {0x81, 0xa6, 'p', 'r', 'e', 'f', 'i', 'x', 0xa2, 'a', '/'};
    CHECK(mock.sent_len == sizeof unpaged && memcmp(mock.sent, unpaged, sizeof unpaged) == 0);

    /* refused as too many: a full page, then a short one, asking again after
     * the last key */
    static const char too_many[] =
        "KeyValue.Keys: the keys are more than 512 KiB, " LATTICE_KV_TOO_MANY_KEYS "; ask in pages";
    lattice_buf pages[2] = {LATTICE_BUF_INIT, LATTICE_BUF_INIT};
    char name[8];
    lattice_write_array(&pages[0], LATTICE_KV_MAX_KEYS_PER_PAGE);
    for (unsigned i = 0; i < LATTICE_KV_MAX_KEYS_PER_PAGE; i++) {
        snprintf(name, sizeof name, "k%04u", i);
        lattice_write_cstr(&pages[0], name);
    }
    lattice_write_array(&pages[1], 1);
    lattice_write_cstr(&pages[1], "k1000");
    mock.fail_once = too_many;
    mock.pages = pages;
    mock.pages_left = 2;
    CHECK(lattice_kv_keys(NULL, "", &keys) == NULL && keys.count == 1001 && mock.pages_left == 0);
    CHECK(keys.count == 1001 && strcmp(keys.items[0], "k0000") == 0 &&
          strcmp(keys.items[999], "k0999") == 0 && strcmp(keys.items[1000], "k1000") == 0);
    lattice_buf second = LATTICE_BUF_INIT;
    lattice_write_map(&second, 3);
    lattice_write_cstr(&second, "prefix");
    lattice_write_cstr(&second, "");
    lattice_write_cstr(&second, "after");
    lattice_write_cstr(&second, "k0999");
    lattice_write_cstr(&second, "limit");
    lattice_write_uint(&second, 1000);
    CHECK(mock.sent_len == second.len && memcmp(mock.sent, second.ptr, second.len) == 0);
    host_answers(k.ptr, k.len);
    CHECK(lattice_kv_keys_page(NULL, "a/", "a/0", 5, &keys) == NULL && keys.count == 2);
    CHECK(mock.sent[0] == 0x83 && mock.sent[mock.sent_len - 1] == 5);
    /* a provider that does not know pages: an error, not a loop */
    CHECK_PREFIX(lattice_kv_keys_page(NULL, "a/", "a/1", 5, &keys),
                 "the reply to lattice:keyvalue KeyValue.Keys is not a page");
    CHECK_PREFIX(lattice_kv_keys_page(NULL, "a/", NULL, 1, &keys),
                 "the reply to lattice:keyvalue KeyValue.Keys is not a page");
    lattice_buf unsorted = LATTICE_BUF_INIT;
    lattice_write_array(&unsorted, 2);
    lattice_write_cstr(&unsorted, "a/2");
    lattice_write_cstr(&unsorted, "a/1");
    host_answers(unsorted.ptr, unsorted.len);
    CHECK_PREFIX(lattice_kv_keys_page(NULL, "a/", NULL, 5, &keys),
                 "the reply to lattice:keyvalue KeyValue.Keys is not a page");
    host_answers(k.ptr, k.len);
    mock.fail_once = too_many;
    mock.pages = pages;
    mock.pages_left = 1;
    lattice_write_cstr(&pages[0], "k1000"); /* the first page, one key too long */
    pages[0].ptr[2] = 0xe9;                 /* array 16 header: 1000 -> 1001 */
    CHECK_PREFIX(lattice_kv_keys(NULL, "", &keys), "the reply to lattice:keyvalue KeyValue.Keys is not a page");
    static const uint8_t lying[] = {0xdd, 0x00, 0x10, 0x00, 0x00, 0xa0};
    host_answers(lying, sizeof lying);
    CHECK_PREFIX(lattice_kv_keys(NULL, "", &keys),
                 "could not decode msgpack: the reply to lattice:keyvalue KeyValue.Keys is not a list of keys: msgpack: array length exceeds");

    mock.host_error = "actor c may not call contract lattice:keyvalue";
    CHECK_STR(lattice_kv_set(NULL, "k", lattice_cbytes("v")),
              "call to lattice:keyvalue KeyValue.Set failed: actor c may not call contract lattice:keyvalue");
    mock.host_error = NULL;
}

static void test_http(void) {
    lattice_buf p = LATTICE_BUF_INIT;
    lattice_write_map(&p, 6);
    lattice_write_cstr(&p, "method");
    lattice_write_cstr(&p, "POST");
    lattice_write_cstr(&p, "path");
    lattice_write_cstr(&p, "/a%20b");
    lattice_write_cstr(&p, "query");
    lattice_write_cstr(&p, "x=1");
    lattice_write_cstr(&p, "headers");
    lattice_write_map(&p, 2);
    lattice_write_cstr(&p, "accept");
    lattice_write_array(&p, 2);
    lattice_write_cstr(&p, "a/b");
    lattice_write_cstr(&p, "c/d");
    lattice_write_cstr(&p, "host");
    lattice_write_cstr(&p, "example"); /* a single str is accepted */
    lattice_write_cstr(&p, "body");
    lattice_write_bin(&p, "\0\1\2", 3);
    lattice_write_cstr(&p, "future");
    lattice_write_map(&p, 0);
    lattice_http_request req;
    CHECK(lattice_http_decode_request(lattice_buf_bytes(&p), &req) == NULL);
    CHECK_STR(req.method, "POST");
    CHECK_STR(req.path, "/a%20b");
    CHECK_STR(req.query, "x=1");
    CHECK(req.header_count == 3);
    CHECK_STR(lattice_http_request_header(&req, "Accept"), "a/b");
    CHECK_STR(lattice_http_request_header(&req, "HOST"), "example");
    CHECK(lattice_http_request_header(&req, "missing") == NULL);
    CHECK(bytes_eq(req.body, "\0\1\2", 3));

    lattice_buf m = LATTICE_BUF_INIT;
    lattice_write_map(&m, 2);
    lattice_write_cstr(&m, "method");
    lattice_write_cstr(&m, "GET");
    lattice_write_cstr(&m, "path");
    lattice_write_cstr(&m, "/");
    CHECK(lattice_http_decode_request(lattice_buf_bytes(&m), &req) == NULL);
    CHECK(req.header_count == 0 && req.body.len == 0 && strcmp(req.query, "") == 0);

    lattice_buf bad = LATTICE_BUF_INIT;
    lattice_write_map(&bad, 1);
    lattice_write_cstr(&bad, "method");
    lattice_write_cstr(&bad, "GET");
    CHECK_STR(lattice_http_decode_request(lattice_buf_bytes(&bad), &req),
              "HttpServer.HandleRequest: payload is not an HttpRequest: missing field `path`");
    CHECK_STR(lattice_http_decode_request(lattice_cbytes("\x92\xa3GET"), &req),
              "HttpServer.HandleRequest: payload is not an HttpRequest: msgpack: expected str at byte 5, found end of input");

    lattice_http_response resp;
    lattice_http_response_init(&resp, 201);
    lattice_http_response_add_header(&resp, "Set-Cookie", "a=1");
    lattice_http_response_add_header(&resp, "x-one", "1");
    lattice_http_response_add_header(&resp, "set-cookie", "b=2");
    for (int k = 0; k < 20; k++) lattice_http_response_add_header(&resp, "x-many", "m");
    lattice_http_response_set_body(&resp, lattice_cbytes("ok"));
    lattice_buf out = LATTICE_BUF_INIT;
    CHECK(lattice_http_encode_response(&resp, &out) == NULL);
    lattice_reader r;
    uint32_t pairs = 0, names = 0, values = 0;
    lattice_bytes s;
    uint64_t status = 0;
    lattice_reader_init(&r, out.ptr, out.len);
    CHECK(lattice_read_map(&r, &pairs) && pairs == 3);
    CHECK(lattice_read_str(&r, &s) && bytes_eq(s, "status", 6) && lattice_read_uint(&r, &status) && status == 201);
    CHECK(lattice_read_str(&r, &s) && bytes_eq(s, "headers", 7) && lattice_read_map(&r, &names) && names == 3);
    CHECK(lattice_read_str(&r, &s) && bytes_eq(s, "Set-Cookie", 10) && lattice_read_array(&r, &values) && values == 2);
    CHECK(lattice_read_str(&r, &s) && bytes_eq(s, "a=1", 3) && lattice_read_str(&r, &s) && bytes_eq(s, "b=2", 3));
    CHECK(lattice_read_str(&r, &s) && bytes_eq(s, "x-one", 5) && lattice_read_array(&r, &values) && values == 1);
    CHECK(lattice_read_skip(&r));
    CHECK(lattice_read_str(&r, &s) && bytes_eq(s, "x-many", 6) && lattice_read_array(&r, &values) && values == 20);
    for (int k = 0; k < 20; k++) lattice_read_skip(&r);
    CHECK(lattice_read_str(&r, &s) && bytes_eq(s, "body", 4));
    CHECK(lattice_read_bin(&r, &s) && bytes_eq(s, "ok", 2) && lattice_read_end(&r));
    CHECK(out.ptr[0] == 0x83 && out.ptr[1] == 0xa6 && out.ptr[8] == 0xcc && out.ptr[9] == 201);

    lattice_buf one = LATTICE_BUF_INIT;
    CHECK(lattice_http_reply(&one, 404, "text/plain", lattice_cbytes("no")) == NULL);
    CHECK(one.len > 0 && one.ptr[0] == 0x83);
}

int main(void) {
    test_ints();
    test_strings_and_containers();
    test_reader_errors();
    test_buffers();
    test_dispatch();
    test_host_calls();
    test_keyvalue();
    test_http();
    free(mock.response);
    free(mock.error);
    free(mock.sent);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
