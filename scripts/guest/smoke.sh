#!/bin/sh
# Guest job: load aether.ko, check what it creates and that its KUnit suites
# ran, unload it, and check the kernel log is clean.
. /aether/guest/lib.sh

t_check "emulated NVMe namespace /dev/nvme0n1 is present" test -b /dev/nvme0n1
t_check "insmod aether.ko" insmod /aether/aether.ko
t_check "debugfs root /sys/kernel/debug/aether exists" test -d /sys/kernel/debug/aether
t_check "aether KUnit suites ran at load" sh -c 'ls -d /sys/kernel/debug/kunit/aether* >/dev/null'
t_ktap 'aether*'
t_check "rmmod aether" rmmod aether
t_refuse "debugfs root is gone after rmmod" test -e /sys/kernel/debug/aether
t_refuse "module is gone after rmmod" grep -q '^aether ' /proc/modules
t_dmesg_clean "load/unload"
t_done
