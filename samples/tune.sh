#!/bin/sh
# Tuning an aether device at run time: dmsetup messages and debugfs do the
# same thing through the same parser; use whichever is handier.
#
#   samples/tune.sh [NAME]        (default NAME: aether0; run as root)
#
# Refused input (garbage, out of range, unknown name) fails with EINVAL or
# ERANGE, logs one line in dmesg and changes nothing.
set -e
NAME=${1:-aether0}
DBG=/sys/kernel/debug/aether/$NAME

# Where the device is and what it was created with.
dmsetup table "$NAME"

# Read a parameter through a message ...
echo "epsilon (message): $(dmsetup message "$NAME" 0 get epsilon)"
# ... and set one. `--` stops dmsetup from reading a negative value as an option.
dmsetup message "$NAME" 0 -- set bias -1.25
dmsetup message "$NAME" 0 set epsilon 0.7

# The same through debugfs (mount it first if needed:
#   mount -t debugfs none /sys/kernel/debug). One whole value per write.
if [ -d "$DBG" ]; then
    echo 0.5 > "$DBG/lambda3"
    echo "lambda3 (debugfs): $(cat "$DBG/lambda3")"
    # A bad value is refused and the old one stays:
    if ! echo 1.5 > "$DBG/epsilon" 2>/dev/null; then
        echo "epsilon 1.5 refused; still $(cat "$DBG/epsilon")"
    fi
fi

# Turn the gate off and on (reads still pass through when it is off).
dmsetup message "$NAME" 0 set enabled 0
dmsetup message "$NAME" 0 set enabled 1

# Observe: counters as key=value, or key: value lines and the latency histogram.
dmsetup message "$NAME" 0 reset_stats
dd if=/dev/mapper/"$NAME" of=/dev/null bs=4k count=256 iflag=direct 2>/dev/null
dmsetup status "$NAME" | tr ' ' '\n' | grep -E '^(reads|gate_open|gate_closed|read_p50_us)='
[ -d "$DBG" ] && cat "$DBG/latency_histogram"

# Defaults for devices created from now on (module parameters).
[ -w /sys/module/aether/parameters/epsilon ] && echo 0.625 > /sys/module/aether/parameters/epsilon
exit 0
