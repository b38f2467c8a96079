/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations shared by the C shim and the Rust side (via bindgen): wrappers
 * for static inlines and macros, tables the shim defines, and the Rust
 * functions those tables point to.
 */
#ifndef AETHER_SHIM_H
#define AETHER_SHIM_H

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/debugfs.h>
#include <linux/device-mapper.h>
#include <linux/fs.h>
#include <linux/moduleparam.h>
#include <linux/percpu.h>
#include <linux/seq_file.h>
#include <linux/shrinker.h>
#include <linux/spinlock.h>
#include <linux/mm.h>

/* Static inlines and macros. */
void aether_bio_set_dev(struct bio *bio, struct block_device *bdev);
bool aether_bdev_nowait(struct block_device *bdev);
void *aether_alloc_percpu(size_t size, size_t align);
void *aether_raw_cpu_ptr(void *ptr);
void *aether_per_cpu_ptr(void *ptr, int cpu);
int aether_next_possible_cpu(int cpu);
bool aether_ratelimit(void);
unsigned long aether_spin_lock_irqsave(spinlock_t *lock);
void aether_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);
bool aether_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags);
struct page *aether_alloc_page(gfp_t gfp);
void aether_get_page(struct page *page);
void aether_put_page(struct page *page);
unsigned long aether_totalram_pages(void);
void aether_cond_resched(void);
bool aether_bio_copy_from_pages(struct bio *bio, struct page *const *pages, unsigned int npages,
				unsigned int offset);

/* Trace events (aether_trace.h), one wrapper per event. */
u32 aether_md_devt(struct mapped_device *md);
void aether_trace_decision(u32 dev, u32 stream, u64 lba, u32 sectors, u32 prob, u32 depth,
			   u64 pf_sectors, bool prefetch);
void aether_trace_prefetch_issue(u32 dev, u64 lba, u32 sectors, int status);
void aether_trace_prefetch_done(u32 dev, u64 lba, u32 sectors, u8 status, u64 issued_ns);
void aether_trace_hit(u32 dev, u64 lba, u32 sectors, u32 blocks);
void aether_trace_late(u32 dev, u64 lba, u32 sectors, u32 blocks);
void aether_trace_invalidate(u32 dev, u64 lba, u32 sectors, u32 blocks);

/* debugfs file operations; the callbacks are Rust (kernel_ext/debugfs.rs). */
extern const struct file_operations aether_debugfs_fops;
int aether_debugfs_open(struct inode *inode, struct file *file);
ssize_t aether_debugfs_write(struct file *file, const char __user *buf, size_t count, loff_t *ppos);

/* Module parameters; the callbacks are Rust (aether/params.rs). */
int aether_param_set(const char *val, const struct kernel_param *kp);
int aether_param_get(char *buffer, const struct kernel_param *kp);

#endif
