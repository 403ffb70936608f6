/* A realistic mix: T threads, each allocating one block per step with a
 * size skewed to small (log-uniform in [min, max]) and a lifetime drawn
 * from a mixture (70% die within 16 steps, 25% within 4096, 5% within
 * 65535), so each thread holds a live set of a few thousand blocks. When
 * a block's time comes, `remote` percent of them are handed to the next
 * thread (a lock-free inbox), which frees them: cross-thread frees mixed
 * into local ones. Every block is written when allocated.
 *
 *   mix threads=T steps=N min=BYTES max=BYTES remote=PERCENT
 *
 * ops = mallocs + frees during the steps; secs from the start barrier to
 * the last thread's last step. Blocks still live then are freed after. */
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

static struct arg args[] = {
    {"threads", 2, 1, 256},
    {"steps", 2000000, 1, 1ULL << 40},
    {"min", 16, 16, 1 << 30},
    {"max", 4096, 16, 1 << 30},
    {"remote", 10, 0, 100},
};

#define WHEEL 65536 /* lifetimes are < WHEEL steps */

struct worker {
    pthread_t tid;
    unsigned index;
    _Alignas(64) _Atomic(void *) inbox; /* blocks other threads hand us */
    _Alignas(64) uint64_t ops;
    void **wheel; /* wheel[t]: blocks dying at step t mod WHEEL, linked through their first word */
};

static struct worker *workers;
static unsigned nthreads;
static pthread_barrier_t start;

static void push_inbox(struct worker *to, void *p) {
    void *head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
    do {
        *(void **)p = head;
    } while (!atomic_compare_exchange_weak_explicit(&to->inbox, &head, p, memory_order_release,
                                                    memory_order_relaxed));
}

static uint64_t drain_inbox(struct worker *w) {
    uint64_t n = 0;
    void *p = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
    while (p) {
        void *next = *(void **)p;
        free(p);
        p = next;
        n++;
    }
    return n;
}

static uint64_t lifetime(uint64_t *s) {
    uint64_t r = rng_next(s);
    unsigned pick = (unsigned)(r % 100);
    r >>= 8;
    if (pick < 70) return 1 + r % 16;
    if (pick < 95) return 1 + r % 4096;
    return 1 + r % (WHEEL - 1);
}

static void *run(void *arg) {
    struct worker *w = arg;
    struct worker *next = &workers[(w->index + 1) % nthreads];
    uint64_t steps = args[1].value, s = rng_seed(w->index), ops = 0;
    size_t lo = args[2].value, hi = args[3].value;
    unsigned remote = nthreads > 1 ? (unsigned)args[4].value : 0;
    w->wheel = calloc(WHEEL, sizeof(void *));
    if (!w->wheel) die("mix", "out of memory for the wheel");
    pthread_barrier_wait(&start);
    for (uint64_t t = 0; t < steps; t++) {
        void **due = &w->wheel[t % WHEEL];
        void *p = *due;
        *due = NULL;
        while (p) {
            void *after = *(void **)p;
            if (remote && rng_next(&s) % 100 < remote) {
                push_inbox(next, p);
            } else {
                free(p);
                ops++;
            }
            p = after;
        }
        if ((t & 63) == 0) ops += drain_inbox(w);
        size_t n = rng_skewed(&s, lo, hi);
        char *b = xmalloc("mix", n);
        memset(b, (int)t, n < 64 ? n : 64);
        void **slot = &w->wheel[(t + lifetime(&s)) % WHEEL];
        *(void **)b = *slot;
        *slot = b;
        ops++;
    }
    w->ops = ops;
    pthread_barrier_wait(&start); /* the clock stops */
    for (uint64_t t = 0; t < WHEEL; t++) {
        void *p = w->wheel[t];
        while (p) {
            void *after = *(void **)p;
            free(p);
            p = after;
        }
    }
    free(w->wheel);
    pthread_barrier_wait(&start); /* nobody pushes any more */
    drain_inbox(w);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args("mix", argc, argv, args, sizeof args / sizeof *args);
    if (args[2].value > args[3].value) die("mix", "min is above max");
    nthreads = (unsigned)args[0].value;
    workers = aligned_alloc(64, nthreads * sizeof *workers);
    if (!workers) die("mix", "out of memory");
    memset(workers, 0, nthreads * sizeof *workers);
    pthread_barrier_init(&start, NULL, nthreads + 1);
    for (unsigned i = 0; i < nthreads; i++) {
        workers[i].index = i;
        if (pthread_create(&workers[i].tid, NULL, run, &workers[i])) die("mix", "pthread_create failed");
    }
    pthread_barrier_wait(&start);
    double t0 = now_secs();
    pthread_barrier_wait(&start);
    double secs = now_secs() - t0;
    pthread_barrier_wait(&start);
    uint64_t ops = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(workers[i].tid, NULL);
        ops += workers[i].ops;
    }
    print_result(ops, secs);
    free(workers);
    return 0;
}
