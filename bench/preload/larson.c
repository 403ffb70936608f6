/* Larson-style replacement with thread hand-off (Larson and Krishnan's
 * server benchmark, with a fixed amount of work instead of a fixed time):
 * T lineages, each an array of `blocks` blocks first allocated by the main
 * thread. A lineage's thread replaces `iters` random blocks (free, then
 * malloc of a uniform size in [min, max], first byte written), then starts
 * a successor thread that inherits the array and exits; `generations`
 * threads per lineage. So blocks are freed by threads other than the ones
 * that allocated them, and threads come and go while their blocks live.
 *
 *   larson threads=T blocks=N iters=I generations=G min=BYTES max=BYTES
 *
 * ops = mallocs + frees of the replacements (2 I G T); secs from the
 * start of the first generation to the end of the last. */
#include <pthread.h>

#include "common.h"

static struct arg args[] = {
    {"threads", 2, 1, 256},
    {"blocks", 1000, 1, 1 << 24},
    {"iters", 20000, 1, 1ULL << 40},
    {"generations", 50, 1, 1 << 20},
    {"min", 16, 1, 1 << 30},
    {"max", 512, 1, 1 << 30},
};

struct lineage {
    void **block;
    uint64_t seed;
    uint64_t generation;
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static unsigned running;

static size_t size_of(uint64_t r) {
    size_t lo = args[4].value, hi = args[5].value;
    return lo + (size_t)(r % (hi - lo + 1));
}

static void *run(void *arg) {
    struct lineage *l = arg;
    uint64_t n = args[1].value, iters = args[2].value, s = l->seed;
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t r = rng_next(&s);
        uint64_t k = r % n;
        free(l->block[k]);
        size_t sz = size_of(r >> 32);
        char *p = xmalloc("larson", sz);
        p[0] = (char)i;
        l->block[k] = p;
    }
    l->seed = s;
    l->generation++;
    pthread_detach(pthread_self());
    if (l->generation < args[3].value) {
        pthread_t next;
        if (pthread_create(&next, NULL, run, l)) die("larson", "pthread_create failed");
    } else {
        pthread_mutex_lock(&done_lock);
        running--;
        pthread_cond_signal(&done_cond);
        pthread_mutex_unlock(&done_lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    parse_args("larson", argc, argv, args, sizeof args / sizeof *args);
    if (args[4].value > args[5].value) die("larson", "min is above max");
    unsigned t = (unsigned)args[0].value;
    uint64_t n = args[1].value;
    struct lineage *l = calloc(t, sizeof *l);
    if (!l) die("larson", "out of memory");
    for (unsigned i = 0; i < t; i++) {
        l[i].seed = rng_seed(i);
        l[i].block = calloc(n, sizeof(void *));
        if (!l[i].block) die("larson", "out of memory");
        for (uint64_t k = 0; k < n; k++) {
            size_t sz = size_of(rng_next(&l[i].seed));
            l[i].block[k] = xmalloc("larson", sz);
            ((char *)l[i].block[k])[0] = 1;
        }
    }
    running = t;
    double t0 = now_secs();
    for (unsigned i = 0; i < t; i++) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, run, &l[i])) die("larson", "pthread_create failed");
    }
    pthread_mutex_lock(&done_lock);
    while (running) pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);
    double secs = now_secs() - t0;
    print_result(2 * args[2].value * args[3].value * t, secs);
    for (unsigned i = 0; i < t; i++) {
        for (uint64_t k = 0; k < n; k++) free(l[i].block[k]);
        free(l[i].block);
    }
    free(l);
    return 0;
}
