/* Invalid uses of the allocator, one per run (argv[1]); each must abort
 * with one "hakmem: <function>(): invalid pointer 0x... (problem)" line.
 * Prints "ptr=<pointer>" to stderr first, so the test can check that the
 * message names it. Exits 2 on an unknown case. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say(void *p) {
    fprintf(stderr, "ptr=%p\n", p);
    fflush(stderr);
}

static void *alloc64(void *arg) {
    (void)arg;
    return malloc(64);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *c = argv[1];
    char stack[256];
    memset(stack, 0, sizeof stack);
    if (!strcmp(c, "stack")) {
        say(stack + 16);
        free(stack + 16);
    } else if (!strcmp(c, "double")) {
        void *p = malloc(64);
        say(p);
        free(p);
        free(p);
    } else if (!strcmp(c, "double-large")) {
        void *p = malloc(100000);
        say(p);
        free(p);
        free(p);
    } else if (!strcmp(c, "misaligned")) {
        /* A block of another thread's page, freed at a wrong offset. */
        pthread_t t;
        void *p;
        pthread_create(&t, NULL, alloc64, NULL);
        pthread_join(t, &p);
        say((char *)p + 8);
        free((char *)p + 8);
    } else if (!strcmp(c, "misaligned-large")) {
        char *p = malloc(100000);
        say(p + 16);
        free(p + 16);
    } else if (!strcmp(c, "realloc-stack")) {
        say(stack + 32);
        void *volatile r = realloc(stack + 32, 100);
        (void)r;
    } else if (!strcmp(c, "realloc-misaligned")) {
        char *p = malloc(64);
        say(p + 16);
        void *volatile r = realloc(p + 16, 100);
        (void)r;
    } else if (!strcmp(c, "usable-stack")) {
        say(stack + 48);
        volatile size_t n = malloc_usable_size(stack + 48);
        (void)n;
    } else {
        return 2;
    }
    fprintf(stderr, "not aborted\n");
    return 0;
}
