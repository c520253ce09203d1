#include "mpack_read.h"

int cga__mp_skip_items(mp_cur_t *c, const mp_tok_t *container, unsigned levels) {
    uint64_t k = container->type == MP_MAP ? 2 * (uint64_t)container->n : container->n;
    if (!mp_fits(c, k, 1)) return MP_ETRUNC;
    for (uint64_t i = 0; i < k; i++) {
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
