/* Resolving a model argument (a path or a bare style name) to a file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stylize.h"

#ifndef STYLIZE_MODEL_DIR
#define STYLIZE_MODEL_DIR "/usr/local/share/stylize/models"
#endif
#ifndef STYLIZE_SOURCE_MODEL_DIR
#define STYLIZE_SOURCE_MODEL_DIR ""
#endif

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Try dir/name and dir/name.safetensors. */
static int try_dir(const char *dir, size_t dir_len, const char *name, char *path, size_t size)
{
    if (dir_len == 0)
        return 0;
    const char *suffix = strstr(name, ".safetensors") ? "" : ".safetensors";
    int n = snprintf(path, size, "%.*s/%s%s", (int)dir_len, dir, name, suffix);
    return n > 0 && (size_t)n < size && is_file(path);
}

int stylize_find_model(const char *name, char *path, size_t path_size)
{
    if (!name || !*name || !path || path_size == 0) {
        if (path && path_size)
            snprintf(path, path_size, "no model given");
        return STYLIZE_ERR_INVALID_ARG;
    }
    if (strchr(name, '/') || is_file(name)) {
        if ((size_t)snprintf(path, path_size, "%s", name) >= path_size)
            return STYLIZE_ERR_INVALID_ARG;
        return is_file(name) ? STYLIZE_OK : STYLIZE_ERR_IO;
    }
    if (try_dir(STYLIZE_MODEL_DIR, strlen(STYLIZE_MODEL_DIR), name, path, path_size))
        return STYLIZE_OK;
    const char *env = getenv("STYLIZE_MODEL_PATH");
    for (const char *p = env; p && *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (try_dir(p, len, name, path, path_size))
            return STYLIZE_OK;
        p = end ? end + 1 : p + len;
    }
    if (try_dir(STYLIZE_SOURCE_MODEL_DIR, strlen(STYLIZE_SOURCE_MODEL_DIR), name, path, path_size))
        return STYLIZE_OK;
    snprintf(path, path_size, "no model file '%s' and no style named '%s' in %s%s%s%s%s", name, name,
             STYLIZE_MODEL_DIR, env && *env ? ", STYLIZE_MODEL_PATH=" : " (STYLIZE_MODEL_PATH is not set)",
             env && *env ? env : "", *STYLIZE_SOURCE_MODEL_DIR ? " or " : "", STYLIZE_SOURCE_MODEL_DIR);
    return STYLIZE_ERR_IO;
}
