/* Short-lived threads in bursts: `bursts` times, start `alive` threads at
 * once; each allocates `allocs` blocks (skewed sizes in [min, max]), frees
 * those of its own that the previous burst's thread did not leave behind,
 * and leaves half of its blocks to the next burst's thread of the same
 * index, which frees them: blocks outlive the thread that allocated them,
 * and every thread's heap is created, used and given up.
 *
 *   thread_burst bursts=B alive=A allocs=N min=BYTES max=BYTES
 *
 * ops = mallocs + frees; secs of all bursts (thread creation and exit
 * included: that is the shape's cost). */
#include <pthread.h>

#include "common.h"

static struct arg args[] = {
    {"bursts", 2000, 1, 1 << 24},
    {"alive", 4, 1, 256},
    {"allocs", 200, 2, 1 << 24},
    {"min", 16, 1, 1 << 30},
    {"max", 1024, 1, 1 << 30},
};

struct slot {
    void **left; /* the blocks the previous thread of this index left */
    uint64_t n_left;
    uint64_t seed;
    uint64_t ops;
};

static void *run(void *arg) {
    struct slot *sl = arg;
    uint64_t n = args[2].value;
    size_t lo = args[3].value, hi = args[4].value;
    void **mine = malloc(n * sizeof *mine);
    if (!mine) die("thread_burst", "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        char *p = xmalloc("thread_burst", rng_skewed(&sl->seed, lo, hi));
        p[0] = (char)i;
        mine[i] = p;
    }
    for (uint64_t i = 0; i < sl->n_left; i++) free(sl->left[i]);
    free(sl->left);
    /* Free the odd half now; leave the even half to the next thread. */
    uint64_t kept = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i & 1)
            free(mine[i]);
        else
            mine[kept++] = mine[i];
    }
    sl->ops += n + sl->n_left + (n - kept);
    sl->left = mine;
    sl->n_left = kept;
    return NULL;
}

int main(int argc, char **argv) {
    parse_args("thread_burst", argc, argv, args, sizeof args / sizeof *args);
    if (args[3].value > args[4].value) die("thread_burst", "min is above max");
    unsigned a = (unsigned)args[1].value;
    struct slot *sl = calloc(a, sizeof *sl);
    pthread_t *tid = calloc(a, sizeof *tid);
    if (!sl || !tid) die("thread_burst", "out of memory");
    for (unsigned i = 0; i < a; i++) sl[i].seed = rng_seed(i);
    double t0 = now_secs();
    for (uint64_t b = 0; b < args[0].value; b++) {
        for (unsigned i = 0; i < a; i++)
            if (pthread_create(&tid[i], NULL, run, &sl[i])) die("thread_burst", "pthread_create failed");
        for (unsigned i = 0; i < a; i++) pthread_join(tid[i], NULL);
    }
    double secs = now_secs() - t0;
    uint64_t ops = 0;
    for (unsigned i = 0; i < a; i++) {
        ops += sl[i].ops;
        for (uint64_t k = 0; k < sl[i].n_left; k++) free(sl[i].left[k]);
        free(sl[i].left);
    }
    print_result(ops, secs);
    free(sl);
    free(tid);
    return 0;
}
