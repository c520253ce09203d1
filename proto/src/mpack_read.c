#include "mpack_read.h"

/* Size of a token that is whole in its first byte's class (fixed-width scalars, fixstr,
 * fixext); 0 for containers, variable-length headers and 0xc1 (the slow path handles them). */
static const uint8_t FIXED_SIZE[256] = {
    /* 00 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 10 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 20 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 30 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 40 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 50 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 60 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 70 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 80 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 90 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* a0 */ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    /* b0 */ 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    /* c0 */ 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 5, 9, 2, 3, 5, 9,
    /* d0 */ 2, 3, 5, 9, 3, 4, 6, 10, 18, 0, 0, 0, 0, 0, 0, 0,
    /* e0 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* f0 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

int cga__mp_skip_items(mp_cur_t *c, const mp_tok_t *container, unsigned levels) {
    uint64_t k = container->type == MP_MAP ? 2 * (uint64_t)container->n : container->n;
    if (!mp_fits(c, k, 1)) return MP_ETRUNC;
    for (uint64_t i = 0; i < k; i++) {
        size_t left = mp_left(c);
        if (left == 0) return MP_ETRUNC;
        const uint8_t *p = c->p;
        size_t sz = FIXED_SIZE[*p];
        if (sz && sz <= left) {
            c->p += sz;
            continue;
        }
        /* An array of six 9-byte scalars (a bar, as cgalpha writes it): the six tags are
         * checked independently instead of one after the other. */
        if (*p == 0x96 && levels > 0 && left >= 55 && FIXED_SIZE[p[1]] == 9 &&
            FIXED_SIZE[p[10]] == 9 && FIXED_SIZE[p[19]] == 9 && FIXED_SIZE[p[28]] == 9 &&
            FIXED_SIZE[p[37]] == 9 && FIXED_SIZE[p[46]] == 9) {
            c->p += 55;
            continue;
        }
        int rc = cga__mp_skip(c, levels);
        if (rc) return rc;
    }
    return MP_OK;
}

int cga__mp_skip(mp_cur_t *c, unsigned levels) {
    mp_tok_t t;
    const uint8_t *start = c->p;
    int rc = mp_next(c, &t);
    if (rc) return rc;
    if (t.type != MP_ARRAY && t.type != MP_MAP) return MP_OK;
    if (levels == 0) {
        c->p = start;
        return MP_EDEPTH;
    }
    return cga__mp_skip_items(c, &t, levels - 1);
}

const char *cga__mp_type_name(int type) {
    switch (type) {
    case MP_NIL: return "nil";
    case MP_BOOL: return "bool";
    case MP_UINT:
    case MP_INT: return "int";
    case MP_FLOAT: return "float";
    case MP_STR: return "str";
    case MP_BIN: return "bin";
    case MP_ARRAY: return "array";
    case MP_MAP: return "map";
    case MP_EXT: return "ext";
    default: return "?";
    }
}
