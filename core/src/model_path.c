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

/* Styles that were shipped under another name: a bare old name still finds
 * the style that replaced it (a file of the old name, where one exists,
 * still wins: it is searched first). */
static const struct {
    const char *old_name, *new_name;
} renamed_styles[] = {
    {"starry_night_fast", "starry_night_live"},   /* replaced by its distilled twin */
};

/* Look a bare style name up in the model folders, in the documented order. */
static int search_folders(const char *name, char *path, size_t path_size)
{
    if (try_dir(STYLIZE_MODEL_DIR, strlen(STYLIZE_MODEL_DIR), name, path, path_size))
        return 1;
    const char *env = getenv("STYLIZE_MODEL_PATH");
    for (const char *p = env; p && *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (try_dir(p, len, name, path, path_size))
            return 1;
        p = end ? end + 1 : p + len;
    }
    return try_dir(STYLIZE_SOURCE_MODEL_DIR, strlen(STYLIZE_SOURCE_MODEL_DIR), name, path, path_size);
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
    if (search_folders(name, path, path_size))
        return STYLIZE_OK;
    size_t stem = strlen(name);   /* "old" and "old.safetensors" alike */
    if (stem > 12 && !strcmp(name + stem - 12, ".safetensors"))
        stem -= 12;
    for (size_t i = 0; i < sizeof(renamed_styles) / sizeof(renamed_styles[0]); i++)
        if (strlen(renamed_styles[i].old_name) == stem && !strncmp(name, renamed_styles[i].old_name, stem) &&
            search_folders(renamed_styles[i].new_name, path, path_size))
            return STYLIZE_OK;
    const char *env = getenv("STYLIZE_MODEL_PATH");
    snprintf(path, path_size, "no model file '%s' and no style named '%s' in %s%s%s%s%s", name, name,
             STYLIZE_MODEL_DIR, env && *env ? ", STYLIZE_MODEL_PATH=" : " (STYLIZE_MODEL_PATH is not set)",
             env && *env ? env : "", *STYLIZE_SOURCE_MODEL_DIR ? " or " : "", STYLIZE_SOURCE_MODEL_DIR);
    return STYLIZE_ERR_IO;
}
