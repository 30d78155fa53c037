/* A fixed pool of worker threads for data-parallel loops. The calling
 * thread takes part, so a pool of n threads has n-1 workers. */
#ifndef STYLIZE_THREADPOOL_H
#define STYLIZE_THREADPOOL_H

typedef struct sty_pool sty_pool;

/* fn(arg, task, thread) is called once for every task in [0, n_tasks);
 * thread in [0, threads) identifies the caller for per-thread scratch. */
typedef void (*sty_task_fn)(void *arg, int task, int thread);

sty_pool *sty_pool_create(int threads);
void sty_pool_destroy(sty_pool *p);
int sty_pool_threads(const sty_pool *p);
/* Returns when every task has finished. Not reentrant. */
void sty_pool_run(sty_pool *p, int n_tasks, sty_task_fn fn, void *arg);

#endif
