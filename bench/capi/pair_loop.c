/* The C driver of bench/callgrind-capi: the loop of issue 21, counted by
 * callgrind inside measured() only.
 *
 *   pair_loop mixed|fixed N
 *
 * xorshift64 picks one of 256 slots per iteration: an occupied slot is
 * freed, an empty one gets malloc(16 + (x >> 8 & 1023)) ("mixed") or
 * malloc(64) ("fixed"). The same loop runs once unmeasured first, so the
 * allocator's start-up (heap creation, first pages) is not counted.
 * Prints "mallocs M frees F" for the measured pass.
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
#else
#define op_malloc malloc
#define op_free free
#endif

static void *slots[SLOTS];
static uint64_t mallocs, frees;

static inline __attribute__((always_inline)) void body(uint64_t *state, long n, int fixed) {
    uint64_t x = *state;
    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned s = x & (SLOTS - 1);
        if (slots[s]) {
            op_free(slots[s]);
            slots[s] = 0;
            frees++;
        } else {
            slots[s] = op_malloc(fixed ? 64 : 16 + (x >> 8 & 1023));
            mallocs++;
        }
    }
    *state = x;
}

__attribute__((noipa)) void warm(uint64_t *state, long n, int fixed) { body(state, n, fixed); }
/* noipa: not folded into warm() (identical code), nor inlined. */
__attribute__((noipa)) void measured(uint64_t *state, long n, int fixed) { body(state, n, fixed); }

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "mixed") && strcmp(argv[1], "fixed"))) {
        fprintf(stderr, "usage: %s mixed|fixed ITERATIONS\n", argv[0]);
        return 2;
    }
    int fixed = argv[1][0] == 'f';
    long n = atol(argv[2]);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    warm(&state, n, fixed);
    mallocs = frees = 0;
    measured(&state, n, fixed);
    printf("mallocs %llu frees %llu\n", (unsigned long long)mallocs, (unsigned long long)frees);
    for (int s = 0; s < SLOTS; s++)
        if (slots[s]) op_free(slots[s]);
    return 0;
}
