#!/bin/busybox sh
# /init of the nested guest: print the marker the bench waits for, then check
# that the guest's timer interrupts come (a sleep needs them: without a timer
# it never returns), power off.
/bin/busybox echo "KVMRS-GUEST-UP $(/bin/busybox uname -m)"
/bin/busybox mkdir -p /proc
/bin/busybox mount -t proc proc /proc
a=$(/bin/busybox cut -d' ' -f1 /proc/uptime)
/bin/busybox sleep 0.3
/bin/busybox echo "KVMRS-GUEST-TIMER slept 0.3 s: uptime $a -> $(/bin/busybox cut -d' ' -f1 /proc/uptime)"
/bin/busybox poweroff -f
