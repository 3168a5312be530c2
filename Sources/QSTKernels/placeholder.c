#include "QSTKernels.h"
