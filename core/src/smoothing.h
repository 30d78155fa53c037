/* Temporal smoothing of TIN statistics: an exponential moving average that
 * restarts at scene cuts, so video does not flicker and cuts do not smear. */
#ifndef STYLIZE_SMOOTHING_H
#define STYLIZE_SMOOTHING_H

#include <stddef.h>

#include "model.h"

typedef struct sty_smoother {
    float *state; /* stats_size floats */
    int valid;
} sty_smoother;

/* How far the first instance-norm layer's means moved, in units of the
 * state's standard deviations (averaged over channels). */
double sty_stats_distance(const sty_model *m, const float *state, const float *cur);

/* Blend cur into the state (weight 1 - smooth for cur) or restart from cur
 * when there is no state, smoothing is off, or the distance exceeds
 * scene_cut (> 0). The state then holds the statistics to use. Returns 1
 * when it restarted. */
int sty_smoother_update(sty_smoother *s, const sty_model *m, const float *cur, float smooth, float scene_cut);

#endif
