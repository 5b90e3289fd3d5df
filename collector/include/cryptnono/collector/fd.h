// The collector uses the common owned-fd type.
#pragma once

#include "cryptnono/fd.h"
