/* Known requests for the record-mode test (capi/tests/record.rs): each of
 * THREADS threads (and main) does ROUNDS rounds of LIVE malloc(777) then
 * frees them in reverse, plus one calloc/realloc/free and one
 * realloc(NULL, 555)/free per round. With
 * hakmem's fast paths the mallocs and frees after the first of each round
 * hit the current page: a recorder that only saw slow paths would miss
 * most of them. Prints the number of malloc(777) calls. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 3
#define ROUNDS 20
#define LIVE 50

static void *work(void *arg) {
    (void)arg;
    void *p[LIVE];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < LIVE; i++) {
            p[i] = malloc(777);
            if (!p[i]) abort();
            memset(p[i], i, 777);
        }
        for (int i = LIVE - 1; i >= 0; i--) free(p[i]);
        char *z = calloc(3, 333);
        z = realloc(z, 999);
        free(z);
        char *y = realloc(NULL, 555);
        free(y);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, work, NULL)) return 1;
    work(NULL);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("%d\n", (THREADS + 1) * ROUNDS * LIVE);
    return 0;
}
