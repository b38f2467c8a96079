// SPDX-License-Identifier: GPL-2.0
/* The C shim of aether_test.ko: aether_shim.c without the dm-aether alias. */
#define AETHER_KUNIT 1
#include "aether_shim.c"
