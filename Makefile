# SPDX-License-Identifier: GPL-2.0
# aether: user-facing entry points. `Kbuild` next to this file describes aether.ko.
#
#   make            build the test kernel if needed, then aether.ko
#   make demo       boot QEMU with an emulated NVMe and show aether working
#   make test       host tests, KUnit suites and integration tests in QEMU, on the default
#                   and the debug (KASAN, lockdep, kmemleak) kernel flavors
#   make soak       long hardening runs: 100 teardown cycles per flavor, concurrency soak
#   make bench      fio: raw NVMe, Linux readahead, aether (gate off), aether in one QEMU run (ratios)
#   make bench-contention  8 fio jobs on 4 vCPUs: aether vs dm-linear vs gate off
#   make bench-cost  the same random reads on a null namespace under QEMU -icount: instructions per I/O
#   make bench-vfio kernel io_uring (irq, polled) vs aether-part's VFIO polled reads (ratios)
#   make module KDIR=/path/to/6.12/build   build against your own kernel

KDIR ?=

.PHONY: all module setup kernel kernel-image kernel-dir test soak demo bench bench-contention bench-cost bench-vfio clean

all: module

module:
	@scripts/build-module.sh $(KDIR)

setup:
	@scripts/setup.sh

kernel:
	@scripts/build-kernel.sh

kernel-image:
	@scripts/build-kernel.sh --image

kernel-dir:
	@scripts/build-kernel.sh --dir

test:
	@scripts/test.sh

soak:
	@scripts/soak.sh

demo:
	@scripts/demo.sh

bench:
	@scripts/bench.sh

bench-contention:
	@scripts/bench.sh --contention

bench-cost:
	@scripts/bench.sh --cost

bench-vfio:
	@scripts/bench-vfio.sh

clean:
	rm -rf target aether.ko *.o *.mod *.mod.c .*.cmd modules.order Module.symvers \
	    rust/aether/*.o rust/aether/.*.cmd rust/shim/*.o rust/shim/.*.cmd \
	    build/kernel_ext rust/kernel_ext/bindings_generated.rs rust/kernel_ext/.*.cmd
