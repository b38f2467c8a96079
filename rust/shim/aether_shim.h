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
#include <linux/fs.h>
#include <linux/moduleparam.h>
#include <linux/percpu.h>
#include <linux/seq_file.h>

/* Static inlines and macros. */
void aether_bio_set_dev(struct bio *bio, struct block_device *bdev);
sector_t aether_bdev_nr_sectors(struct block_device *bdev);
void *aether_alloc_percpu(size_t size, size_t align);
void *aether_raw_cpu_ptr(void *ptr);
void *aether_per_cpu_ptr(void *ptr, int cpu);
int aether_next_possible_cpu(int cpu);
bool aether_ratelimit(void);

/* debugfs file operations; the callbacks are Rust (kernel_ext/debugfs.rs). */
extern const struct file_operations aether_debugfs_fops;
int aether_debugfs_open(struct inode *inode, struct file *file);
ssize_t aether_debugfs_write(struct file *file, const char __user *buf, size_t count, loff_t *ppos);

/* Module parameters; the callbacks are Rust (aether/params.rs). */
int aether_param_set(const char *val, const struct kernel_param *kp);
int aether_param_get(char *buffer, const struct kernel_param *kp);

#endif
