/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Headers whose bindings aether generates itself, because the 6.12 kernel
 * crate does not bind them. Kbuild runs bindgen on this file; the allowlist
 * lives in bindgen_parameters next to it.
 */
#include <linux/device-mapper.h>
#include <linux/timekeeping.h>
#include <linux/mman.h>
#include <linux/bio.h>
#include <linux/shrinker.h>
#include <linux/delay.h>
#include <kunit/test.h>
#include <kunit/test-bug.h>
#include "../shim/aether_shim.h"

/* Macros with casts that bindgen cannot evaluate (as rust/bindings does). */
const fmode_t AETHER_CONST_FMODE_READ = FMODE_READ;
const fmode_t AETHER_CONST_FMODE_WRITE = FMODE_WRITE;
/* Speculative memory: never sleep, never reclaim, never warn. */
const gfp_t AETHER_CONST_GFP_SPECULATIVE = GFP_NOWAIT | __GFP_NOWARN;
const blk_status_t AETHER_CONST_BLK_STS_IOERR = BLK_STS_IOERR;
const blk_status_t AETHER_CONST_BLK_STS_AGAIN = BLK_STS_AGAIN;
