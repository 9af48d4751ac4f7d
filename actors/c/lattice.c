/*
 * lattice.c: the Lattice C actor SDK (see lattice.h).
 *
 * Compiled for wasm32 it imports the waPC host functions from module `wapc`
 * and exports `__guest_call`. Compiled natively (unit tests) the imports are
 * plain extern functions `lattice_wapc_*` that the test program defines, so a
 * test can play the host.
 *
 * Memory: every allocation made for a call comes from a per-call arena (a list
 * of malloc'd chunks, bump-allocated) that is reset when the call ends; the
 * first chunk is kept for the next call, every other chunk is freed. Only the
 * handler table and that first chunk outlive a call.
 */
#include "lattice.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* waPC imports                                                              */
/* ------------------------------------------------------------------------ */

#if defined(__wasm__)
#define WAPC_IMPORT(name) __attribute__((import_module("wapc"), import_name(name)))
#else
#define WAPC_IMPORT(name)
#endif

/* On wasm32 pointers and size_t are 32-bit: every parameter is an i32. */
WAPC_IMPORT("__guest_request") extern void lattice_wapc_guest_request(uint8_t *op, uint8_t *msg);
WAPC_IMPORT("__guest_response") extern void lattice_wapc_guest_response(const uint8_t *ptr, size_t len);
WAPC_IMPORT("__guest_error") extern void lattice_wapc_guest_error(const uint8_t *ptr, size_t len);
WAPC_IMPORT("__host_call")
extern int32_t lattice_wapc_host_call(const uint8_t *bd, size_t bd_len, const uint8_t *ns,
                                      size_t ns_len, const uint8_t *op, size_t op_len,
                                      const uint8_t *ptr, size_t len);
WAPC_IMPORT("__host_response_len") extern size_t lattice_wapc_host_response_len(void);
WAPC_IMPORT("__host_response") extern void lattice_wapc_host_response(uint8_t *ptr);
WAPC_IMPORT("__host_error_len") extern size_t lattice_wapc_host_error_len(void);
WAPC_IMPORT("__host_error") extern void lattice_wapc_host_error(uint8_t *ptr);
WAPC_IMPORT("__console_log") extern void lattice_wapc_console_log(const uint8_t *ptr, size_t len);

static const char OUT_OF_MEMORY[] = "out of memory";

/* ------------------------------------------------------------------------ */
/* Tracked malloc                                                            */
/* ------------------------------------------------------------------------ */

static struct {
    uint64_t calls;
    uint32_t live_blocks;
    uint64_t live_bytes;
    uint32_t idle_live_blocks;
    uint64_t idle_live_bytes;
    uint64_t call_bytes;
    uint64_t peak_call_bytes;
} g_stats;

static void *tracked_malloc(size_t size) {
    void *p = malloc(size);
    if (p) {
        g_stats.live_blocks++;
        g_stats.live_bytes += size;
    }
    return p;
}

static void tracked_free(void *p, size_t size) {
    if (!p) return;
    free(p);
    g_stats.live_blocks--;
    g_stats.live_bytes -= size;
}

/* ------------------------------------------------------------------------ */
/* Per-call arena                                                            */
/* ------------------------------------------------------------------------ */

#define ARENA_ALIGN 16u
#define ARENA_FIRST_CHUNK (16u * 1024u)
#define ARENA_MAX_GROWTH (1024u * 1024u)

typedef struct chunk {
    struct chunk *prev;
    size_t cap;  /* usable bytes after the header */
    size_t used; /* bytes handed out */
} chunk;

#define CHUNK_HEADER ((sizeof(chunk) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

static chunk *g_arena;       /* the chunk allocations come from; older ones via prev */
static chunk *g_arena_first; /* kept across calls */

static uint8_t *chunk_data(chunk *c) { return (uint8_t *)c + CHUNK_HEADER; }

static size_t round_up(size_t n) { return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1); }

static void note_call_bytes(size_t added) {
    g_stats.call_bytes += added;
    if (g_stats.call_bytes > g_stats.peak_call_bytes) g_stats.peak_call_bytes = g_stats.call_bytes;
}

static chunk *new_chunk(size_t need) {
    size_t cap = ARENA_FIRST_CHUNK;
    if (g_arena) {
        size_t grown = g_arena->cap * 2;
        if (grown > ARENA_MAX_GROWTH) grown = ARENA_MAX_GROWTH;
        if (grown > cap) cap = grown;
    }
    if (need > cap) cap = need;
    if (cap > SIZE_MAX - CHUNK_HEADER) return NULL;
    chunk *c = tracked_malloc(CHUNK_HEADER + cap);
    if (!c) return NULL;
    c->prev = g_arena;
    c->cap = cap;
    c->used = 0;
    g_arena = c;
    if (!g_arena_first) g_arena_first = c;
    return c;
}

void *lattice_alloc(size_t size) {
    if (size == 0) size = 1;
    if (size > SIZE_MAX - ARENA_ALIGN) return NULL;
    size_t n = round_up(size);
    chunk *c = g_arena;
    if (!c || c->cap - c->used < n) {
        c = new_chunk(n);
        if (!c) return NULL;
    }
    uint8_t *p = chunk_data(c) + c->used;
    c->used += n;
    note_call_bytes(n);
    return p;
}

/* Grows the allocation `p` (of `size_old` bytes, `used` of them in use) to
 * `size` bytes: in place when it is the last allocation of the current chunk
 * and there is room, else by copying the used bytes. */
static void *arena_grow(void *p, size_t size_old, size_t used, size_t size) {
    if (size > SIZE_MAX - ARENA_ALIGN) return NULL;
    chunk *c = g_arena;
    if (p && c && size >= size_old) {
        size_t old_n = round_up(size_old);
        uint8_t *end = chunk_data(c) + c->used;
        size_t n = round_up(size);
        if ((uint8_t *)p + old_n == end && c->cap - (c->used - old_n) >= n) {
            c->used = c->used - old_n + n;
            note_call_bytes(n - old_n);
            return p;
        }
    }
    void *q = lattice_alloc(size);
    if (q && p && used) memcpy(q, p, used);
    return q;
}

/* Frees every chunk but the first, and empties that one. */
static void arena_reset(void) {
    chunk *c = g_arena;
    while (c) {
        chunk *prev = c->prev;
        if (c != g_arena_first) tracked_free(c, CHUNK_HEADER + c->cap);
        c = prev;
    }
    if (g_arena_first) {
        if (g_arena_first->cap > ARENA_FIRST_CHUNK) {
            /* only a small first chunk is worth keeping */
            tracked_free(g_arena_first, CHUNK_HEADER + g_arena_first->cap);
            g_arena_first = NULL;
        } else {
            g_arena_first->used = 0;
            g_arena_first->prev = NULL;
        }
    }
    g_arena = g_arena_first;
    g_stats.call_bytes = 0;
}

char *lattice_strndup(const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = lattice_alloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *lattice_strdup(const char *s) { return lattice_strndup(s ? s : "", s ? strlen(s) : 0); }

const char *lattice_concat(const char *first, ...) {
    lattice_buf b = LATTICE_BUF_INIT;
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) lattice_buf_puts(&b, s);
    va_end(ap);
    return lattice_buf_cstr(&b);
}

static size_t u64_digits(uint64_t v, char out[20]) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

const char *lattice_fmt_u64(uint64_t value) {
    lattice_buf b = LATTICE_BUF_INIT;
    lattice_buf_put_u64(&b, value);
    return lattice_buf_cstr(&b);
}

const char *lattice_fmt_i64(int64_t value) {
    lattice_buf b = LATTICE_BUF_INIT;
    lattice_buf_put_i64(&b, value);
    return lattice_buf_cstr(&b);
}

void lattice_get_stats(lattice_stats *out) {
    out->calls = g_stats.calls;
    out->live_blocks = g_stats.live_blocks;
    out->live_bytes = g_stats.live_bytes;
    out->idle_live_blocks = g_stats.idle_live_blocks;
    out->idle_live_bytes = g_stats.idle_live_bytes;
    out->call_bytes = g_stats.call_bytes;
    out->peak_call_bytes = g_stats.peak_call_bytes;
#if defined(__wasm__)
    out->memory_pages = (uint32_t)__builtin_wasm_memory_size(0);
#else
    out->memory_pages = 0;
#endif
}

/* ------------------------------------------------------------------------ */
/* Bytes and buffers                                                         */
/* ------------------------------------------------------------------------ */

lattice_bytes lattice_cbytes(const char *s) {
    lattice_bytes b = {(const uint8_t *)s, s ? strlen(s) : 0};
    return b;
}

lattice_bytes lattice_bytes_of(const void *ptr, size_t len) {
    lattice_bytes b = {(const uint8_t *)ptr, len};
    return b;
}

lattice_bytes lattice_buf_bytes(const lattice_buf *buf) {
    lattice_bytes b = {buf->ptr, buf->len};
    return b;
}

bool lattice_buf_reserve(lattice_buf *buf, size_t extra) {
    if (buf->failed) return false;
    if (extra > SIZE_MAX - buf->len) {
        buf->failed = true;
        return false;
    }
    size_t need = buf->len + extra;
    if (need <= buf->cap) return true;
    size_t cap = buf->cap > SIZE_MAX / 2 ? SIZE_MAX : buf->cap * 2;
    if (cap < need) cap = need;
    if (cap < 64) cap = 64;
    uint8_t *p = arena_grow(buf->ptr, buf->cap, buf->len, cap);
    if (!p) {
        buf->failed = true;
        return false;
    }
    buf->ptr = p;
    buf->cap = cap;
    return true;
}

void lattice_buf_append(lattice_buf *buf, const void *data, size_t len) {
    if (!len || !lattice_buf_reserve(buf, len)) return;
    memcpy(buf->ptr + buf->len, data, len);
    buf->len += len;
}

void lattice_buf_putc(lattice_buf *buf, char c) {
    if (!lattice_buf_reserve(buf, 1)) return;
    buf->ptr[buf->len++] = (uint8_t)c;
}

void lattice_buf_puts(lattice_buf *buf, const char *s) {
    if (s) lattice_buf_append(buf, s, strlen(s));
}

void lattice_buf_put_u64(lattice_buf *buf, uint64_t value) {
    char digits[20];
    size_t n = u64_digits(value, digits);
    lattice_buf_append(buf, digits, n);
}

void lattice_buf_put_i64(lattice_buf *buf, int64_t value) {
    if (value < 0) {
        lattice_buf_putc(buf, '-');
        lattice_buf_put_u64(buf, (uint64_t)0 - (uint64_t)value);
    } else {
        lattice_buf_put_u64(buf, (uint64_t)value);
    }
}

/* Length of the valid UTF-8 sequence at s[0..len), or 0 if invalid. */
static size_t utf8_sequence(const uint8_t *s, size_t len) {
    uint8_t c = s[0];
    size_t n;
    uint32_t min;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

void lattice_buf_put_json_string(lattice_buf *buf, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    lattice_buf_putc(buf, '"');
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            lattice_buf_append(buf, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *short_esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (short_esc) {
                lattice_buf_append(buf, short_esc, 2);
            } else {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                lattice_buf_append(buf, esc, 6);
            }
            i++;
        } else {
            size_t n = utf8_sequence(p + i, len - i);
            if (n) {
                lattice_buf_append(buf, p + i, n);
                i += n;
            } else {
                lattice_buf_append(buf, "\xef\xbf\xbd", 3); /* U+FFFD */
                i++;
            }
        }
    }
    lattice_buf_putc(buf, '"');
}

void lattice_buf_clear(lattice_buf *buf) { buf->len = 0; }

const char *lattice_buf_cstr(lattice_buf *buf) {
    if (!lattice_buf_reserve(buf, 1)) return OUT_OF_MEMORY;
    buf->ptr[buf->len] = '\0';
    return (const char *)buf->ptr;
}

/* ------------------------------------------------------------------------ */
/* msgpack writer                                                            */
/* ------------------------------------------------------------------------ */

static void put_be(lattice_buf *buf, uint8_t marker, uint64_t v, int bytes) {
    uint8_t out[9];
    out[0] = marker;
    for (int i = 0; i < bytes; i++) out[1 + i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    lattice_buf_append(buf, out, (size_t)bytes + 1);
}

void lattice_write_nil(lattice_buf *buf) { lattice_buf_putc(buf, (char)0xc0); }

void lattice_write_bool(lattice_buf *buf, bool value) {
    lattice_buf_putc(buf, (char)(value ? 0xc3 : 0xc2));
}

void lattice_write_uint(lattice_buf *buf, uint64_t v) {
    if (v < 0x80) lattice_buf_putc(buf, (char)v);
    else if (v <= UINT8_MAX) put_be(buf, 0xcc, v, 1);
    else if (v <= UINT16_MAX) put_be(buf, 0xcd, v, 2);
    else if (v <= UINT32_MAX) put_be(buf, 0xce, v, 4);
    else put_be(buf, 0xcf, v, 8);
}

void lattice_write_int(lattice_buf *buf, int64_t v) {
    if (v >= 0) lattice_write_uint(buf, (uint64_t)v);
    else if (v >= -32) lattice_buf_putc(buf, (char)(uint8_t)(int8_t)v);
    else if (v >= INT8_MIN) put_be(buf, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN) put_be(buf, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN) put_be(buf, 0xd2, (uint64_t)v, 4);
    else put_be(buf, 0xd3, (uint64_t)v, 8);
}

void lattice_write_f64(lattice_buf *buf, double value) {
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    put_be(buf, 0xcb, bits, 8);
}

/* A length header: the fix form (when `fix` is nonzero and n < fix_max), or the
 * 8/16/32-bit forms whose markers are m8 (0 = none), m16 and m32. */
static void put_len(lattice_buf *buf, uint8_t fix, size_t fix_max, uint8_t m8, uint8_t m16,
                    uint8_t m32, size_t n) {
    if (fix && n < fix_max) lattice_buf_putc(buf, (char)(fix | n));
    else if (m8 && n <= UINT8_MAX) put_be(buf, m8, n, 1);
    else if (n <= UINT16_MAX) put_be(buf, m16, n, 2);
    else if ((uint64_t)n <= UINT32_MAX) put_be(buf, m32, n, 4);
    else buf->failed = true; /* msgpack cannot say it */
}

void lattice_write_str(lattice_buf *buf, const char *s, size_t len) {
    put_len(buf, 0xa0, 32, 0xd9, 0xda, 0xdb, len);
    lattice_buf_append(buf, s, len);
}

void lattice_write_cstr(lattice_buf *buf, const char *s) {
    lattice_write_str(buf, s ? s : "", s ? strlen(s) : 0);
}

void lattice_write_bin(lattice_buf *buf, const void *data, size_t len) {
    put_len(buf, 0, 0, 0xc4, 0xc5, 0xc6, len);
    lattice_buf_append(buf, data, len);
}

void lattice_write_array(lattice_buf *buf, uint32_t count) {
    put_len(buf, 0x90, 16, 0, 0xdc, 0xdd, count);
}

void lattice_write_map(lattice_buf *buf, uint32_t pairs) {
    put_len(buf, 0x80, 16, 0, 0xde, 0xdf, pairs);
}

/* ------------------------------------------------------------------------ */
/* msgpack reader                                                            */
/* ------------------------------------------------------------------------ */

static const uint8_t NIL_BYTE[1] = {0xc0};

void lattice_reader_init(lattice_reader *r, const void *data, size_t len) {
    if (len == 0) {
        data = NIL_BYTE;
        len = 1;
    }
    r->start = data;
    r->pos = data;
    r->end = r->start + len;
    r->error = NULL;
}

const char *lattice_reader_error(const lattice_reader *r) { return r->error; }

bool lattice_read_fail(lattice_reader *r, const char *message) {
    if (!r->error) r->error = message ? message : "msgpack: read failed";
    return false;
}

static lattice_mp_type type_of(uint8_t m) {
    if (m <= 0x7f) return LATTICE_MP_UINT;
    if (m <= 0x8f) return LATTICE_MP_MAP;
    if (m <= 0x9f) return LATTICE_MP_ARRAY;
    if (m <= 0xbf) return LATTICE_MP_STR;
    if (m >= 0xe0) return LATTICE_MP_INT;
    switch (m) {
    case 0xc0: return LATTICE_MP_NIL;
    case 0xc2:
    case 0xc3: return LATTICE_MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6: return LATTICE_MP_BIN;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: return LATTICE_MP_EXT;
    case 0xca:
    case 0xcb: return LATTICE_MP_FLOAT;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: return LATTICE_MP_UINT;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: return LATTICE_MP_INT;
    case 0xd9:
    case 0xda:
    case 0xdb: return LATTICE_MP_STR;
    case 0xdc:
    case 0xdd: return LATTICE_MP_ARRAY;
    case 0xde:
    case 0xdf: return LATTICE_MP_MAP;
    default: return LATTICE_MP_INVALID; /* 0xc1 */
    }
}

lattice_mp_type lattice_read_peek(const lattice_reader *r) {
    if (r->error) return LATTICE_MP_INVALID;
    if (r->pos >= r->end) return LATTICE_MP_END;
    return type_of(*r->pos);
}

const char *lattice_mp_type_name(lattice_mp_type type) {
    switch (type) {
    case LATTICE_MP_NIL: return "nil";
    case LATTICE_MP_BOOL: return "bool";
    case LATTICE_MP_UINT: return "uint";
    case LATTICE_MP_INT: return "negative int";
    case LATTICE_MP_FLOAT: return "float";
    case LATTICE_MP_STR: return "str";
    case LATTICE_MP_BIN: return "bin";
    case LATTICE_MP_ARRAY: return "array";
    case LATTICE_MP_MAP: return "map";
    case LATTICE_MP_EXT: return "ext";
    case LATTICE_MP_END: return "end of input";
    case LATTICE_MP_INVALID: break;
    }
    return "invalid marker";
}

static size_t offset_of(const lattice_reader *r) { return (size_t)(r->pos - r->start); }

/* "msgpack: expected X at byte N, found Y" */
static bool fail_expected(lattice_reader *r, const char *expected) {
    if (r->error) return false;
    lattice_mp_type found = lattice_read_peek(r);
    const char *what = lattice_mp_type_name(found);
    if (found == LATTICE_MP_INVALID) {
        static const char hex[] = "0123456789abcdef";
        char marker[5] = {'0', 'x', hex[*r->pos >> 4], hex[*r->pos & 15], '\0'};
        what = lattice_concat("invalid marker ", marker, NULL);
    }
    return lattice_read_fail(r, lattice_concat("msgpack: expected ", expected, " at byte ",
                                               lattice_fmt_u64(offset_of(r)), ", found ", what,
                                               NULL));
}

static bool fail_truncated(lattice_reader *r, const char *what, uint64_t need) {
    return lattice_read_fail(
        r, lattice_concat("msgpack: truncated input: ", what, " at byte ",
                          lattice_fmt_u64(offset_of(r)), " needs ", lattice_fmt_u64(need),
                          " bytes, ", lattice_fmt_u64((uint64_t)(r->end - r->pos)), " left",
                          NULL));
}

static uint64_t get_be(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = (v << 8) | p[i];
    return v;
}

/* Reads marker + `bytes` big-endian bytes after it, checking bounds. */
static bool take_be(lattice_reader *r, const char *what, int bytes, uint64_t *v) {
    if ((size_t)(r->end - r->pos) < (size_t)bytes + 1) return fail_truncated(r, what, (uint64_t)bytes + 1);
    *v = get_be(r->pos + 1, bytes);
    r->pos += 1 + bytes;
    return true;
}

bool lattice_read_nil(lattice_reader *r) {
    if (lattice_read_peek(r) != LATTICE_MP_NIL) return fail_expected(r, "nil");
    r->pos++;
    return true;
}

bool lattice_read_try_nil(lattice_reader *r) {
    if (lattice_read_peek(r) != LATTICE_MP_NIL) return false;
    r->pos++;
    return true;
}

bool lattice_read_bool(lattice_reader *r, bool *out) {
    if (lattice_read_peek(r) != LATTICE_MP_BOOL) return fail_expected(r, "bool");
    *out = *r->pos == 0xc3;
    r->pos++;
    return true;
}

/* Reads any integer as a sign and magnitude: *neg set for negatives, *mag the
 * value (for negatives, the two's complement bits as int64). */
static bool read_integer(lattice_reader *r, const char *expected, bool *neg, uint64_t *v) {
    lattice_mp_type t = lattice_read_peek(r);
    if (t != LATTICE_MP_UINT && t != LATTICE_MP_INT) return fail_expected(r, expected);
    uint8_t m = *r->pos;
    uint64_t raw = 0;
    *neg = false;
    if (m <= 0x7f) {
        *v = m;
        r->pos++;
        return true;
    }
    if (m >= 0xe0) {
        *neg = true;
        *v = (uint64_t)(int64_t)(int8_t)m;
        r->pos++;
        return true;
    }
    switch (m) {
    case 0xcc: if (!take_be(r, "uint8", 1, &raw)) return false; *v = raw; return true;
    case 0xcd: if (!take_be(r, "uint16", 2, &raw)) return false; *v = raw; return true;
    case 0xce: if (!take_be(r, "uint32", 4, &raw)) return false; *v = raw; return true;
    case 0xcf: if (!take_be(r, "uint64", 8, &raw)) return false; *v = raw; return true;
    case 0xd0:
        if (!take_be(r, "int8", 1, &raw)) return false;
        *v = (uint64_t)(int64_t)(int8_t)(uint8_t)raw;
        break;
    case 0xd1:
        if (!take_be(r, "int16", 2, &raw)) return false;
        *v = (uint64_t)(int64_t)(int16_t)(uint16_t)raw;
        break;
    case 0xd2:
        if (!take_be(r, "int32", 4, &raw)) return false;
        *v = (uint64_t)(int64_t)(int32_t)(uint32_t)raw;
        break;
    default: /* 0xd3 */
        if (!take_be(r, "int64", 8, &raw)) return false;
        *v = raw;
        break;
    }
    /* signed encodings may hold non-negative values */
    *neg = (int64_t)*v < 0;
    return true;
}

bool lattice_read_int(lattice_reader *r, int64_t *out) {
    bool neg;
    uint64_t v;
    const uint8_t *at = r->pos;
    if (!read_integer(r, "int", &neg, &v)) return false;
    if (!neg && v > (uint64_t)INT64_MAX) {
        r->pos = at;
        return lattice_read_fail(r, lattice_concat("msgpack: integer ", lattice_fmt_u64(v),
                                                   " at byte ", lattice_fmt_u64(offset_of(r)),
                                                   " does not fit in int64", NULL));
    }
    *out = (int64_t)v;
    return true;
}

bool lattice_read_uint(lattice_reader *r, uint64_t *out) {
    bool neg;
    uint64_t v;
    const uint8_t *at = r->pos;
    if (!read_integer(r, "uint", &neg, &v)) return false;
    if (neg) {
        r->pos = at;
        return lattice_read_fail(r, lattice_concat("msgpack: expected uint at byte ",
                                                   lattice_fmt_u64(offset_of(r)), ", found ",
                                                   lattice_fmt_i64((int64_t)v), NULL));
    }
    *out = v;
    return true;
}

bool lattice_read_f64(lattice_reader *r, double *out) {
    lattice_mp_type t = lattice_read_peek(r);
    if (t == LATTICE_MP_UINT || t == LATTICE_MP_INT) {
        bool neg;
        uint64_t v;
        if (!read_integer(r, "number", &neg, &v)) return false;
        *out = neg ? (double)(int64_t)v : (double)v;
        return true;
    }
    if (t != LATTICE_MP_FLOAT) return fail_expected(r, "float");
    uint64_t raw = 0;
    if (*r->pos == 0xca) {
        if (!take_be(r, "float32", 4, &raw)) return false;
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = f;
    } else {
        if (!take_be(r, "float64", 8, &raw)) return false;
        memcpy(out, &raw, sizeof *out);
    }
    return true;
}

/* Reads the header of a str/bin/array/map/ext whose type is already checked:
 * the length, and for ext the type byte. Payload bounds are checked by callers. */
static bool read_len(lattice_reader *r, const char *what, uint64_t *len) {
    uint8_t m = *r->pos;
    if ((m & 0xe0) == 0xa0) { *len = m & 0x1f; r->pos++; return true; }
    if ((m & 0xf0) == 0x90 || (m & 0xf0) == 0x80) { *len = m & 0x0f; r->pos++; return true; }
    switch (m) {
    case 0xc4: case 0xd9: return take_be(r, what, 1, len);
    case 0xc5: case 0xda: case 0xdc: case 0xde: return take_be(r, what, 2, len);
    default: return take_be(r, what, 4, len); /* c6 db dd df */
    }
}

static bool read_payload(lattice_reader *r, const char *what, lattice_bytes *out) {
    const uint8_t *at = r->pos;
    uint64_t len;
    if (!read_len(r, what, &len)) return false;
    if ((uint64_t)(r->end - r->pos) < len) {
        uint64_t header = (uint64_t)(r->pos - at);
        r->pos = at;
        return fail_truncated(r, what, header + len);
    }
    out->ptr = r->pos;
    out->len = (size_t)len;
    r->pos += len;
    return true;
}

bool lattice_read_str(lattice_reader *r, lattice_bytes *out) {
    if (lattice_read_peek(r) != LATTICE_MP_STR) return fail_expected(r, "str");
    return read_payload(r, "str", out);
}

bool lattice_read_cstr(lattice_reader *r, const char **out) {
    lattice_bytes b;
    if (!lattice_read_str(r, &b)) return false;
    char *s = lattice_strndup((const char *)b.ptr, b.len);
    if (!s) return lattice_read_fail(r, OUT_OF_MEMORY);
    *out = s;
    return true;
}

bool lattice_read_bin(lattice_reader *r, lattice_bytes *out) {
    lattice_mp_type t = lattice_read_peek(r);
    if (t != LATTICE_MP_BIN && t != LATTICE_MP_STR) return fail_expected(r, "bin");
    return read_payload(r, t == LATTICE_MP_BIN ? "bin" : "str", out);
}

bool lattice_read_array(lattice_reader *r, uint32_t *count) {
    if (lattice_read_peek(r) != LATTICE_MP_ARRAY) return fail_expected(r, "array");
    uint64_t n;
    if (!read_len(r, "array", &n)) return false;
    *count = (uint32_t)n;
    return true;
}

bool lattice_read_map(lattice_reader *r, uint32_t *pairs) {
    if (lattice_read_peek(r) != LATTICE_MP_MAP) return fail_expected(r, "map");
    uint64_t n;
    if (!read_len(r, "map", &n)) return false;
    *pairs = (uint32_t)n;
    return true;
}

static bool skip_depth(lattice_reader *r, int depth) {
    if (depth > 64) return lattice_read_fail(r, "msgpack: values nested more than 64 deep");
    lattice_mp_type t = lattice_read_peek(r);
    uint8_t m = r->pos < r->end ? *r->pos : 0;
    uint64_t n = 0;
    lattice_bytes ignored;
    bool b;
    double d;
    switch (t) {
    case LATTICE_MP_NIL: return lattice_read_nil(r);
    case LATTICE_MP_BOOL: return lattice_read_bool(r, &b);
    case LATTICE_MP_UINT:
    case LATTICE_MP_INT: {
        bool neg;
        uint64_t v;
        return read_integer(r, "int", &neg, &v);
    }
    case LATTICE_MP_FLOAT: return lattice_read_f64(r, &d);
    case LATTICE_MP_STR:
    case LATTICE_MP_BIN: return lattice_read_bin(r, &ignored);
    case LATTICE_MP_ARRAY:
    case LATTICE_MP_MAP: {
        if (!read_len(r, t == LATTICE_MP_MAP ? "map" : "array", &n)) return false;
        uint64_t items = t == LATTICE_MP_MAP ? n * 2 : n;
        for (uint64_t k = 0; k < items; k++) {
            /* each item takes at least one byte: fail fast on absurd counts */
            if (r->pos >= r->end) return fail_expected(r, "a container element");
            if (!skip_depth(r, depth + 1)) return false;
        }
        return true;
    }
    case LATTICE_MP_EXT: {
        uint64_t data;
        int fixed = m == 0xd4 ? 1 : m == 0xd5 ? 2 : m == 0xd6 ? 4 : m == 0xd7 ? 8 : m == 0xd8 ? 16 : 0;
        const uint8_t *at = r->pos;
        if (fixed) {
            data = (uint64_t)fixed + 1; /* type byte + data */
            r->pos++;
        } else {
            int lb = m == 0xc7 ? 1 : m == 0xc8 ? 2 : 4;
            if (!take_be(r, "ext", lb, &n)) return false;
            data = n + 1;
        }
        if ((uint64_t)(r->end - r->pos) < data) {
            r->pos = at;
            return fail_truncated(r, "ext", data + 1);
        }
        r->pos += data;
        return true;
    }
    case LATTICE_MP_END:
    case LATTICE_MP_INVALID: break;
    }
    return fail_expected(r, "a value");
}

bool lattice_read_skip(lattice_reader *r) { return skip_depth(r, 0); }

bool lattice_read_end(lattice_reader *r) {
    if (r->error) return false;
    if (r->pos == r->end) return true;
    return lattice_read_fail(r, lattice_concat("msgpack: ",
                                               lattice_fmt_u64((uint64_t)(r->end - r->pos)),
                                               " unexpected bytes after the value at byte ",
                                               lattice_fmt_u64(offset_of(r)), NULL));
}

/* Structs: a map keyed by field name (what every SDK sends), or an array of
 * the fields in order (accepted, as the Rust decoders do). `struct_next`
 * yields the index of the next field in `fields`, -1 for an unknown one (its
 * value must be skipped), or -2 when there are no more. */
typedef struct {
    bool is_map;
    uint32_t left;
    uint32_t index;
} struct_cursor;

static bool struct_begin(lattice_reader *r, struct_cursor *c, const char *type) {
    c->index = 0;
    if (lattice_read_peek(r) == LATTICE_MP_ARRAY) {
        c->is_map = false;
        return lattice_read_array(r, &c->left);
    }
    c->is_map = true;
    if (lattice_read_peek(r) != LATTICE_MP_MAP) return fail_expected(r, type);
    return lattice_read_map(r, &c->left);
}

static int struct_next(lattice_reader *r, struct_cursor *c, const char *const *fields, int n) {
    if (r->error || c->left == 0) return -2;
    c->left--;
    if (!c->is_map) {
        uint32_t i = c->index++;
        return i < (uint32_t)n ? (int)i : -1;
    }
    lattice_bytes key;
    if (!lattice_read_str(r, &key)) return -2;
    for (int i = 0; i < n; i++) {
        if (strlen(fields[i]) == key.len && memcmp(fields[i], key.ptr, key.len) == 0) return i;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Registry and dispatch                                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *operation;
    size_t size; /* allocation size of `operation` */
    lattice_handler handler;
} entry;

static entry *g_handlers;
static size_t g_handler_count;
static size_t g_handler_cap;

bool lattice_register(const char *operation, lattice_handler handler) {
    if (!operation) return false;
    for (size_t i = 0; i < g_handler_count; i++) {
        if (strcmp(g_handlers[i].operation, operation) == 0) {
            g_handlers[i].handler = handler;
            return true;
        }
    }
    if (g_handler_count == g_handler_cap) {
        size_t cap = g_handler_cap ? g_handler_cap * 2 : 8;
        entry *grown = tracked_malloc(cap * sizeof *grown);
        if (!grown) return false;
        if (g_handler_count) memcpy(grown, g_handlers, g_handler_count * sizeof *grown);
        tracked_free(g_handlers, g_handler_cap * sizeof *g_handlers);
        g_handlers = grown;
        g_handler_cap = cap;
    }
    size_t size = strlen(operation) + 1;
    char *copy = tracked_malloc(size);
    if (!copy) return false;
    memcpy(copy, operation, size);
    g_handlers[g_handler_count].operation = copy;
    g_handlers[g_handler_count].size = size;
    g_handlers[g_handler_count].handler = handler;
    g_handler_count++;
    return true;
}

/* Appends `s` the way Rust's `{:?}` shows a string: quoted, with \" \\ \n \r \t
 * and \u{..} for other control characters. */
static void put_debug_string(lattice_buf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    lattice_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            lattice_buf_putc(b, '\\');
            lattice_buf_putc(b, (char)c);
        } else if (c == '\n') {
            lattice_buf_puts(b, "\\n");
        } else if (c == '\r') {
            lattice_buf_puts(b, "\\r");
        } else if (c == '\t') {
            lattice_buf_puts(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            lattice_buf_puts(b, "\\u{");
            if (c >> 4) lattice_buf_putc(b, hex[c >> 4]);
            lattice_buf_putc(b, hex[c & 15]);
            lattice_buf_putc(b, '}');
        } else {
            lattice_buf_putc(b, (char)c);
        }
    }
    lattice_buf_putc(b, '"');
}

static lattice_err unknown_operation(const char *operation) {
    lattice_buf b = LATTICE_BUF_INIT;
    lattice_buf_puts(&b, "unknown operation ");
    put_debug_string(&b, operation);
    if (g_handler_count == 0) {
        lattice_buf_puts(&b, "; this actor handles no operations (did wapc_init register any?)");
    } else {
        lattice_buf_puts(&b, "; this actor handles: ");
        for (size_t i = 0; i < g_handler_count; i++) {
            if (i) lattice_buf_puts(&b, ", ");
            lattice_buf_puts(&b, g_handlers[i].operation);
        }
    }
    return lattice_buf_cstr(&b);
}

lattice_err lattice_dispatch(const char *operation, lattice_bytes payload, lattice_buf *reply) {
    for (size_t i = 0; i < g_handler_count; i++) {
        if (strcmp(g_handlers[i].operation, operation) == 0) {
            lattice_err err = g_handlers[i].handler(payload, reply);
            if (err) return err;
            if (reply->failed)
                return lattice_concat(operation, ": out of memory while writing the reply", NULL);
            return NULL;
        }
    }
    return unknown_operation(operation);
}

static void call_finished(void) {
    arena_reset();
    g_stats.idle_live_blocks = g_stats.live_blocks;
    g_stats.idle_live_bytes = g_stats.live_bytes;
}

static void guest_error(const char *message) {
    lattice_wapc_guest_error((const uint8_t *)message, strlen(message));
}

int32_t lattice_guest_call(int32_t op_len, int32_t msg_len) {
    g_stats.calls++;
    int32_t ok = 0;
    if (op_len < 0 || msg_len < 0) {
        /* no allocation: say it with a fixed message */
        guest_error("__guest_call: negative length");
        call_finished();
        return 0;
    }
    char *op = lattice_alloc((size_t)op_len + 1);
    uint8_t *msg = lattice_alloc((size_t)msg_len);
    if (!op || !msg) {
        guest_error("__guest_call: out of memory for the operation name and payload");
        call_finished();
        return 0;
    }
    lattice_wapc_guest_request((uint8_t *)op, msg);
    op[op_len] = '\0';
    lattice_buf reply = LATTICE_BUF_INIT;
    lattice_err err = lattice_dispatch(op, lattice_bytes_of(msg, (size_t)msg_len), &reply);
    if (err) {
        guest_error(err);
    } else {
        lattice_wapc_guest_response(reply.ptr, reply.len);
        ok = 1;
    }
    call_finished();
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Host calls and logging                                                    */
/* ------------------------------------------------------------------------ */

lattice_err lattice_host_call(const char *binding, const char *ns, const char *op,
                              lattice_bytes payload, lattice_bytes *reply) {
    if (!binding) binding = "";
    if (!ns) ns = "";
    if (!op) op = "";
    int32_t ok = lattice_wapc_host_call((const uint8_t *)binding, strlen(binding),
                                        (const uint8_t *)ns, strlen(ns), (const uint8_t *)op,
                                        strlen(op), payload.ptr, payload.len);
    if (ok == 1) {
        size_t len = lattice_wapc_host_response_len();
        uint8_t *buf = lattice_alloc(len);
        if (!buf) return lattice_concat("call to ", ns, " ", op, " failed: out of memory for the ",
                                        lattice_fmt_u64(len), "-byte reply", NULL);
        lattice_wapc_host_response(buf);
        if (reply) *reply = lattice_bytes_of(buf, len);
        return NULL;
    }
    size_t len = lattice_wapc_host_error_len();
    char *message = lattice_alloc(len + 1);
    if (!message) return lattice_concat("call to ", ns, " ", op, " failed", NULL);
    lattice_wapc_host_error((uint8_t *)message);
    message[len] = '\0';
    return lattice_concat("call to ", ns, " ", op, " failed: ", message, NULL);
}

lattice_err lattice_call_actor(const char *actor_id, const char *op, lattice_bytes payload,
                               lattice_bytes *reply) {
    return lattice_host_call("", actor_id, op, payload, reply);
}

void lattice_log_bytes(lattice_bytes message) {
    lattice_wapc_console_log(message.ptr, message.len);
}

void lattice_log(const char *message) { lattice_log_bytes(lattice_cbytes(message)); }

/* ------------------------------------------------------------------------ */
/* lattice:keyvalue                                                          */
/* ------------------------------------------------------------------------ */

/* Sends `request` and opens a reader on the reply. */
static lattice_err kv_call(const char *link, const char *op, lattice_buf *request,
                           lattice_reader *r) {
    if (request->failed) return lattice_concat(op, ": out of memory encoding the request", NULL);
    lattice_bytes reply;
    lattice_err err = lattice_host_call(link, LATTICE_KEYVALUE, op, lattice_buf_bytes(request), &reply);
    if (err) return err;
    lattice_reader_init(r, reply.ptr, reply.len);
    return NULL;
}

static lattice_err kv_decode_error(const char *op, const char *type, const lattice_reader *r) {
    return lattice_concat("could not decode msgpack: the reply to " LATTICE_KEYVALUE " ", op,
                          " is not a ", type, ": ", r->error ? r->error : "?", NULL);
}

static void kv_key_request(lattice_buf *b, const char *key) {
    lattice_write_map(b, 1);
    lattice_write_cstr(b, "key");
    lattice_write_cstr(b, key);
}

lattice_err lattice_kv_get(const char *link, const char *key, bool *found, lattice_bytes *value) {
    static const char *const fields[] = {"found", "value"};
    lattice_buf req = LATTICE_BUF_INIT;
    lattice_reader r = {NULL, NULL, NULL, NULL};
    kv_key_request(&req, key);
    lattice_err err = kv_call(link, LATTICE_KV_GET, &req, &r);
    if (err) return err;
    bool f = false, have_found = false;
    lattice_bytes v = {NULL, 0};
    struct_cursor c;
    if (struct_begin(&r, &c, "GetResponse map")) {
        int i;
        while ((i = struct_next(&r, &c, fields, 2)) != -2) {
            if (i == 0) have_found = lattice_read_bool(&r, &f);
            else if (i == 1) {
                if (!lattice_read_try_nil(&r)) lattice_read_bin(&r, &v);
            } else lattice_read_skip(&r);
        }
    }
    if (!r.error && !have_found) lattice_read_fail(&r, "missing field `found`");
    if (r.error) return kv_decode_error(LATTICE_KV_GET, "GetResponse", &r);
    if (!f) v.len = 0;
    if (found) *found = f;
    if (value) *value = v;
    return NULL;
}

static lattice_err kv_set(const char *link, const char *key, lattice_bytes value, bool ttl,
                          uint64_t ttl_secs) {
    lattice_buf req = LATTICE_BUF_INIT;
    lattice_reader r = {NULL, NULL, NULL, NULL};
    lattice_write_map(&req, ttl ? 3 : 2);
    lattice_write_cstr(&req, "key");
    lattice_write_cstr(&req, key);
    lattice_write_cstr(&req, "value");
    lattice_write_bin(&req, value.ptr, value.len);
    if (ttl) {
        lattice_write_cstr(&req, "ttl_secs");
        lattice_write_uint(&req, ttl_secs);
    }
    return kv_call(link, LATTICE_KV_SET, &req, &r); /* the reply (nil) carries nothing */
}

lattice_err lattice_kv_set(const char *link, const char *key, lattice_bytes value) {
    return kv_set(link, key, value, false, 0);
}

lattice_err lattice_kv_set_ttl(const char *link, const char *key, lattice_bytes value,
                               uint64_t ttl_secs) {
    return kv_set(link, key, value, true, ttl_secs);
}

static lattice_err kv_bool(const char *link, const char *op, const char *key, bool *out) {
    lattice_buf req = LATTICE_BUF_INIT;
    lattice_reader r = {NULL, NULL, NULL, NULL};
    kv_key_request(&req, key);
    lattice_err err = kv_call(link, op, &req, &r);
    if (err) return err;
    bool v = false;
    lattice_read_bool(&r, &v);
    if (r.error) return kv_decode_error(op, "bool", &r);
    if (out) *out = v;
    return NULL;
}

lattice_err lattice_kv_delete(const char *link, const char *key, bool *existed) {
    return kv_bool(link, LATTICE_KV_DELETE, key, existed);
}

lattice_err lattice_kv_contains(const char *link, const char *key, bool *exists) {
    return kv_bool(link, LATTICE_KV_CONTAINS, key, exists);
}

lattice_err lattice_kv_increment(const char *link, const char *key, int64_t delta,
                                 int64_t *value) {
    lattice_buf req = LATTICE_BUF_INIT;
    lattice_reader r = {NULL, NULL, NULL, NULL};
    lattice_write_map(&req, 2);
    lattice_write_cstr(&req, "key");
    lattice_write_cstr(&req, key);
    lattice_write_cstr(&req, "delta");
    lattice_write_int(&req, delta);
    lattice_err err = kv_call(link, LATTICE_KV_INCREMENT, &req, &r);
    if (err) return err;
    int64_t v = 0;
    lattice_read_int(&r, &v);
    if (r.error) return kv_decode_error(LATTICE_KV_INCREMENT, "i64", &r);
    if (value) *value = v;
    return NULL;
}

/* Sends a Keys request: {prefix, after?, limit?} (`paged`: with the limit). */
static lattice_err kv_keys_request(const char *link, const char *prefix, const char *after,
                                   bool paged, uint32_t limit, lattice_str_list *keys) {
    lattice_buf req = LATTICE_BUF_INIT;
    lattice_reader r = {NULL, NULL, NULL, NULL};
    lattice_write_map(&req, 1 + (after != NULL) + paged);
    lattice_write_cstr(&req, "prefix");
    lattice_write_cstr(&req, prefix ? prefix : "");
    if (after) {
        lattice_write_cstr(&req, "after");
        lattice_write_cstr(&req, after);
    }
    if (paged) {
        lattice_write_cstr(&req, "limit");
        lattice_write_uint(&req, limit);
    }
    lattice_err err = kv_call(link, LATTICE_KV_KEYS, &req, &r);
    if (err) return err;
    uint32_t n = 0;
    const char **items = NULL;
    if (lattice_read_array(&r, &n)) {
        /* each key takes at least one byte of the reply: bounds the allocation */
        if (n > (size_t)(r.end - r.pos)) {
            lattice_read_fail(&r, "msgpack: array length exceeds the input");
        } else {
            items = lattice_alloc((n ? n : 1) * sizeof *items);
            if (!items) return lattice_concat(LATTICE_KV_KEYS, ": out of memory", NULL);
            for (uint32_t i = 0; i < n && !r.error; i++) lattice_read_cstr(&r, &items[i]);
        }
    }
    if (r.error) return kv_decode_error(LATTICE_KV_KEYS, "list of keys", &r);
    keys->count = n;
    keys->items = items;
    return NULL;
}

lattice_err lattice_kv_keys_page(const char *link, const char *prefix, const char *after,
                                 uint32_t limit, lattice_str_list *keys) {
    lattice_str_list page = {0, NULL};
    lattice_err err = kv_keys_request(link, prefix, after, true, limit, &page);
    if (err) return err;
    /* A provider that does not know pages answers every key each time: an
     * error, or a caller following pages would go round in circles. */
    bool behind = after && page.count && strcmp(page.items[0], after) <= 0;
    bool sorted = true;
    for (size_t i = 1; i < page.count && sorted; i++) sorted = strcmp(page.items[i - 1], page.items[i]) < 0;
    if (page.count > limit || behind || !sorted) {
        return lattice_concat("the reply to " LATTICE_KEYVALUE " " LATTICE_KV_KEYS
                              " is not a page of at most the limit after `after`"
                              " (a provider that does not know pages?)",
                              NULL);
    }
    if (keys) *keys = page;
    return NULL;
}

lattice_err lattice_kv_keys(const char *link, const char *prefix, lattice_str_list *keys) {
    lattice_str_list one = {0, NULL};
    lattice_err err = kv_keys_request(link, prefix, NULL, false, 0, &one);
    if (!err || !strstr(err, LATTICE_KV_TOO_MANY_KEYS)) {
        if (!err && keys) *keys = one;
        return err;
    }
    /* Too many for one answer: the keys of every page, as an array of pointers. */
    lattice_buf all = LATTICE_BUF_INIT;
    const char *after = NULL;
    for (;;) {
        lattice_str_list page = {0, NULL};
        err = lattice_kv_keys_page(link, prefix, after, LATTICE_KV_MAX_KEYS_PER_PAGE, &page);
        if (err) return err;
        lattice_buf_append(&all, page.items, page.count * sizeof *page.items);
        if (all.failed) return lattice_concat(LATTICE_KV_KEYS, ": out of memory", NULL);
        if (page.count < LATTICE_KV_MAX_KEYS_PER_PAGE) break;
        after = page.items[page.count - 1];
    }
    if (keys) {
        keys->count = all.len / sizeof(const char *);
        keys->items = (const char **)(void *)all.ptr;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* lattice:httpserver                                                        */
/* ------------------------------------------------------------------------ */

static bool push_header(lattice_buf *list, const char *name, const char *value) {
    lattice_http_header h = {name, value};
    lattice_buf_append(list, &h, sizeof h);
    return !list->failed;
}

/* headers: map str -> array of str (a single str is accepted too). */
static void read_headers(lattice_reader *r, lattice_buf *list) {
    uint32_t pairs;
    if (lattice_read_try_nil(r) || !lattice_read_map(r, &pairs)) return;
    for (uint32_t i = 0; i < pairs && !r->error; i++) {
        const char *name;
        if (!lattice_read_cstr(r, &name)) return;
        if (lattice_read_peek(r) == LATTICE_MP_STR) {
            const char *value;
            if (lattice_read_cstr(r, &value) && !push_header(list, name, value))
                lattice_read_fail(r, OUT_OF_MEMORY);
            continue;
        }
        uint32_t n;
        if (!lattice_read_array(r, &n)) return;
        for (uint32_t k = 0; k < n && !r->error; k++) {
            const char *value;
            if (lattice_read_cstr(r, &value) && !push_header(list, name, value))
                lattice_read_fail(r, OUT_OF_MEMORY);
        }
    }
}

lattice_err lattice_http_decode_request(lattice_bytes payload, lattice_http_request *req) {
    static const char *const fields[] = {"method", "path", "query", "headers", "body"};
    lattice_reader r = {NULL, NULL, NULL, NULL};
    lattice_buf headers = LATTICE_BUF_INIT;
    struct_cursor c;
    bool seen[5] = {false, false, false, false, false};
    req->method = "";
    req->path = "";
    req->query = "";
    req->headers = NULL;
    req->header_count = 0;
    req->body = lattice_bytes_of(NULL, 0);
    lattice_reader_init(&r, payload.ptr, payload.len);
    if (struct_begin(&r, &c, "HttpRequest map")) {
        int i;
        while ((i = struct_next(&r, &c, fields, 5)) != -2) {
            if (i >= 0) seen[i] = true;
            switch (i) {
            case 0: lattice_read_cstr(&r, &req->method); break;
            case 1: lattice_read_cstr(&r, &req->path); break;
            case 2:
                if (!lattice_read_try_nil(&r)) lattice_read_cstr(&r, &req->query);
                break;
            case 3: read_headers(&r, &headers); break;
            case 4:
                if (!lattice_read_try_nil(&r)) lattice_read_bin(&r, &req->body);
                break;
            default: lattice_read_skip(&r); break;
            }
        }
    }
    if (!r.error && !seen[0]) lattice_read_fail(&r, "missing field `method`");
    if (!r.error && !seen[1]) lattice_read_fail(&r, "missing field `path`");
    if (r.error)
        return lattice_concat(LATTICE_HTTP_HANDLE_REQUEST ": payload is not an HttpRequest: ",
                              r.error, NULL);
    req->headers = (const lattice_http_header *)headers.ptr;
    req->header_count = headers.len / sizeof(lattice_http_header);
    return NULL;
}

static bool ascii_ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
        if (x != y) return false;
    }
    return *a == *b;
}

const char *lattice_http_request_header(const lattice_http_request *req, const char *name) {
    for (size_t i = 0; i < req->header_count; i++) {
        if (ascii_ieq(req->headers[i].name, name)) return req->headers[i].value;
    }
    return NULL;
}

void lattice_http_response_init(lattice_http_response *resp, uint16_t status) {
    resp->status = status;
    resp->headers = NULL;
    resp->header_count = 0;
    resp->header_cap = 0;
    resp->body = lattice_bytes_of(NULL, 0);
    resp->failed = false;
}

void lattice_http_response_add_header(lattice_http_response *resp, const char *name,
                                      const char *value) {
    if (resp->failed || !name) return;
    if (resp->header_count == resp->header_cap) {
        size_t cap = resp->header_cap ? resp->header_cap * 2 : 8;
        lattice_http_header *grown =
            arena_grow(resp->headers, resp->header_cap * sizeof *grown,
                       resp->header_count * sizeof *grown, cap * sizeof *grown);
        if (!grown) {
            resp->failed = true;
            return;
        }
        resp->headers = grown;
        resp->header_cap = cap;
    }
    resp->headers[resp->header_count].name = name;
    resp->headers[resp->header_count].value = value ? value : "";
    resp->header_count++;
}

void lattice_http_response_set_body(lattice_http_response *resp, lattice_bytes body) {
    resp->body = body;
}

lattice_err lattice_http_encode_response(const lattice_http_response *resp, lattice_buf *out) {
    if (resp->failed) return "HttpResponse: out of memory while adding headers";
    /* group values by header name (ignoring case), in first-seen order */
    size_t names = 0;
    for (size_t i = 0; i < resp->header_count; i++) {
        bool first = true;
        for (size_t k = 0; k < i; k++) {
            if (ascii_ieq(resp->headers[k].name, resp->headers[i].name)) {
                first = false;
                break;
            }
        }
        if (first) names++;
    }
    lattice_write_map(out, 3);
    lattice_write_cstr(out, "status");
    lattice_write_uint(out, resp->status);
    lattice_write_cstr(out, "headers");
    lattice_write_map(out, (uint32_t)names);
    for (size_t i = 0; i < resp->header_count; i++) {
        bool first = true;
        for (size_t k = 0; k < i && first; k++) {
            if (ascii_ieq(resp->headers[k].name, resp->headers[i].name)) first = false;
        }
        if (!first) continue;
        uint32_t values = 0;
        for (size_t k = i; k < resp->header_count; k++) {
            if (ascii_ieq(resp->headers[k].name, resp->headers[i].name)) values++;
        }
        lattice_write_cstr(out, resp->headers[i].name);
        lattice_write_array(out, values);
        for (size_t k = i; k < resp->header_count; k++) {
            if (ascii_ieq(resp->headers[k].name, resp->headers[i].name))
                lattice_write_cstr(out, resp->headers[k].value);
        }
    }
    lattice_write_cstr(out, "body");
    lattice_write_bin(out, resp->body.ptr, resp->body.len);
    return out->failed ? "HttpResponse: out of memory while encoding" : NULL;
}

lattice_err lattice_http_reply(lattice_buf *reply, uint16_t status, const char *content_type,
                               lattice_bytes body) {
    lattice_http_response resp;
    lattice_http_response_init(&resp, status);
    if (content_type) lattice_http_response_add_header(&resp, "content-type", content_type);
    lattice_http_response_set_body(&resp, body);
    return lattice_http_encode_response(&resp, reply);
}
