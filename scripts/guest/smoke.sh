#!/bin/sh
# Guest job: load aether.ko and check what it creates, and that it carries no
# test code (no KUnit suites run, no TAINT_TEST); then load aether_test.ko,
# whose KUnit suites run at load, and collect their KTAP. Unload both and check
# the kernel log is clean.
. /aether/guest/lib.sh

TAINT_TEST=262144   # 1 << 18, TAINT_TEST in include/linux/panic.h
tainted_test() { [ $(( $(cat /proc/sys/kernel/tainted) & TAINT_TEST )) != 0 ]; }

t_check "emulated NVMe namespace /dev/nvme0n1 is present" test -b /dev/nvme0n1
t_refuse "the kernel is not test-tainted before any module loads" tainted_test
t_check "insmod aether.ko" insmod /aether/aether.ko
t_check "debugfs root /sys/kernel/debug/aether exists" test -d /sys/kernel/debug/aether
t_check "target type 'aether' is registered" sh -c 'dmsetup targets | grep -q "^aether "'
t_refuse "aether.ko ran no KUnit suite" sh -c 'ls -d /sys/kernel/debug/kunit/aether* >/dev/null 2>&1'
t_refuse "loading aether.ko does not set TAINT_TEST" tainted_test
t_check "insmod aether_test.ko next to aether.ko" insmod /aether/aether_test.ko
t_check "aether_test.ko registers its own target type 'aether_test'" sh -c 'dmsetup targets | grep -q "^aether_test "'
t_check "aether_test.ko's KUnit suites ran at load" sh -c 'ls -d /sys/kernel/debug/kunit/aether* >/dev/null'
t_check "loading aether_test.ko (a test module) sets TAINT_TEST" tainted_test
t_ktap 'aether*'
t_check "rmmod aether_test" rmmod aether_test
t_check "rmmod aether" rmmod aether
t_refuse "debugfs root is gone after rmmod" test -e /sys/kernel/debug/aether
t_refuse "module is gone after rmmod" grep -q '^aether ' /proc/modules
t_dmesg_clean "load/unload"
t_done
