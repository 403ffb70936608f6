/* A slowly leaking loop: random sizes in [min, max] in a working set of
 * `ws` slots, as random_ws, except that one block in `leak_every` is never
 * freed (its slot is simply overwritten). Peak RSS shows whether the
 * allocator keeps the rest compact around the leaked blocks.
 *
 *   leak iters=N ws=W min=BYTES max=BYTES leak_every=K
 *
 * ops = mallocs + frees; secs of the loop. */
#include "common.h"

static struct arg args[] = {
    {"iters", 4000000, 1, 1ULL << 40},
    {"ws", 2000, 1, 1 << 24},
    {"min", 16, 1, 1 << 30},
    {"max", 2048, 1, 1 << 30},
    {"leak_every", 100, 1, 1ULL << 40},
};

int main(int argc, char **argv) {
    parse_args("leak", argc, argv, args, sizeof args / sizeof *args);
    if (args[2].value > args[3].value) die("leak", "min is above max");
    uint64_t ws = args[1].value, s = rng_seed(0), ops = 0;
    void **slot = calloc(ws, sizeof *slot);
    if (!slot) die("leak", "out of memory");
    double t0 = now_secs();
    for (uint64_t i = 0; i < args[0].value; i++) {
        uint64_t r = rng_next(&s);
        uint64_t k = r % ws;
        if (slot[k] && i % args[4].value != 0) {
            free(slot[k]);
            ops++;
        }
        size_t n = args[2].value + (size_t)((r >> 32) % (args[3].value - args[2].value + 1));
        char *p = xmalloc("leak", n);
        p[0] = (char)i;
        p[n - 1] = (char)i;
        slot[k] = p;
        ops++;
    }
    double secs = now_secs() - t0;
    for (uint64_t k = 0; k < ws; k++) free(slot[k]);
    free(slot);
    print_result(ops, secs);
    return 0;
}
