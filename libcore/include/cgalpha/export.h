#ifndef CGALPHA_EXPORT_H
#define CGALPHA_EXPORT_H

/* CGA_EXTERN marks what libcgalpha exports; everything else is hidden. */
#if defined(__GNUC__)
#define CGA_EXTERN __attribute__((visibility("default")))
#else
#define CGA_EXTERN
#endif

#if defined(__GNUC__)
#define CGA_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CGA_PRINTF(fmt, args)
#endif

#endif
