/* A pool of worker threads computing checksums of job batches; the main thread prints a tally
 * every half second. Fixed: batch_sum() now adds every element of a batch. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#define WORKERS 4
#define BATCH 8

static atomic_long right, wrong;

__attribute__((noinline)) long batch_sum(const long *values, int count)
{
    long sum = 0;
    for (int i = 0; i < count; i++)
        sum += values[i];
    return sum;
}

static void *worker(void *arg)
{
    long seed = (long)arg;
    for (;;) {
        long values[BATCH], expected = 0;
        for (int i = 0; i < BATCH; i++) {
            seed = seed * 6364136223846793005L + 1442695040888963407L;
            values[i] = (seed >> 33) & 0xffff;
            expected += values[i];
        }
        if (batch_sum(values, BATCH) == expected)
            atomic_fetch_add(&right, 1);
        else
            atomic_fetch_add(&wrong, 1);
        usleep(2000);
    }
    return NULL;
}

int main(void)
{
    pthread_t threads[WORKERS];
    for (long i = 0; i < WORKERS; i++)
        pthread_create(&threads[i], NULL, worker, (void *)(i + 1));
    long last_right = 0, last_wrong = 0;
    for (;;) {
        usleep(500000);
        long r = atomic_load(&right), w = atomic_load(&wrong);
        printf("last 0.5 s: %ld batches right, %ld wrong\n", r - last_right, w - last_wrong);
        fflush(stdout);
        last_right = r;
        last_wrong = w;
    }
}
