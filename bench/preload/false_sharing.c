/* False sharing: T threads, each allocating small objects (`size` bytes)
 * in turn and writing each one hard (`writes` read-modify-writes) before
 * freeing it, and keeping `keep` of them live. An allocator that hands two
 * threads objects of one cache line makes the lines bounce between cores
 * (what Berger's cache-thrash and cache-scratch measure); the objects the
 * main thread allocated first and handed to the threads (`scratch=1`) test
 * whether a freed object's line is given to another thread.
 *
 *   false_sharing threads=T iters=N size=BYTES writes=W scratch=0|1
 *
 * ops = mallocs + frees; secs from the start barrier to the last end. */
#include <pthread.h>

#include "common.h"

static struct arg args[] = {
    {"threads", 2, 1, 256},
    {"iters", 200000, 1, 1ULL << 40},
    {"size", 8, 1, 1 << 20},
    {"writes", 100, 1, 1 << 24},
    {"scratch", 0, 0, 1},
};

static pthread_barrier_t start;

struct worker {
    pthread_t tid;
    char *first; /* allocated by the main thread; freed by this one (scratch) */
    uint64_t ops;
};

static void *run(void *arg) {
    struct worker *w = arg;
    size_t size = args[2].value;
    uint64_t writes = args[3].value, ops = 0;
    pthread_barrier_wait(&start);
    if (w->first) {
        free(w->first);
        ops++;
    }
    for (uint64_t i = 0; i < args[1].value; i++) {
        volatile char *p = xmalloc("false_sharing", size);
        ops++;
        for (uint64_t k = 0; k < writes; k++) p[k % size] += 1;
        free((void *)p);
        ops++;
    }
    w->ops = ops;
    return NULL;
}

int main(int argc, char **argv) {
    parse_args("false_sharing", argc, argv, args, sizeof args / sizeof *args);
    unsigned t = (unsigned)args[0].value;
    struct worker *w = calloc(t, sizeof *w);
    if (!w) die("false_sharing", "out of memory");
    pthread_barrier_init(&start, NULL, t + 1);
    for (unsigned i = 0; i < t; i++) {
        if (args[4].value) w[i].first = xmalloc("false_sharing", args[2].value);
        if (pthread_create(&w[i].tid, NULL, run, &w[i])) die("false_sharing", "pthread_create failed");
    }
    pthread_barrier_wait(&start);
    double t0 = now_secs();
    uint64_t ops = 0;
    for (unsigned i = 0; i < t; i++) {
        pthread_join(w[i].tid, NULL);
        ops += w[i].ops;
    }
    double secs = now_secs() - t0;
    print_result(ops, secs);
    free(w);
    return 0;
}
