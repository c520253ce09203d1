#ifndef CGA_MPACK_READ_H
#define CGA_MPACK_READ_H

/* A small bounds-checked msgpack cursor, private to proto/src (see SCHEMA.md, "Implementation
 * note" for why the codecs do not decode with msgpack-c's unpacker).
 *
 * mp_next() reads one token: a scalar whole, a str/bin/ext header with its body (checked to be
 * inside the input, returned as a pointer into it), or an array/map header (the caller reads
 * the elements). It never allocates and never reads past c->end. Integers are normalised:
 * MP_UINT holds every value >= 0 (whatever its width and signedness on the wire), MP_INT every
 * value < 0. float32 is widened to double. */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum mp_type {
    MP_NIL,
    MP_BOOL,
    MP_UINT,  /* v.u, any encoding of a value >= 0 */
    MP_INT,   /* v.i, any encoding of a value < 0 */
    MP_FLOAT, /* v.f, float32 or float64 */
    MP_STR,   /* ptr, n */
    MP_BIN,   /* ptr, n */
    MP_ARRAY, /* n elements follow */
    MP_MAP,   /* n key/value pairs follow */
    MP_EXT,   /* ptr, n (ext type in v.i) */
};

#define MP_OK 0
#define MP_ETRUNC (-1)   /* the input ends inside the value */
#define MP_EBADBYTE (-2) /* 0xc1, never used by msgpack */
#define MP_EDEPTH (-3)   /* containers nested deeper than allowed (mp_skip) */

typedef struct mp_tok_s {
    int type;
    uint32_t n;
    const char *ptr;
    union {
        uint64_t u;
        int64_t i;
        double f;
        int b;
    } v;
} mp_tok_t;

typedef struct mp_cur_s {
    const uint8_t *p;
    const uint8_t *end;
} mp_cur_t;

static inline size_t mp_left(const mp_cur_t *c) {
    return (size_t)(c->end - c->p);
}

static inline uint16_t mp_be16(const uint8_t *p) {
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t mp_be32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}

static inline uint64_t mp_be64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

static inline void mp_set_signed(mp_tok_t *t, int64_t i) {
    if (i < 0) {
        t->type = MP_INT;
        t->v.i = i;
    } else {
        t->type = MP_UINT;
        t->v.u = (uint64_t)i;
    }
}

/* A body of n bytes after a header of h bytes; avail counts the header. */
static inline int mp_body(mp_cur_t *c, mp_tok_t *t, int type, size_t h, size_t n, size_t avail) {
    if (avail - h < n) return MP_ETRUNC;
    t->type = type;
    t->n = (uint32_t)n;
    t->ptr = (const char *)c->p + h;
    c->p += h + n;
    return MP_OK;
}

/* Reads one token. On error the cursor is unchanged. */
static inline int mp_next(mp_cur_t *c, mp_tok_t *t) {
    size_t avail = mp_left(c);
    if (avail == 0) return MP_ETRUNC;
    const uint8_t *p = c->p;
    uint8_t b = p[0];
    if (b <= 0x7f) {
        t->type = MP_UINT;
        t->v.u = b;
        c->p++;
        return MP_OK;
    }
    if (b >= 0xe0) {
        t->type = MP_INT;
        t->v.i = (int8_t)b;
        c->p++;
        return MP_OK;
    }
    if (b <= 0x8f) {
        t->type = MP_MAP;
        t->n = b & 0x0f;
        c->p++;
        return MP_OK;
    }
    if (b <= 0x9f) {
        t->type = MP_ARRAY;
        t->n = b & 0x0f;
        c->p++;
        return MP_OK;
    }
    if (b <= 0xbf) return mp_body(c, t, MP_STR, 1, b & 0x1f, avail);

    /* 0xc0..0xdf: the width of the header's payload (length or value). */
    static const uint8_t need[32] = {
        /* c0 nil, c1 -, c2 false, c3 true, c4..c6 bin8/16/32, c7..c9 ext8/16/32 */
        1, 1, 1, 1, 2, 3, 5, 3, 4, 6,
        /* ca float32, cb float64, cc..cf uint8..64 */
        5, 9, 2, 3, 5, 9,
        /* d0..d3 int8..64, d4..d8 fixext1..16 (type byte included) */
        2, 3, 5, 9, 2, 2, 2, 2, 2,
        /* d9..db str8/16/32, dc/dd array16/32, de/df map16/32 */
        2, 3, 5, 3, 5, 3, 5};
    size_t h = need[b - 0xc0];
    if (avail < h) return MP_ETRUNC;
    switch (b) {
    case 0xc0: t->type = MP_NIL; break;
    case 0xc1: return MP_EBADBYTE;
    case 0xc2: t->type = MP_BOOL; t->v.b = 0; break;
    case 0xc3: t->type = MP_BOOL; t->v.b = 1; break;
    case 0xc4: return mp_body(c, t, MP_BIN, 2, p[1], avail);
    case 0xc5: return mp_body(c, t, MP_BIN, 3, mp_be16(p + 1), avail);
    case 0xc6: return mp_body(c, t, MP_BIN, 5, mp_be32(p + 1), avail);
    case 0xc7: t->v.i = (int8_t)p[2]; return mp_body(c, t, MP_EXT, 3, p[1], avail);
    case 0xc8: t->v.i = (int8_t)p[3]; return mp_body(c, t, MP_EXT, 4, mp_be16(p + 1), avail);
    case 0xc9: t->v.i = (int8_t)p[5]; return mp_body(c, t, MP_EXT, 6, mp_be32(p + 1), avail);
    case 0xca: {
        uint32_t u = mp_be32(p + 1);
        float f;
        memcpy(&f, &u, 4);
        t->type = MP_FLOAT;
        t->v.f = f;
        break;
    }
    case 0xcb: {
        uint64_t u = mp_be64(p + 1);
        t->type = MP_FLOAT;
        memcpy(&t->v.f, &u, 8);
        break;
    }
    case 0xcc: t->type = MP_UINT; t->v.u = p[1]; break;
    case 0xcd: t->type = MP_UINT; t->v.u = mp_be16(p + 1); break;
    case 0xce: t->type = MP_UINT; t->v.u = mp_be32(p + 1); break;
    case 0xcf: t->type = MP_UINT; t->v.u = mp_be64(p + 1); break;
    case 0xd0: mp_set_signed(t, (int8_t)p[1]); break;
    case 0xd1: mp_set_signed(t, (int16_t)mp_be16(p + 1)); break;
    case 0xd2: mp_set_signed(t, (int32_t)mp_be32(p + 1)); break;
    case 0xd3: mp_set_signed(t, (int64_t)mp_be64(p + 1)); break;
    case 0xd4: t->v.i = (int8_t)p[1]; return mp_body(c, t, MP_EXT, 2, 1, avail);
    case 0xd5: t->v.i = (int8_t)p[1]; return mp_body(c, t, MP_EXT, 2, 2, avail);
    case 0xd6: t->v.i = (int8_t)p[1]; return mp_body(c, t, MP_EXT, 2, 4, avail);
    case 0xd7: t->v.i = (int8_t)p[1]; return mp_body(c, t, MP_EXT, 2, 8, avail);
    case 0xd8: t->v.i = (int8_t)p[1]; return mp_body(c, t, MP_EXT, 2, 16, avail);
    case 0xd9: return mp_body(c, t, MP_STR, 2, p[1], avail);
    case 0xda: return mp_body(c, t, MP_STR, 3, mp_be16(p + 1), avail);
    case 0xdb: return mp_body(c, t, MP_STR, 5, mp_be32(p + 1), avail);
    case 0xdc: t->type = MP_ARRAY; t->n = mp_be16(p + 1); break;
    case 0xdd: t->type = MP_ARRAY; t->n = mp_be32(p + 1); break;
    case 0xde: t->type = MP_MAP; t->n = mp_be16(p + 1); break;
    default: t->type = MP_MAP; t->n = mp_be32(p + 1); break; /* 0xdf */
    }
    c->p += h;
    return MP_OK;
}

/* Fast path for the common float64: reads it if the next byte is 0xcb, else returns 0 and the
 * caller falls back to mp_next(). */
static inline int mp_try_f64(mp_cur_t *c, double *out) {
    if (mp_left(c) >= 9 && c->p[0] == 0xcb) {
        uint64_t u = mp_be64(c->p + 1);
        memcpy(out, &u, 8);
        c->p += 9;
        return 1;
    }
    return 0;
}

/* Elements that must follow a container header: each takes at least one byte, so a declared
 * count beyond what is left is rejected before anything is sized from it. */
static inline int mp_fits(const mp_cur_t *c, uint64_t elems, size_t min_bytes_each) {
    return elems <= mp_left(c) / min_bytes_each;
}

/* Skips one value. levels: how many container levels the value may still open (a container
 * when levels is 0 gives MP_EDEPTH). Work is bounded by the input length. */
int cga__mp_skip(mp_cur_t *c, unsigned levels);

/* Skips the n elements (2n for a map) of a container whose header was just read; each element
 * may open levels more levels. */
int cga__mp_skip_items(mp_cur_t *c, const mp_tok_t *container, unsigned levels);

/* "int", "str", ... for error messages. */
const char *cga__mp_type_name(int type);

#endif
