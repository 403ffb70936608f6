/* Producer/consumer: `pairs` producer threads only allocate and hand each
 * block through a bounded single-producer single-consumer ring to its
 * consumer thread, which only frees. Every free is a cross-thread free.
 * Sizes are skewed to small in [min, max]; the producer writes the first
 * byte, the consumer reads it.
 *
 *   prodcons pairs=P blocks=N min=BYTES max=BYTES ring=SLOTS
 *
 * ops = mallocs + frees (2 N per pair); secs from the start barrier until
 * every consumer has freed its last block. A full or empty ring yields the
 * CPU (sched_yield), so more threads than cores still make progress. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "common.h"

static struct arg args[] = {
    {"pairs", 1, 1, 128},
    {"blocks", 4000000, 1, 1ULL << 40},
    {"min", 16, 1, 1 << 30},
    {"max", 1024, 1, 1 << 30},
    {"ring", 1024, 2, 1 << 20},
};

struct ring {
    _Alignas(64) _Atomic uint64_t head; /* next slot the producer writes */
    _Alignas(64) _Atomic uint64_t tail; /* next slot the consumer reads */
    _Alignas(64) void **slot;
    uint64_t size;
    uint64_t seed;
    uint64_t sum;
};

static pthread_barrier_t start;

static void *produce(void *arg) {
    struct ring *r = arg;
    uint64_t n = args[1].value, s = r->seed;
    size_t lo = args[2].value, hi = args[3].value;
    pthread_barrier_wait(&start);
    for (uint64_t i = 0; i < n; i++) {
        char *p = xmalloc("prodcons", rng_skewed(&s, lo, hi));
        p[0] = (char)i;
        uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
        while (h - atomic_load_explicit(&r->tail, memory_order_acquire) == r->size) sched_yield();
        r->slot[h % r->size] = p;
        atomic_store_explicit(&r->head, h + 1, memory_order_release);
    }
    return NULL;
}

static void *consume(void *arg) {
    struct ring *r = arg;
    uint64_t n = args[1].value, sum = 0;
    pthread_barrier_wait(&start);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
        while (atomic_load_explicit(&r->head, memory_order_acquire) == t) sched_yield();
        char *p = r->slot[t % r->size];
        atomic_store_explicit(&r->tail, t + 1, memory_order_release);
        sum += (unsigned char)p[0];
        free(p);
    }
    r->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    parse_args("prodcons", argc, argv, args, sizeof args / sizeof *args);
    if (args[2].value > args[3].value) die("prodcons", "min is above max");
    unsigned pairs = (unsigned)args[0].value;
    struct ring *rings = aligned_alloc(64, pairs * sizeof *rings);
    pthread_t *tid = calloc(2 * pairs, sizeof *tid);
    if (!rings || !tid) die("prodcons", "out of memory");
    memset(rings, 0, pairs * sizeof *rings);
    pthread_barrier_init(&start, NULL, 2 * pairs + 1);
    for (unsigned i = 0; i < pairs; i++) {
        rings[i].size = args[4].value;
        rings[i].slot = calloc(rings[i].size, sizeof(void *));
        rings[i].seed = rng_seed(i);
        if (!rings[i].slot) die("prodcons", "out of memory");
        if (pthread_create(&tid[2 * i], NULL, produce, &rings[i]) ||
            pthread_create(&tid[2 * i + 1], NULL, consume, &rings[i]))
            die("prodcons", "pthread_create failed");
    }
    pthread_barrier_wait(&start);
    double t0 = now_secs();
    for (unsigned i = 0; i < 2 * pairs; i++) pthread_join(tid[i], NULL);
    double secs = now_secs() - t0;
    print_result(2 * args[1].value * pairs, secs);
    for (unsigned i = 0; i < pairs; i++) free(rings[i].slot);
    free(rings);
    free(tid);
    return 0;
}
