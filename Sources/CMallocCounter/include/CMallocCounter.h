#ifndef SLUICE_MALLOC_COUNTER_H
#define SLUICE_MALLOC_COUNTER_H

// Allocation counting for `sluice bench`.
//
// MallocCounter.c defines malloc, calloc, realloc, free, posix_memalign, aligned_alloc,
// memalign and valloc. Linked into an executable, these definitions interpose glibc's for the
// whole process (the Swift runtime, Foundation and every library call them through the
// dynamic linker's global scope, where the executable comes first); each one forwards to
// glibc's own implementation (__libc_malloc and friends). Counting is off until
// sluice_malloc_counting(1): the cost while off is one relaxed atomic load per call.
//
// Counted: every call that returns new memory (malloc, calloc, realloc, the aligned ones).
// free is counted separately. Allocations glibc makes internally without going through these
// symbols (e.g. reallocarray, or stdio's own buffers) are not seen.

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Turns counting on (1) or off (0).
void sluice_malloc_counting(int on);
/// Allocations (malloc, calloc, realloc, aligned) counted since the process started.
uint64_t sluice_malloc_count(void);
/// free() calls with a non-null pointer counted since the process started.
uint64_t sluice_free_count(void);
/// 1 when the wrappers are compiled in; 0 without glibc or in a sanitizer build
/// (SLUICE_NO_MALLOC_COUNTER, `make sanitize`), where the sanitizer owns the allocator.
int sluice_malloc_counter_compiled(void);

#ifdef __cplusplus
}
#endif

#endif
