/* Edge cases of the C allocation API, run against libhakmem.so (linked with
 * -lhakmem, or under LD_PRELOAD). Prints "api: N checks passed" and exits 0,
 * or prints every failed check and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures, checks;

#define CHECK(cond)                                                              \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            fprintf(stderr, "api.c:%d: check failed: %s\n", __LINE__, #cond);    \
        }                                                                        \
    } while (0)

static int aligned_to(void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

static void fill(void *p, size_t n, int v) { memset(p, v, n); }

static int all(const void *p, size_t n, int v) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)v) return 0;
    return 1;
}

static void test_malloc_free(void) {
    /* hakmem is the allocator in use: its smallest class is 16 bytes
     * (glibc's malloc(1) has 24 usable bytes). */
    void *one = malloc(1);
    CHECK(one != NULL && malloc_usable_size(one) == 16);
    free(one);

    /* malloc(0): a unique, freeable pointer. */
    void *z1 = malloc(0), *z2 = malloc(0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    CHECK(aligned_to(z1, 16) && aligned_to(z2, 16));
    free(z1);
    free(z2);
    free(NULL);

    /* Sizes across the classes and into large blocks: 16-byte aligned,
     * usable >= requested, contents kept. */
    static void *ps[64];
    size_t sizes[] = {1,    8,    15,   16,    17,    24,     100,     128,
                      129,  1000, 4096, 8191,  8192,  8193,   65536,   1 << 20,
                      3000000};
    int n = sizeof sizes / sizeof sizes[0];
    for (int i = 0; i < n; i++) {
        ps[i] = malloc(sizes[i]);
        CHECK(ps[i] != NULL && aligned_to(ps[i], 16));
        CHECK(malloc_usable_size(ps[i]) >= sizes[i]);
        fill(ps[i], sizes[i], i + 1);
    }
    for (int i = 0; i < n; i++) {
        CHECK(all(ps[i], sizes[i], i + 1));
        free(ps[i]);
    }
    CHECK(malloc_usable_size(NULL) == 0);

    /* The whole usable size may be used. */
    char *u = malloc(100);
    size_t us = malloc_usable_size(u);
    memset(u, 0x5a, us);
    CHECK(all(u, us, 0x5a));
    free(u);

    /* Failure: null and ENOMEM. */
    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(SIZE_MAX / 2) == NULL && errno == ENOMEM);
}

static void test_calloc(void) {
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc((size_t)1 << 33, (size_t)1 << 32) == NULL && errno == ENOMEM);
    void *c0 = calloc(0, 0);
    CHECK(c0 != NULL);
    free(c0);
    c0 = calloc(0, 100);
    CHECK(c0 != NULL);
    free(c0);
    /* Dirty a block, free it, and calloc the same class: zeroed. */
    for (int round = 0; round < 3; round++) {
        size_t sizes[] = {16, 48, 200, 5000, 8192, 20000, 300000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            char *d = malloc(sizes[i]);
            fill(d, sizes[i], 0xee);
            free(d);
            char *c = calloc(sizes[i] / 4, 4);
            CHECK(c != NULL && all(c, sizes[i], 0));
            CHECK(malloc_usable_size(c) >= sizes[i]);
            free(c);
        }
    }
}

static void test_realloc(void) {
    /* realloc(NULL, n) = malloc(n). */
    char *p = realloc(NULL, 10);
    CHECK(p != NULL && malloc_usable_size(p) >= 10);
    memcpy(p, "012345678", 10);
    /* Grow step by step through classes and into large blocks. */
    size_t sizes[] = {16, 17, 100, 1000, 8192, 8193, 20000, 100000, 2000000, 5000000};
    size_t have = 10;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        p = realloc(p, sizes[i]);
        CHECK(p != NULL && aligned_to(p, 16) && malloc_usable_size(p) >= sizes[i]);
        CHECK(memcmp(p, "012345678", 10) == 0);
        memset(p + have, (int)i, sizes[i] - have);
        have = sizes[i];
    }
    /* Shrink: the prefix is kept. */
    size_t shrink[] = {3000000, 100000, 9000, 8000, 500, 32, 10};
    for (size_t i = 0; i < sizeof shrink / sizeof shrink[0]; i++) {
        p = realloc(p, shrink[i]);
        CHECK(p != NULL && malloc_usable_size(p) >= shrink[i]);
        CHECK(memcmp(p, "012345678", 10) == 0);
    }
    /* In place within a class. */
    char *q = malloc(100);
    CHECK(realloc(q, 110) == q);
    /* realloc(p, 0) frees and returns NULL (glibc). */
    CHECK(realloc(q, 0) == NULL);
    CHECK(realloc(p, 0) == NULL);
    /* Failure: NULL, ENOMEM, the old block intact. */
    p = malloc(64);
    memset(p, 7, 64);
    errno = 0;
    CHECK(realloc(p, SIZE_MAX - 4096) == NULL && errno == ENOMEM);
    CHECK(all(p, 64, 7));
    char *big = malloc(50000);
    memset(big, 9, 50000);
    errno = 0;
    CHECK(realloc(big, SIZE_MAX / 2) == NULL && errno == ENOMEM);
    CHECK(all(big, 50000, 9));
    free(big);

    /* reallocarray: overflow check, ENOMEM, old block intact. */
    errno = 0;
    CHECK(reallocarray(p, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    CHECK(all(p, 64, 7));
    p = reallocarray(p, 100, 8);
    CHECK(p != NULL && malloc_usable_size(p) >= 800 && all(p, 64, 7));
    free(p);
    p = reallocarray(NULL, 5, 5);
    CHECK(p != NULL && malloc_usable_size(p) >= 25);
    free(p);
}

static void test_aligned(void) {
    /* posix_memalign: every power of two from sizeof(void*) to 1 MiB. */
    for (size_t a = sizeof(void *); a <= ((size_t)1 << 20); a <<= 1) {
        size_t sizes[] = {0, 1, a / 2 + 1, a, 3 * a + 5, 10000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = (void *)0x1;
            int rc = posix_memalign(&p, a, sizes[i]);
            CHECK(rc == 0 && p != NULL && aligned_to(p, a) && aligned_to(p, 16));
            CHECK(malloc_usable_size(p) >= sizes[i]);
            fill(p, sizes[i], 0x11);
            free(p);
        }
    }
    /* EINVAL: not a power of two, or not a multiple of sizeof(void*);
     * *out untouched and errno untouched. */
    size_t bad[] = {0, 1, 2, 4, 3, 24, 48, 1000, 4097, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = (void *)0x1;
        errno = 0;
        CHECK(posix_memalign(&p, bad[i], 16) == EINVAL && p == (void *)0x1 && errno == 0);
    }
    void *p = (void *)0x1;
    CHECK(posix_memalign(&p, 64, SIZE_MAX - 100) == ENOMEM && p == (void *)0x1);

    /* aligned_alloc and memalign: alignments 1 .. 1 MiB. */
    for (size_t a = 1; a <= ((size_t)1 << 20); a <<= 1) {
        void *x = aligned_alloc(a, 3 * a);
        CHECK(x != NULL && aligned_to(x, a) && aligned_to(x, 16));
        CHECK(malloc_usable_size(x) >= 3 * a);
        fill(x, 3 * a, 1);
        free(x);
        void *y = memalign(a, a + 1);
        CHECK(y != NULL && aligned_to(y, a) && malloc_usable_size(y) >= a + 1);
        fill(y, a + 1, 2);
        /* realloc of an aligned block keeps the contents. */
        y = realloc(y, 4 * a + 100);
        CHECK(y != NULL && all(y, a + 1, 2));
        free(y);
    }
    /* aligned_alloc with a non-power of two: EINVAL (glibc >= 2.38). */
    errno = 0;
    CHECK(aligned_alloc(24, 48) == NULL && errno == EINVAL);
    /* memalign rounds a non-power of two up. */
    void *m = memalign(48, 100);
    CHECK(m != NULL && aligned_to(m, 64));
    free(m);
    errno = 0;
    CHECK(memalign(SIZE_MAX, 16) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(64, SIZE_MAX - 10) == NULL && errno == ENOMEM);

    /* valloc, pvalloc: page-aligned; pvalloc rounds the size up. */
    void *v = valloc(1);
    CHECK(v != NULL && aligned_to(v, 4096));
    free(v);
    v = valloc(0);
    CHECK(v != NULL && aligned_to(v, 4096));
    free(v);
    v = pvalloc(1);
    CHECK(v != NULL && aligned_to(v, 4096) && malloc_usable_size(v) >= 4096);
    fill(v, 4096, 3);
    free(v);
    v = pvalloc(0);
    CHECK(v != NULL && aligned_to(v, 4096) && malloc_usable_size(v) >= 4096);
    free(v);
    v = pvalloc(5000);
    CHECK(v != NULL && malloc_usable_size(v) >= 8192);
    fill(v, 8192, 4);
    free(v);
    errno = 0;
    CHECK(pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM);
}

/* Threads: blocks allocated by one thread, freed by another (remote), and
 * threads exiting with live blocks. */
#define NT 4
#define PER 5000
static void *blocks[NT][PER];

static void *producer(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < PER; i++) {
        size_t n = 1 + (size_t)(i * 37 + t) % 3000;
        blocks[t][i] = malloc(n);
        fill(blocks[t][i], n, (int)t);
        if (i % 3 == 0) blocks[t][i] = realloc(blocks[t][i], n * 2);
    }
    return NULL;
}

static void *consumer(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < PER; i++) {
        CHECK(((unsigned char *)blocks[(t + 1) % NT][i])[0] == (unsigned char)((t + 1) % NT));
        free(blocks[(t + 1) % NT][i]);
    }
    return NULL;
}

static void test_threads(void) {
    pthread_t th[NT];
    for (long t = 0; t < NT; t++) pthread_create(&th[t], NULL, producer, (void *)t);
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
    for (long t = 0; t < NT; t++) pthread_create(&th[t], NULL, consumer, (void *)t);
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
}

/* fork while another thread allocates: the child keeps allocating. */
static volatile int stop;
static void *churn(void *arg) {
    (void)arg;
    while (!stop) {
        void *b[64];
        for (int i = 0; i < 64; i++) b[i] = malloc(16 + i * 200);
        for (int i = 0; i < 64; i++) free(b[i]);
        void *l = malloc(200000);
        free(l);
    }
    return NULL;
}

static void test_fork(void) {
    pthread_t th;
    pthread_create(&th, NULL, churn, NULL);
    for (int round = 0; round < 20; round++) {
        void *before = malloc(1000);
        pid_t pid = fork();
        if (pid == 0) {
            /* Child: one thread; all of the allocator must work. */
            free(before);
            for (int i = 0; i < 20000; i++) {
                void *p = malloc((size_t)(i % 9000) + 1);
                void *q = malloc(100000 + (size_t)i % 7);
                free(p);
                free(q);
            }
            _exit(0);
        }
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        free(before);
    }
    stop = 1;
    pthread_join(th, NULL);
}

int main(void) {
    test_malloc_free();
    test_calloc();
    test_realloc();
    test_aligned();
    test_threads();
    test_fork();
    if (failures) {
        fprintf(stderr, "api: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("api: %d checks passed\n", checks);
    return 0;
}
