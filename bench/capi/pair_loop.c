/* The C driver of bench/callgrind-capi: the loop of issue 21, counted by
 * callgrind inside measured() only.
 *
 *   pair_loop mixed|fixed|calloc|realloc N
 *
 * xorshift64 picks one of 256 slots per iteration: an occupied slot is
 * freed, an empty one gets malloc(16 + (x >> 8 & 1023)) ("mixed") or
 * malloc(64) ("fixed") or calloc(1, 64) ("calloc"). "realloc": an empty
 * slot gets realloc(NULL, 64); an occupied one is freed or (one bit of x)
 * resized in place by realloc(p, 49 + (x >> 9 & 15)), a size of the same
 * class in every allocator here. The same loop runs once unmeasured first,
 * so the allocator's start-up (heap creation, first pages) is not counted.
 * Prints "mallocs M frees F" for the measured pass (reallocs in place
 * count as mallocs: every operation is one of the two).
 *
 * Built with -DFLOOR, malloc and free are replaced by calls to two
 * non-inlined functions that do nothing useful: the loop's own cost and
 * one call per operation, subtracted to give the allocator's share. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 256

#ifdef FLOOR
static char floor_block[64];
__attribute__((noinline)) static void *op_malloc(size_t n) {
    __asm__ volatile("" : : "r"(n) : "memory");
    return floor_block;
}
__attribute__((noinline)) static void op_free(void *p) {
    __asm__ volatile("" : : "r"(p) : "memory");
}
__attribute__((noinline)) static void *op_calloc(size_t k, size_t n) {
    __asm__ volatile("" : : "r"(k), "r"(n) : "memory");
    return floor_block;
}
__attribute__((noinline)) static void *op_realloc(void *p, size_t n) {
    __asm__ volatile("" : : "r"(p), "r"(n) : "memory");
    return floor_block;
}
#else
#define op_malloc malloc
#define op_free free
#define op_calloc calloc
#define op_realloc realloc
#endif

enum mode { MIXED, FIXED, CALLOC, REALLOC };

static void *slots[SLOTS];
static uint64_t mallocs, frees;

static inline __attribute__((always_inline)) void body(uint64_t *state, long n, enum mode m) {
    uint64_t x = *state;
    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned s = x & (SLOTS - 1);
        if (slots[s]) {
            if (m == REALLOC && (x >> 8 & 1)) {
                slots[s] = op_realloc(slots[s], 49 + (x >> 9 & 15));
                mallocs++;
                continue;
            }
            op_free(slots[s]);
            slots[s] = 0;
            frees++;
        } else {
            switch (m) {
            case MIXED: slots[s] = op_malloc(16 + (x >> 8 & 1023)); break;
            case FIXED: slots[s] = op_malloc(64); break;
            case CALLOC: slots[s] = op_calloc(1, 64); break;
            case REALLOC: slots[s] = op_realloc(0, 64); break;
            }
            mallocs++;
        }
    }
    *state = x;
}

__attribute__((noipa)) void warm(uint64_t *state, long n, enum mode m) { body(state, n, m); }
/* noipa: not folded into warm() (identical code), nor inlined. */
__attribute__((noipa)) void measured(uint64_t *state, long n, enum mode m) { body(state, n, m); }

int main(int argc, char **argv) {
    static const char *names[] = {"mixed", "fixed", "calloc", "realloc"};
    int m = -1;
    for (int i = 0; argc == 3 && i < 4; i++)
        if (!strcmp(argv[1], names[i])) m = i;
    if (m < 0) {
        fprintf(stderr, "usage: %s mixed|fixed|calloc|realloc ITERATIONS\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    warm(&state, n, m);
    mallocs = frees = 0;
    measured(&state, n, m);
    printf("mallocs %llu frees %llu\n", (unsigned long long)mallocs, (unsigned long long)frees);
    for (int s = 0; s < SLOTS; s++)
        if (slots[s]) op_free(slots[s]);
    return 0;
}
