/* Large blocks: `iters` times, replace one of `live` slots (chosen at
 * random, so blocks die in random order) with a block of a uniform size in
 * [min, max] MiB, touching every page of it (one write per 4 KiB), as a
 * program that fills its buffers does.
 *
 *   large iters=N live=K min=MIB max=MIB
 *
 * ops = mallocs + frees; secs of the loop. */
#include "common.h"

static struct arg args[] = {
    {"iters", 2000, 1, 1ULL << 40},
    {"live", 4, 1, 1 << 16},
    {"min", 1, 1, 1 << 20},
    {"max", 32, 1, 1 << 20},
};

int main(int argc, char **argv) {
    parse_args("large", argc, argv, args, sizeof args / sizeof *args);
    if (args[2].value > args[3].value) die("large", "min is above max");
    uint64_t live = args[1].value, s = rng_seed(0), ops = 0;
    void **slot = calloc(live, sizeof *slot);
    if (!slot) die("large", "out of memory");
    double t0 = now_secs();
    for (uint64_t i = 0; i < args[0].value; i++) {
        uint64_t r = rng_next(&s);
        uint64_t k = r % live;
        if (slot[k]) {
            free(slot[k]);
            ops++;
        }
        size_t n = (size_t)rng_range(&s, args[2].value << 20, args[3].value << 20);
        char *p = xmalloc("large", n);
        for (size_t off = 0; off < n; off += 4096) p[off] = (char)i;
        p[n - 1] = (char)i;
        slot[k] = p;
        ops++;
    }
    double secs = now_secs() - t0;
    for (uint64_t k = 0; k < live; k++) free(slot[k]);
    free(slot);
    print_result(ops, secs);
    return 0;
}
