/*
 * pricing: the price list of the polyglot shop, in C.
 *
 * Operation:
 *
 *   Quote   payload {item: str, qty: int}
 *           reply   {item: str, qty: int, unit_cents: int, total_cents: int}
 *
 * Prices are a fixed table in cents (apple 50, pear 75, fig 120, plum 90).
 * An item not in the table fails with `unknown item "x"` (the frontend turns
 * that into HTTP 404); qty < 1 fails with `qty must be at least 1, got N`; a
 * total that does not fit an int64 fails too. Stateless: no contracts, no
 * claims beyond its name.
 *
 * Build: `make` in this directory (see the Makefile), or ../deploy.sh.
 */
#include "lattice.h"

#include <stdint.h>
#include <string.h>

struct price {
    const char *item;
    int64_t unit_cents;
};

static const struct price PRICES[] = {
    {"apple", 50},
    {"pear", 75},
    {"fig", 120},
    {"plum", 90},
};

static const struct price *find_price(const char *item) {
    for (size_t i = 0; i < sizeof PRICES / sizeof PRICES[0]; i++)
        if (strcmp(PRICES[i].item, item) == 0) return &PRICES[i];
    return NULL;
}

/* The message for an unknown item: `unknown item "x"`, with `"` and `\` in the
 * name escaped (JSON style) so the quotes stay balanced. */
static const char *unknown_item(const char *item) {
    lattice_buf msg = LATTICE_BUF_INIT;
    lattice_buf_puts(&msg, "unknown item ");
    lattice_buf_put_json_string(&msg, item, strlen(item));
    return lattice_buf_cstr(&msg);
}

static lattice_err quote(lattice_bytes payload, lattice_buf *reply) {
    lattice_reader r;
    uint32_t fields;
    const char *item = NULL;
    int64_t qty = 0;
    bool have_qty = false;
    lattice_reader_init(&r, payload.ptr, payload.len);
    if (lattice_read_map(&r, &fields)) {
        for (uint32_t i = 0; i < fields; i++) {
            lattice_bytes key;
            if (!lattice_read_str(&r, &key)) break;
            if (key.len == 4 && memcmp(key.ptr, "item", 4) == 0) {
                lattice_read_cstr(&r, &item);
            } else if (key.len == 3 && memcmp(key.ptr, "qty", 3) == 0) {
                have_qty = lattice_read_int(&r, &qty);
            } else {
                lattice_read_skip(&r); /* unknown fields are ignored */
            }
        }
    }
    if (!lattice_reader_error(&r) && !item) lattice_read_fail(&r, "missing field `item`");
    if (!lattice_reader_error(&r) && !have_qty) lattice_read_fail(&r, "missing field `qty`");
    if (lattice_reader_error(&r))
        return lattice_concat("Quote: payload is not an {item, qty} map: ",
                              lattice_reader_error(&r), NULL);

    const struct price *price = find_price(item);
    if (!price) return unknown_item(item);
    if (qty < 1) return lattice_concat("qty must be at least 1, got ", lattice_fmt_i64(qty), NULL);
    if (qty > INT64_MAX / price->unit_cents)
        return lattice_concat("qty ", lattice_fmt_i64(qty), " is too large to price", NULL);

    lattice_write_map(reply, 4);
    lattice_write_cstr(reply, "item");
    lattice_write_cstr(reply, price->item);
    lattice_write_cstr(reply, "qty");
    lattice_write_int(reply, qty);
    lattice_write_cstr(reply, "unit_cents");
    lattice_write_int(reply, price->unit_cents);
    lattice_write_cstr(reply, "total_cents");
    lattice_write_int(reply, qty * price->unit_cents);
    return NULL;
}

void wapc_init(void) { lattice_register("Quote", quote); }
