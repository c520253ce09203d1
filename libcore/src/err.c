#include "cgalpha/err.h"

#include <string.h>
#include <uv.h>

const char *cga_strerror(int rc) {
    switch (rc) {
    case CGA_OK: return "ok";
#define CGA_ERR_TEXT(name, code, text) case CGA_##name: return text;
    CGA_ERRNO_MAP(CGA_ERR_TEXT)
#undef CGA_ERR_TEXT
    default: break;
    }
    if (rc < 0 && rc > -20000) return uv_strerror(rc); /* libuv knows every errno too */
    return "unknown error";
}

const char *cga_errname(int rc) {
    switch (rc) {
    case CGA_OK: return "OK";
#define CGA_ERR_NAME(name, code, text) case CGA_##name: return #name;
    CGA_ERRNO_MAP(CGA_ERR_NAME)
#undef CGA_ERR_NAME
    default: break;
    }
    if (rc < 0 && rc > -20000) return uv_err_name(rc);
    return "EUNKNOWN";
}
