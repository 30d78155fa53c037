/* Thread pool: workers sleep on a condition variable (no spinning: the VM's
 * CPU share can drop, and spinning threads then cost far more than they
 * save) and take tasks from a shared atomic counter. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct sty_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t work_ready, work_done;
    unsigned generation; /* bumped for every sty_pool_run */
    int quit;
    /* the job in flight */
    sty_task_fn fn;
    void *arg;
    int n_tasks;
    atomic_int next_task;
    int busy_workers;
};

typedef struct worker_arg {
    sty_pool *pool;
    int index;
} worker_arg;

static void drain(sty_pool *p, int thread)
{
    for (;;) {
        int t = atomic_fetch_add(&p->next_task, 1);
        if (t >= p->n_tasks)
            return;
        p->fn(p->arg, t, thread);
    }
}

static void *worker_main(void *opaque)
{
    worker_arg *wa = opaque;
    sty_pool *p = wa->pool;
    int index = wa->index;
    unsigned seen = 0;
    free(wa);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->work_ready, &p->lock);
        if (p->quit)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        drain(p, index);
        pthread_mutex_lock(&p->lock);
        if (--p->busy_workers == 0)
            pthread_cond_signal(&p->work_done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

sty_pool *sty_pool_create(int threads)
{
    sty_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work_ready, NULL);
    pthread_cond_init(&p->work_done, NULL);
    if (p->threads > 1) {
        p->workers = calloc((size_t)p->threads - 1, sizeof(*p->workers));
        if (!p->workers) {
            sty_pool_destroy(p);
            return NULL;
        }
        for (int i = 1; i < p->threads; i++) {
            worker_arg *wa = malloc(sizeof(*wa));
            if (wa) {
                wa->pool = p;
                wa->index = i;
            }
            if (!wa || pthread_create(&p->workers[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                p->threads = i; /* destroy joins only the workers that started */
                sty_pool_destroy(p);
                return NULL;
            }
        }
    }
    return p;
}

void sty_pool_destroy(sty_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = 1;
    pthread_cond_broadcast(&p->work_ready);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->threads; i++)
        pthread_join(p->workers[i - 1], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work_ready);
    pthread_cond_destroy(&p->work_done);
    free(p->workers);
    free(p);
}

int sty_pool_threads(const sty_pool *p)
{
    return p->threads;
}

void sty_pool_run(sty_pool *p, int n_tasks, sty_task_fn fn, void *arg)
{
    if (n_tasks <= 0)
        return;
    if (p->threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next_task, 0);
    p->busy_workers = p->threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work_ready);
    pthread_mutex_unlock(&p->lock);

    drain(p, 0);

    pthread_mutex_lock(&p->lock);
    while (p->busy_workers > 0)
        pthread_cond_wait(&p->work_done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
