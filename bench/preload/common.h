/* Shared by the preload suite's programs (bench/src/preload.rs runs them).
 *
 * Each program is an ordinary C or C++ program that calls malloc/free (or
 * new/delete): the allocator under test is whatever the dynamic linker
 * binds, glibc or an LD_PRELOAD library. It times its own measured part and
 * prints one line on stdout,
 *
 *   preload-result ops=N secs=S
 *
 * and the driver adds peak RSS and page faults from wait4(2). Arguments are
 * NAME=VALUE words; a bad one is a one-line error and exit status 2. */
#ifndef PRELOAD_COMMON_H
#define PRELOAD_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* xorshift64*: fast, deterministic per seed, good enough for sizes. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A seed that is never 0 (xorshift's fixed point). */
static inline uint64_t rng_seed(uint64_t k) {
    uint64_t s = (k + 1) * 0x9E3779B97F4A7C15ULL;
    return s ? s : 1;
}

/* Uniform in [lo, hi]. */
static inline uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi) {
    return lo + rng_next(s) % (hi - lo + 1);
}

/* A size in [lo, hi] skewed to small: log-uniform (each power of two
 * between lo and hi about equally likely), as measured programs' sizes are. */
static inline size_t rng_skewed(uint64_t *s, size_t lo, size_t hi) {
    uint64_t r = rng_next(s);
    unsigned lo_bits = 63 - __builtin_clzll(lo | 1);
    unsigned hi_bits = 63 - __builtin_clzll(hi | 1);
    unsigned b = lo_bits + (unsigned)(r % (hi_bits - lo_bits + 1));
    size_t base = (size_t)1 << b;
    size_t n = base + (size_t)((r >> 8) % base);
    return n < lo ? lo : n > hi ? hi : n;
}

static inline double now_secs(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline void print_result(uint64_t ops, double secs) {
    printf("preload-result ops=%llu secs=%.9f\n", (unsigned long long)ops, secs);
    fflush(stdout);
}

static inline void die(const char *prog, const char *what) {
    fprintf(stderr, "%s: %s\n", prog, what);
    exit(2);
}

/* Out of memory is an outcome to report, never a crash. */
static inline void *xmalloc(const char *prog, size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "%s: malloc(%zu) returned NULL\n", prog, n);
        exit(3);
    }
    return p;
}

/* The arguments: NAME=VALUE words, each name one of `names`; values are
 * unsigned integers within [1, max] unless the table says 0 is allowed. */
struct arg {
    const char *name;
    uint64_t value; /* the default; replaced by the command line's */
    uint64_t min;
    uint64_t max;
};

static inline void parse_args(const char *prog, int argc, char **argv, struct arg *a, size_t n) {
    for (int i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        size_t k = 0;
        if (eq) {
            for (; k < n; k++) {
                if (strlen(a[k].name) == (size_t)(eq - argv[i]) &&
                    strncmp(a[k].name, argv[i], (size_t)(eq - argv[i])) == 0)
                    break;
            }
        }
        if (!eq || k == n) {
            fprintf(stderr, "%s: unknown argument \"%s\"; known:", prog, argv[i]);
            for (size_t j = 0; j < n; j++) fprintf(stderr, " %s=N", a[j].name);
            fputc('\n', stderr);
            exit(2);
        }
        char *end;
        errno = 0;
        unsigned long long v = strtoull(eq + 1, &end, 10);
        if (errno || end == eq + 1 || *end || eq[1] == '-' || v < a[k].min || v > a[k].max) {
            fprintf(stderr, "%s: %s: \"%s\" is not a number in [%llu, %llu]\n", prog, a[k].name,
                    eq + 1, (unsigned long long)a[k].min, (unsigned long long)a[k].max);
            exit(2);
        }
        a[k].value = v;
    }
}

#ifdef __cplusplus
}
#endif

#endif
