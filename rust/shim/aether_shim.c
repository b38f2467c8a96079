// SPDX-License-Identifier: GPL-2.0
/*
 * aether's C shim: only what Rust cannot express on 6.12 (static inlines and
 * macros, C struct tables that must carry THIS_MODULE, module parameters,
 * trace events). No logic lives here; every callback is Rust.
 */
#include <linux/device-mapper.h>
#include <linux/module.h>
#include <linux/ratelimit.h>
#include "aether_shim.h"

#define CREATE_TRACE_POINTS
#include "aether_trace.h"

#ifndef AETHER_KUNIT
/* Lets device-mapper autoload the module for an "aether" table line. */
MODULE_ALIAS("dm-aether");
#else
/* aether_test.ko (see Kbuild): KUnit suites; taints like any test module. */
MODULE_INFO(test, "Y");
#endif

void aether_bio_set_dev(struct bio *bio, struct block_device *bdev)
{
	bio_set_dev(bio, bdev);
}

bool aether_bdev_nowait(struct block_device *bdev)
{
	return bdev_nowait(bdev);
}

void *aether_alloc_percpu(size_t size, size_t align)
{
	return (void __force *)__alloc_percpu(size, align);
}

void *aether_raw_cpu_ptr(void *ptr)
{
	return raw_cpu_ptr((void __percpu __force *)ptr);
}

void *aether_per_cpu_ptr(void *ptr, int cpu)
{
	return per_cpu_ptr((void __percpu __force *)ptr, cpu);
}

/* The next possible CPU after @cpu (-1 to start), or -1 past the last. */
int aether_next_possible_cpu(int cpu)
{
	unsigned int next = cpumask_next(cpu, cpu_possible_mask);

	return next < nr_cpu_ids ? (int)next : -1;
}

unsigned long aether_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void aether_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

bool aether_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags)
{
	return spin_trylock_irqsave(lock, *flags);
}

struct page *aether_alloc_page(gfp_t gfp)
{
	return alloc_page(gfp);
}

void aether_get_page(struct page *page)
{
	get_page(page);
}

void aether_put_page(struct page *page)
{
	put_page(page);
}

unsigned long aether_totalram_pages(void)
{
	return totalram_pages();
}

void aether_cond_resched(void)
{
	cond_resched();
}

/*
 * Copies cached pages into a bio's data, starting @offset bytes into
 * pages[0]. bio_for_each_segment is a macro, hence here. False if the bio
 * is longer than the pages.
 */
bool aether_bio_copy_from_pages(struct bio *bio, struct page *const *pages, unsigned int npages,
				unsigned int offset)
{
	struct bio_vec bv;
	struct bvec_iter iter;

	/* A cache block is one page; pages come from lowmem (no __GFP_HIGHMEM). */
	BUILD_BUG_ON(PAGE_SIZE != 4096);
	bio_for_each_segment(bv, bio, iter) {
		unsigned int done = 0;
		char *dst = bvec_kmap_local(&bv);

		while (done < bv.bv_len) {
			unsigned int n = min(bv.bv_len - done, (unsigned int)PAGE_SIZE - offset);

			if (!npages) {
				kunmap_local(dst);
				return false;
			}
			memcpy(dst + done, (char *)page_address(*pages) + offset, n);
			done += n;
			offset += n;
			if (offset == PAGE_SIZE) {
				offset = 0;
				pages++;
				npages--;
			}
		}
		kunmap_local(dst);
	}
	return true;
}

/* The dev_t of a mapped device (/dev/dm-N), which names it in trace events. */
u32 aether_md_devt(struct mapped_device *md)
{
	return disk_devt(dm_disk(md));
}

/*
 * Trace events: trace_aether_*() are static inlines, so Rust calls these.
 * Each body is one static-key branch, patched to a no-op while the event is
 * off: a disabled event costs the call and nothing else.
 */
void aether_trace_decision(u32 dev, u32 stream, u64 lba, u32 sectors, u32 prob, u32 depth,
			   u64 pf_sectors, bool prefetch)
{
	trace_aether_decision(dev, stream, lba, sectors, prob, depth, pf_sectors, prefetch);
}

void aether_trace_prefetch_issue(u32 dev, u64 lba, u32 sectors, int status)
{
	trace_aether_prefetch_issue(dev, lba, sectors, status);
}

void aether_trace_prefetch_done(u32 dev, u64 lba, u32 sectors, u8 status, u64 issued_ns)
{
	trace_aether_prefetch_done(dev, lba, sectors, status, issued_ns);
}

void aether_trace_hit(u32 dev, u64 lba, u32 sectors, u32 blocks)
{
	trace_aether_hit(dev, lba, sectors, blocks);
}

void aether_trace_late(u32 dev, u64 lba, u32 sectors, u32 blocks)
{
	trace_aether_late(dev, lba, sectors, blocks);
}

void aether_trace_invalidate(u32 dev, u64 lba, u32 sectors, u32 blocks)
{
	trace_aether_invalidate(dev, lba, sectors, blocks);
}

/*
 * aether's own log budget for refusals of user input (10 lines per 5 s), so it
 * neither floods the log nor shares printk_ratelimit()'s kernel-wide budget.
 */
static DEFINE_RATELIMIT_STATE(aether_refusals, 5 * HZ, 10);

bool aether_ratelimit(void)
{
	return __ratelimit(&aether_refusals);
}

/*
 * Static so that debugfs's proxy can still call ->release after a file is
 * removed; .owner pins the module while a file is open.
 */
const struct file_operations aether_debugfs_fops = {
	.owner = THIS_MODULE,
	.open = aether_debugfs_open,
	.read = seq_read,
	.write = aether_debugfs_write,
	.llseek = seq_lseek,
	.release = single_release,
};

/*
 * Defaults for newly created devices. 6.12's Rust module! has no parameters,
 * so they are declared here; parsing and storage are Rust's.
 */
static const struct kernel_param_ops aether_param_ops = {
	.set = aether_param_set,
	.get = aether_param_get,
};

#define AETHER_PARAM(name, desc)					\
	module_param_cb(name, &aether_param_ops, NULL, 0644);		\
	MODULE_PARM_DESC(name, desc)

AETHER_PARAM(phi, "Gate basis angle, radians in [-pi/2, pi/2] (default 0)");
AETHER_PARAM(epsilon, "Gate threshold on P(fetch), [0, 1] (default 0.625)");
AETHER_PARAM(lambda1, "Gate weight of the Chebyshev observable, [-16, 16] (default 2)");
AETHER_PARAM(lambda2, "Gate weight of the stride-majority observable, [-16, 16] (default 2)");
AETHER_PARAM(lambda3, "Gate weight of the steady-velocity observable, [-16, 16] (default 1)");
AETHER_PARAM(bias, "Gate bias, [-16, 16] (default -1.5)");
AETHER_PARAM(learning_rate, "Online learning rate for phi, [0, 1] (default 0.00390625)");
AETHER_PARAM(enabled, "Whether new devices run the gate (0/1, default 1)");
AETHER_PARAM(cache_mb, "Prefetch cache budget of new devices, MiB, up to half of RAM (default 64)");
