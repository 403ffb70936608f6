/* Random sizes with a working set, on T independent threads (like glibc's
 * bench-malloc-thread): each thread keeps `ws` slots; every iteration picks
 * a slot at random, frees its block (if any) and puts a new block of a
 * uniform random size in [min, max] there, writing its first and last
 * bytes. threads=1 is the single-threaded shape.
 *
 *   random_ws threads=T iters=N ws=W min=BYTES max=BYTES
 *
 * ops = mallocs + frees of all threads; secs from the start barrier to the
 * last thread's end. The blocks left are freed after the clock stops. */
#include <pthread.h>

#include "common.h"

static struct arg args[] = {
    {"threads", 1, 1, 256},
    {"iters", 2000000, 1, 1ULL << 40},
    {"ws", 1000, 1, 1 << 24},
    {"min", 16, 1, 1 << 30},
    {"max", 4096, 1, 1 << 30},
};

static pthread_barrier_t start;

struct worker {
    pthread_t tid;
    uint64_t seed;
    uint64_t ops;
};

static void *run(void *arg) {
    struct worker *w = arg;
    uint64_t iters = args[1].value, ws = args[2].value;
    size_t lo = args[3].value, hi = args[4].value;
    void **slot = calloc(ws, sizeof *slot);
    if (!slot) die("random_ws", "out of memory for the slot table");
    uint64_t s = w->seed, ops = 0;
    pthread_barrier_wait(&start);
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t r = rng_next(&s);
        uint64_t k = r % ws;
        if (slot[k]) {
            free(slot[k]);
            ops++;
        }
        size_t n = lo + (size_t)((r >> 32) % (hi - lo + 1));
        char *p = xmalloc("random_ws", n);
        p[0] = (char)i;
        p[n - 1] = (char)i;
        slot[k] = p;
        ops++;
    }
    w->ops = ops;
    pthread_barrier_wait(&start); /* the clock stops when all are here */
    for (uint64_t k = 0; k < ws; k++) free(slot[k]);
    free(slot);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args("random_ws", argc, argv, args, sizeof args / sizeof *args);
    if (args[3].value > args[4].value) die("random_ws", "min is above max");
    unsigned t = (unsigned)args[0].value;
    struct worker *w = calloc(t, sizeof *w);
    if (!w) die("random_ws", "out of memory");
    pthread_barrier_init(&start, NULL, t + 1);
    for (unsigned i = 0; i < t; i++) {
        w[i].seed = rng_seed(i);
        if (pthread_create(&w[i].tid, NULL, run, &w[i])) die("random_ws", "pthread_create failed");
    }
    pthread_barrier_wait(&start);
    double t0 = now_secs();
    pthread_barrier_wait(&start);
    double secs = now_secs() - t0;
    uint64_t ops = 0;
    for (unsigned i = 0; i < t; i++) {
        pthread_join(w[i].tid, NULL);
        ops += w[i].ops;
    }
    print_result(ops, secs);
    free(w);
    return 0;
}
