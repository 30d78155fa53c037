#include "smoothing.h"

#include <math.h>
#include <string.h>

double sty_stats_distance(const sty_model *m, const float *state, const float *cur)
{
    if (m->n_norms == 0) /* a network without instance norm has no statistics to compare */
        return 0;
    const sty_norm *n = &m->norms[0];
    const float *mean_s = state + n->stats_offset, *var_s = mean_s + n->c;
    const float *mean_c = cur + n->stats_offset;
    double d = 0;
    for (int c = 0; c < n->c; c++)
        d += fabs((double)mean_c[c] - mean_s[c]) / sqrt((double)var_s[c] + 1e-5);
    return d / n->c;
}

int sty_smoother_update(sty_smoother *s, const sty_model *m, const float *cur, float smooth, float scene_cut)
{
    if (!s->valid || smooth <= 0 || (scene_cut > 0 && sty_stats_distance(m, s->state, cur) > scene_cut)) {
        memcpy(s->state, cur, sizeof(float) * m->stats_size);
        s->valid = 1;
        return 1;
    }
    for (size_t i = 0; i < m->stats_size; i++)
        s->state[i] = smooth * s->state[i] + (1.0f - smooth) * cur[i];
    return 0;
}
