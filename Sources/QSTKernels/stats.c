#include "stats.h"
#include <math.h>

// Runs of 512 keep float partial sums accurate; the compiler vectorizes the inner loop
// (16 independent lanes) for whatever vector width it targets.
void qst_error_sums(const float *x, const float *y, size_t n, double *signal, double *error, double *max_abs) {
    double sig = 0, err = 0;
    float mx = 0;
    size_t i = 0;
    while (i < n) {
        size_t end = i + 512 < n ? i + 512 : n;
        float s[16] = {0}, e[16] = {0}, m[16] = {0};
        for (; i + 16 <= end; i += 16) {
            for (int l = 0; l < 16; l++) {
                float a = x[i + l], d = a - y[i + l];
                s[l] += a * a;
                e[l] += d * d;
                float ad = fabsf(d);
                m[l] = ad > m[l] ? ad : m[l];
            }
        }
        double ss = 0, ee = 0;
        for (int l = 0; l < 16; l++) { ss += s[l]; ee += e[l]; mx = m[l] > mx ? m[l] : mx; }
        for (; i < end; i++) {
            double a = x[i], d = a - (double)y[i];
            ss += a * a; ee += d * d;
            if (fabs(d) > mx) mx = (float)fabs(d);
        }
        sig += ss; err += ee;
    }
    *signal = sig; *error = err; *max_abs = mx;
}
