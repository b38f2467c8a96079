/* SPDX-License-Identifier: GPL-2.0 */
/*
 * aether's trace events (system "aether"), for tracefs, perf, trace-cmd and
 * bpftrace. Defined once, in aether_shim.c (CREATE_TRACE_POINTS); Rust emits
 * them through the aether_trace_* wrappers there (kernel_ext/trace.rs).
 *
 * dev is the aether (dm) device's dev_t, as in /dev/mapper/NAME's
 * major:minor; lba is a 512-byte sector inside the aether target, which is
 * also the lower device's sector (an aether table maps with no offset).
 * What each event counts, against `dmsetup status`:
 * Documentation/ABI/testing/tracefs-aether.
 */
#undef TRACE_SYSTEM
#ifdef AETHER_KUNIT
/* aether_test.ko (see Kbuild) gets its own system, so both modules can load. */
#define TRACE_SYSTEM aether_test
#else
#define TRACE_SYSTEM aether
#endif

#if !defined(_AETHER_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _AETHER_TRACE_H

#include <linux/blkdev.h>
#include <linux/tracepoint.h>

/* The gate's verdict on one demand read. */
TRACE_EVENT(aether_decision,
	TP_PROTO(u32 dev, u32 stream, u64 lba, u32 sectors, u32 prob, u32 depth, u64 pf_sectors,
		 bool prefetch),
	TP_ARGS(dev, stream, lba, sectors, prob, depth, pf_sectors, prefetch),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u32, stream)
		__field(u64, lba)
		__field(u32, sectors)
		__field(u32, prob)
		__field(u32, depth)
		__field(u64, pf_sectors)
		__field(bool, prefetch)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->stream = stream;
		__entry->lba = lba;
		__entry->sectors = sectors;
		__entry->prob = prob;
		__entry->depth = depth;
		__entry->pf_sectors = pf_sectors;
		__entry->prefetch = prefetch;
	),
	TP_printk("dev %d:%d stream %u lba %llu sectors %u P %u/65536 depth %u pf_sectors %llu prefetch %s",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->stream, __entry->lba, __entry->sectors,
		  __entry->prob, __entry->depth, __entry->pf_sectors, __entry->prefetch ? "yes" : "no")
);

/* One prefetch read handed to the lower device (status 0), or not (< 0). */
TRACE_EVENT(aether_prefetch_issue,
	TP_PROTO(u32 dev, u64 lba, u32 sectors, int status),
	TP_ARGS(dev, lba, sectors, status),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u64, lba)
		__field(u32, sectors)
		__field(int, status)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->lba = lba;
		__entry->sectors = sectors;
		__entry->status = status;
	),
	TP_printk("dev %d:%d lba %llu sectors %u status %d",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->lba, __entry->sectors, __entry->status)
);

/*
 * A prefetch read completed: status is its blk_status_t as an errno (0 = ok,
 * latency_ns counts from its issue (issued_ns, ktime_get_ns()); both are
 * worked out only while the event is on.
 */
TRACE_EVENT(aether_prefetch_done,
	TP_PROTO(u32 dev, u64 lba, u32 sectors, u8 status, u64 issued_ns),
	TP_ARGS(dev, lba, sectors, status, issued_ns),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u64, lba)
		__field(u32, sectors)
		__field(int, status)
		__field(u64, latency_ns)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->lba = lba;
		__entry->sectors = sectors;
		__entry->status = blk_status_to_errno((__force blk_status_t)status);
		__entry->latency_ns = ktime_get_ns() - issued_ns;
	),
	TP_printk("dev %d:%d lba %llu sectors %u status %d latency_ns %llu",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->lba, __entry->sectors, __entry->status,
		  __entry->latency_ns)
);

/* Demand reads and writes meeting the cache: lba and sectors are the bio's. */
DECLARE_EVENT_CLASS(aether_blocks,
	TP_PROTO(u32 dev, u64 lba, u32 sectors, u32 blocks),
	TP_ARGS(dev, lba, sectors, blocks),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u64, lba)
		__field(u32, sectors)
		__field(u32, blocks)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->lba = lba;
		__entry->sectors = sectors;
		__entry->blocks = blocks;
	),
	TP_printk("dev %d:%d lba %llu sectors %u blocks %u",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->lba, __entry->sectors, __entry->blocks)
);

/* A demand read served from RAM; blocks = 4 KiB blocks copied. */
DEFINE_EVENT(aether_blocks, aether_hit,
	TP_PROTO(u32 dev, u64 lba, u32 sectors, u32 blocks),
	TP_ARGS(dev, lba, sectors, blocks));

/* A demand read found prefetched blocks still in flight; blocks = newly late. */
DEFINE_EVENT(aether_blocks, aether_late,
	TP_PROTO(u32 dev, u64 lba, u32 sectors, u32 blocks),
	TP_ARGS(dev, lba, sectors, blocks));

/* A write, discard or write-zeroes dropped cached blocks; blocks = dropped. */
DEFINE_EVENT(aether_blocks, aether_invalidate,
	TP_PROTO(u32 dev, u64 lba, u32 sectors, u32 blocks),
	TP_ARGS(dev, lba, sectors, blocks));

#endif /* _AETHER_TRACE_H */

/* Found through -I$(src)/rust/shim (Kbuild). */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE aether_trace
#include <trace/define_trace.h>
