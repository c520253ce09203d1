#ifndef CGALPHA_ERR_H
#define CGALPHA_ERR_H

#include "cgalpha/export.h"

/* Every fallible call returns CGA_OK (0) or a negative code: one of the CGA_E* below,
 * a negated errno value, or a libuv code (libuv codes are negated errno values too). */
#define CGA_OK 0

/* Our own codes live below -20000, clear of errno and libuv (UV__EOF is -4095). */
#define CGA_ERRNO_MAP(X)                                                                  \
    X(EINVAL,       -20001, "invalid argument")                                          \
    X(ECONFIG,      -20002, "invalid configuration")                                     \
    X(EPROTO,       -20003, "malformed message")                                         \
    X(ETOOBIG,      -20004, "message too large")                                         \
    X(ENOTCONN,     -20005, "Redis not connected")                                       \
    X(ECONNLOST,    -20006, "Redis connection lost before the reply (outcome unknown)")  \
    X(ETIMEDOUT,    -20007, "timed out")                                                 \
    X(EREPLY,       -20008, "Redis replied with an error")                               \
    X(EAUTH,        -20009, "Redis authentication failed")                               \
    X(EBREAKER,     -20010, "circuit breaker open: Redis calls fail fast")               \
    X(EQUEUEFULL,   -20011, "too many commands waiting for Redis")                       \
    X(ECANCELED,    -20012, "canceled")                                                  \
    X(EOOM,         -20013, "Redis is out of memory (OOM)")                              \
    X(EREADONLY,    -20014, "Redis is read-only (replica or failover)")                  \
    X(ENOSCRIPT,    -20015, "Lua script not loaded")                                     \
    X(ESELECT,      -20016, "Redis rejected the database index")                         \
    X(ETLS,         -20017, "TLS is not supported by this build")                        \
    X(EPLUGIN,      -20018, "plugin error")                                              \
    X(EABI,         -20019, "plugin ABI version mismatch")                               \
    X(ENOTFOUND,    -20020, "not found")                                                 \
    X(ELOCKED,      -20021, "lock held by another process")                              \
    X(EEXIST,       -20022, "already exists")                                            \
    X(ECLOSED,      -20023, "closed")                                                    \
    X(EUNSUPPORTED, -20024, "not supported")                                             \
    X(EBUFFER,      -20025, "task buffer error")                                         \
    X(EDEPTH,       -20026, "message nested too deeply")

#define CGA_ERR_ENUM(name, code, text) CGA_##name = code,
enum cga_errno { CGA_ERRNO_MAP(CGA_ERR_ENUM) CGA_E__LAST = -20027 };
#undef CGA_ERR_ENUM

/* Text for any code this library returns (ours, errno, libuv). Never NULL; static storage. */
CGA_EXTERN const char *cga_strerror(int rc);

/* Short symbolic name ("ETIMEDOUT", "EOOM", ...) for ours and errno; static storage. */
CGA_EXTERN const char *cga_errname(int rc);

#endif
