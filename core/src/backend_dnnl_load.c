/* Loading oneDNN at run time, and parallel loops on its OpenMP team.
 *
 * Why dlopen: the OpenMP runtime (libgomp for Debian's oneDNN) reads
 * OMP_WAIT_POLICY once, when it is loaded. Its default lets idle threads
 * spin for milliseconds at every barrier; on a VM whose CPU share drops to
 * one core the spinning thread then steals the core from the thread doing
 * the work (measured 5-7x slower). Before loading oneDNN this file sets
 * OMP_WAIT_POLICY=passive unless the environment already sets it. That
 * only helps when libdnnl is not already loaded with the program (linked
 * with -ldnnl without --as-needed): then the runtime has read its
 * environment before main() and the setting comes too late
 * (sty_dnnl_api.runtime_preloaded tells). Set OMP_WAIT_POLICY=passive in
 * the environment of such programs. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend_dnnl_impl.h"

static sty_dnnl_api api;
static const char *load_error;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    static const char *const names[] = {"libdnnl.so.2", "libdnnl.so"};
    void *gomp = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
    void *h = NULL;
    /* Already there (the program links it): nothing to set before it starts. */
    for (size_t i = 0; !h && i < sizeof(names) / sizeof(names[0]); i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
    if (gomp || h) {
        api.runtime_preloaded = 1;
    } else if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 0);
        api.wait_policy_set = 1;
    }
    if (gomp)
        dlclose(gomp);
    for (size_t i = 0; !h && i < sizeof(names) / sizeof(names[0]); i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        load_error = "libdnnl.so.2 (oneDNN 2.x) could not be loaded";
        return;
    }
#define STY_DNNL_SYM(f)                                                                              \
    if (!(*(void **)&api.f = dlsym(h, #f))) {                                                        \
        load_error = "libdnnl.so.2 lacks " #f;                                                        \
        return;                                                                                       \
    }
    STY_DNNL_FUNCS(STY_DNNL_SYM)
#undef STY_DNNL_SYM
    const dnnl_version_t *v = api.dnnl_version();
    if (!v || v->major != 2) {
        load_error = "the oneDNN found is not version 2.x";
        api.dnnl_version = NULL;
        return;
    }
    /* dlsym on the handle also searches its dependencies: the OpenMP runtime. */
    *(void **)&api.omp_set_num_threads = dlsym(h, "omp_set_num_threads");
    *(void **)&api.omp_get_max_threads = dlsym(h, "omp_get_max_threads");
    *(void **)&api.omp_get_thread_num = dlsym(h, "omp_get_thread_num");
    *(void **)&api.omp_get_num_threads = dlsym(h, "omp_get_num_threads");
    *(void **)&api.GOMP_parallel = dlsym(h, "GOMP_parallel");
    if (!api.omp_set_num_threads || !api.omp_get_max_threads || !api.omp_get_thread_num ||
        !api.omp_get_num_threads || !api.GOMP_parallel)
        api.omp_set_num_threads = NULL, api.omp_get_max_threads = NULL, api.GOMP_parallel = NULL;
    /* h stays open for the life of the process. */
}

const sty_dnnl_api *sty_dnnl_load(const char **why)
{
    pthread_once(&once, load);
    if (load_error || !api.dnnl_version) {
        if (why)
            *why = load_error ? load_error : "oneDNN could not be loaded";
        return NULL;
    }
    return &api;
}

typedef struct par_job {
    const sty_dnnl_api *api;
    int n;
    sty_dnnl_task_fn fn;
    void *arg;
} par_job;

static void par_body(void *opaque)
{
    par_job *j = opaque;
    int nthr = j->api->omp_get_num_threads(), ithr = j->api->omp_get_thread_num();
    long lo = (long)j->n * ithr / nthr, hi = (long)j->n * (ithr + 1) / nthr;
    for (long t = lo; t < hi; t++)
        j->fn(j->arg, (int)t);
}

void sty_dnnl_parallel(const sty_dnnl_api *a, int threads, int n, sty_dnnl_task_fn fn, void *arg)
{
    if (n <= 0)
        return;
    if (threads > n)
        threads = n;
    if (threads <= 1 || !a || !a->GOMP_parallel) {
        for (int t = 0; t < n; t++)
            fn(arg, t);
        return;
    }
    par_job j = {a, n, fn, arg};
    a->GOMP_parallel(par_body, &j, (unsigned)threads, 0);
}
