#define _GNU_SOURCE
#include "CMallocCounter.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <unistd.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif
// Under a sanitizer the allocator is the sanitizer's: wrappers over glibc's would free its
// blocks with glibc (TSan: SEGV in cfree at start-up). `make sanitize` defines
// SLUICE_NO_MALLOC_COUNTER; the bench then reports mallocs_per_packet as null.
#if defined(__linux__) && defined(__GLIBC__) && !defined(SLUICE_NO_MALLOC_COUNTER) \
    && !__has_feature(address_sanitizer) && !__has_feature(thread_sanitizer)

// glibc's allocator under its internal names (exported by libc.so.6 on every glibc release).
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Atomic int counting = 0;
static _Atomic uint64_t allocations = 0;
static _Atomic uint64_t frees = 0;

static inline void count_allocation(void) {
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
}

void *malloc(size_t size) {
    count_allocation();
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
    count_allocation();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
    count_allocation();
    return __libc_realloc(p, size);
}

void free(void *p) {
    if (p && atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
    __libc_free(p);
}

static int valid_alignment(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (!valid_alignment(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
    count_allocation();
    void *p = __libc_memalign(alignment, size);
    if (!p && size != 0) return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (!valid_alignment(alignment)) { errno = EINVAL; return NULL; }
    count_allocation();
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    count_allocation();
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size) {
    count_allocation();
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

void sluice_malloc_counting(int on) { atomic_store_explicit(&counting, on ? 1 : 0, memory_order_relaxed); }
uint64_t sluice_malloc_count(void) { return atomic_load_explicit(&allocations, memory_order_relaxed); }
uint64_t sluice_free_count(void) { return atomic_load_explicit(&frees, memory_order_relaxed); }
int sluice_malloc_counter_compiled(void) { return 1; }


#else

// Not glibc: no interposition; the bench reports mallocs as unavailable.
void sluice_malloc_counting(int on) { (void)on; }
uint64_t sluice_malloc_count(void) { return 0; }
uint64_t sluice_free_count(void) { return 0; }
int sluice_malloc_counter_compiled(void) { return 0; }

#endif
