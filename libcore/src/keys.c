#include "cgalpha/keys.h"

#include <stdio.h>
#include <string.h>

#include "cgalpha/err.h"

int cga_namespace_validate(const char *ns) {
    if (!ns) return CGA_ECONFIG;
    size_t n = strlen(ns);
    if (n == 0 || n > CGA_NAMESPACE_MAX) return CGA_ECONFIG;
    for (size_t i = 0; i < n; i++) {
        char c = ns[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '.';
        if (!ok) return CGA_ECONFIG;
    }
    return CGA_OK;
}

int cga_key(char *out, size_t n, const char *ns, const char *kind, const char *name,
            const char *suffix) {
    int w = suffix ? snprintf(out, n, "%s:%s:%s:%s", ns, kind, name, suffix)
                   : snprintf(out, n, "%s:%s:%s", ns, kind, name);
    if (w < 0 || (size_t)w >= n) {
        if (n) out[0] = '\0';
        return CGA_ETOOBIG;
    }
    return w;
}
