#!/bin/sh
# PID 1 of aether's QEMU guest: mount the usual filesystems, run the job the host
# put in /aether/job.sh, report its exit status on the console, power off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /tmp /run /sys/kernel/debug /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
export PATH=/aether/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root
# No udev in the guest: dmsetup creates /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
ln -sf /proc/self/fd /dev/fd
# fio prints its progress line ("Jobs: 1 (f=1)...", no newline) when stdout is the console, which
# glues it to the next TAP line and hides that result (seen on the slow debug flavor). A wrapper
# that execs fio, so `fio ... &` then `kill $!` still reaches fio itself.
real_fio=$(command -v fio)
if [ -n "$real_fio" ]; then
    mkdir -p /aether/bin
    printf '#!/bin/sh\nexec %s --eta=never "$@"\n' "$real_fio" > /aether/bin/fio
    chmod +x /aether/bin/fio
fi
hostname aether-guest
# The job's TAP lines share ttyS0 with printk. A refusal's error line (aether's, dm core's) printed
# in the middle of a TAP line would hide a result (seen on the slow debug flavor), so only
# emergencies reach the console during the job (panic and oops raise the level themselves); the
# error-level lines are replayed as TAP comments after the job, and jobs check dmesg themselves.
dmesg -n 1
echo "@@AETHER-GUEST-START@@"
cd /aether && sh ./job.sh
rc=$?
dmesg -r | grep -E '^<[0-3]>' | sed 's/^<[0-3]>/# kmsg: /' | tail -200
echo "@@AETHER-EXIT=$rc@@"
sync
# QEMU runs with -no-reboot, so a reset ends it.
reboot -f
