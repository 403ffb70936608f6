/* libhakmem.so loaded late: `dlopen_threads LIB` starts 3 threads, then
 * dlopens LIB (RTLD_LOCAL: the program's own malloc stays glibc's) and
 * calls its malloc/free/malloc_usable_size through dlsym from those 3
 * threads (whose static TLS for LIB is set up by dlopen), from 3 threads
 * created afterwards and from main. Each thread keeps a ring of blocks with
 * a pattern and checks it before each free; half of the kept blocks are
 * freed by another thread (remote frees). A shared or uninitialised
 * per-thread heap word shows up as corruption or a crash. Then dlclose
 * (libhakmem.so is marked nodelete: its thread-exit hook stays mapped) and
 * more thread exits. Prints "dlopen ok". */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EARLY 3
#define LATE 3
#define ITERS 20000
#define RING 64

static void *(*hm_malloc)(size_t);
static void (*hm_free)(void *);
static size_t (*hm_usable)(void *);
static pthread_barrier_t loaded;

#define HANDOFF ((EARLY + LATE + 1) * RING)
static void *handoff[HANDOFF];
static size_t handoff_size[HANDOFF];
static int handoff_n;
static pthread_mutex_t handoff_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, int id) {
    fprintf(stderr, "dlopen_threads: thread %d: %s\n", id, what);
    exit(1);
}

static void check(unsigned char *p, size_t n, unsigned char v, int id) {
    for (size_t i = 0; i < n; i += 7)
        if (p[i] != v) fail("block changed while live", id);
    if (p[n - 1] != v) fail("block changed while live", id);
}

static void work(int id) {
    unsigned char *ring[RING] = {0};
    size_t size[RING];
    uint64_t x = 0x9e3779b97f4a7c15ull * (id + 1);
    if (hm_usable(hm_malloc(1)) != 16) fail("malloc(1) not served by hakmem", id);
    for (int i = 0; i < ITERS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int s = i % RING;
        if (ring[s]) {
            check(ring[s], size[s], (unsigned char)(s + id), id);
            hm_free(ring[s]);
        }
        size[s] = 1 + (x >> 11) % 3000;
        ring[s] = hm_malloc(size[s]);
        if (!ring[s] || ((uintptr_t)ring[s] & 15)) fail("bad block", id);
        if (hm_usable(ring[s]) < size[s]) fail("usable size below the request", id);
        memset(ring[s], s + id, size[s]);
    }
    for (int s = 0; s < RING; s++) {
        check(ring[s], size[s], (unsigned char)(s + id), id);
        if (s % 2) {
            hm_free(ring[s]);
            continue;
        }
        pthread_mutex_lock(&handoff_lock);
        handoff[handoff_n] = ring[s];
        handoff_size[handoff_n++] = size[s] | (size_t)(unsigned char)(s + id) << 32;
        pthread_mutex_unlock(&handoff_lock);
    }
}

static void *early(void *arg) {
    pthread_barrier_wait(&loaded);
    work((int)(intptr_t)arg);
    return NULL;
}

static void *late(void *arg) {
    work((int)(intptr_t)arg);
    return NULL;
}

static void *churn(void *arg) {
    (void)arg;
    hm_free(hm_malloc(100));
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIB\n", argv[0]);
        return 2;
    }
    pthread_t t[EARLY + LATE];
    pthread_barrier_init(&loaded, NULL, EARLY + 1);
    for (int i = 0; i < EARLY; i++)
        if (pthread_create(&t[i], NULL, early, (void *)(intptr_t)i)) return 1;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen_threads: dlopen: %s\n", dlerror());
        return 1;
    }
    hm_malloc = (void *(*)(size_t))dlsym(h, "malloc");
    hm_free = (void (*)(void *))dlsym(h, "free");
    hm_usable = (size_t(*)(void *))dlsym(h, "malloc_usable_size");
    if (!hm_malloc || !hm_free || !hm_usable || (void *)hm_malloc == (void *)malloc)
        fail("dlsym did not find libhakmem.so's own functions", -1);
    pthread_barrier_wait(&loaded);
    for (int i = EARLY; i < EARLY + LATE; i++)
        if (pthread_create(&t[i], NULL, late, (void *)(intptr_t)i)) return 1;
    work(EARLY + LATE);
    for (int i = 0; i < EARLY + LATE; i++) pthread_join(t[i], NULL);
    /* Remote frees of the exited threads' blocks. */
    for (int i = 0; i < handoff_n; i++) {
        check(handoff[i], handoff_size[i] & 0xffffffff, (unsigned char)(handoff_size[i] >> 32), -1);
        hm_free(handoff[i]);
    }
    dlclose(h);
    /* The thread-exit hook of a thread that used hakmem runs after dlclose. */
    pthread_t c;
    if (pthread_create(&c, NULL, churn, NULL) || pthread_join(c, NULL)) return 1;
    puts("dlopen ok");
    return 0;
}
