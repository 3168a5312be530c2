// The range of one 32-element group of x before an integer path rounds it to `levels` steps (the int16
// GEMV's 32767, the Q8 head's 127): its largest magnitude and the inverse step levels / max. The one
// rule every such rounding loop follows: a group holding Inf or NaN is reported (its caller stores
// codes 0 and scale NaN, so the products are NaN as on the float paths; fmaxf alone skips a NaN and
// lrintf(NaN) truncates to 0), and a group too small for levels / max to be finite gets inverse 0.
#ifndef QST_GROUP_RANGE_H
#define QST_GROUP_RANGE_H
#include <float.h>
#include <math.h>

// Elements v[0], v[stride], ... v[31 * stride]. Returns 0 if one of them is Inf or NaN, else 1 with
// *amax and *inv set (inv 0 for an all-zero group).
static inline int qst_group_range(const float *v, int stride, float levels, float *amax, float *inv) {
    float m = 0;
    int finite = 1;
    for (int e = 0; e < 32; e++) {
        const float a = fabsf(v[e * stride]);
        if (!(a <= FLT_MAX)) finite = 0;
        m = fmaxf(m, a);
    }
    if (!finite) return 0;
    float i = m > 0 ? levels / m : 0.0f;
    if (!(i <= FLT_MAX)) i = 0.0f;
    *amax = m;
    *inv = i;
    return 1;
}

#endif
