#!/bin/bash
# Boots systemd as PID 1 in a throwaway container made of this machine's own root file system
# (read through an overlay whose writes go to a tmpfs), so a test can `systemctl start` an
# installed unit on a machine whose PID 1 is not systemd (CI's). Nothing the container does
# reaches the host but what is bound in with --bind.
#
#   container.sh start DIR [--bind PATH]...   boot; prints the container's PID 1 (host view)
#   container.sh run DIR CMD...               run CMD inside (stdin and stdout pass through)
#   container.sh stop DIR                     kill everything in it and unmount
#
# DIR is an empty directory of the caller's that holds the container's state.
set -euo pipefail

cg_parent=/sys/fs/cgroup/unified
[ -d "$cg_parent" ] && [ "$(stat -fc %T "$cg_parent")" = cgroup2fs ] || cg_parent=/sys/fs/cgroup

cmd=${1:?usage: container.sh start|run|stop DIR ...}
dir=$(realpath "${2:?usage: container.sh start|run|stop DIR ...}")
shift 2

case "$cmd" in
start)
    binds=()
    while [ $# -gt 0 ]; do
        case "$1" in
        --bind) binds+=("$2"); shift 2 ;;
        *) echo "container.sh: unknown option $1" >&2; exit 2 ;;
        esac
    done
    # A cgroup of its own, so the container's systemd sees it as its root and stop can kill it whole.
    cg="$cg_parent/repmilter-ci-$$"
    mkdir "$cg"
    echo "$cg" > "$dir/cgroup"
    printf '%s\n' "${binds[@]}" > "$dir/binds"
    # The child moves itself into the cgroup before unsharing, so the namespace's root is that cgroup.
    setsid bash -c 'echo $$ > "$1/cgroup.procs"; exec unshare --pid --fork --mount --cgroup --uts --ipc --propagation private "$2" inside "$3"' \
        _ "$cg" "$0" "$dir" </dev/null >"$dir/boot.log" 2>&1 &
    for _ in $(seq 1 600); do
        if [ -s "$dir/pid1" ] && [ -S "/proc/$(cat "$dir/pid1")/root/run/systemd/private" ]; then
            cat "$dir/pid1"
            exit 0
        fi
        sleep 0.1
    done
    echo "container.sh: systemd did not come up in 60 s; boot log:" >&2
    cat "$dir/boot.log" >&2
    exit 1
    ;;
inside)
    # Now PID 1's parent in fresh pid, mount and cgroup namespaces: build the root and exec systemd.
    root="$dir/root"
    mkdir -p "$dir/layer" "$root"
    mount -t tmpfs -o mode=0755 layer "$dir/layer"
    mkdir "$dir/layer/upper" "$dir/layer/work"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$dir/layer/upper,workdir=$dir/layer/work" "$root"
    mount -t proc proc "$root/proc"
    # Kernel settings stay the host's: systemd-sysctl skips a read-only /proc/sys, udev a read-only /sys.
    mount --bind "$root/proc/sys" "$root/proc/sys"
    mount -o remount,bind,ro "$root/proc/sys"
    mount -t sysfs -o ro sysfs "$root/sys"
    mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
    mount -t tmpfs -o mode=0755 tmpfs "$root/dev"
    for node in null zero full random urandom tty; do
        touch "$root/dev/$node"
        mount --bind "/dev/$node" "$root/dev/$node"
    done
    mkdir -p "$root/dev/pts" "$root/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
    ln -s pts/ptmx "$root/dev/ptmx"
    mount -t tmpfs tmpfs "$root/dev/shm"
    mount -t tmpfs -o mode=0755 tmpfs "$root/run"
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    while read -r path; do
        [ -n "$path" ] || continue
        mkdir -p "$root$path"
        mount --bind "$path" "$root$path"
    done < "$dir/binds"
    # The container boots into a target that wants nothing: tests start what they need.
    mkdir -p "$root/run/systemd/system"
    for unit in systemd-modules-load.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount; do
        ln -s /dev/null "$root/run/systemd/system/$unit"
    done
    printf '[Unit]\nDescription=container for repmilter tests\nRequires=sysinit.target\nAfter=sysinit.target\nAllowIsolate=yes\n' \
        > "$root/run/systemd/system/repmilter-ci.target"
    # unshare --fork made this shell the namespace's PID 1; exec keeps that. /proc is still the
    # host's here, so /proc/self/stat names this shell's pid as the host sees it.
    read -r host_pid _ < /proc/self/stat
    echo "$host_pid" > "$dir/pid1"
    exec chroot "$root" /usr/bin/env -i container=repmilter-ci \
        /lib/systemd/systemd --system --unit=repmilter-ci.target --log-target=console
    ;;
run)
    pid1=$(cat "$dir/pid1")
    exec nsenter --target "$pid1" --mount --pid --uts --ipc --cgroup --root --wd -- /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
    ;;
stop)
    cg=$(cat "$dir/cgroup" 2>/dev/null || true)
    if [ -n "$cg" ] && [ -d "$cg" ]; then
        echo 1 > "$cg/cgroup.kill" 2>/dev/null || xargs -r kill -9 < "$cg/cgroup.procs" || true
        for _ in $(seq 1 100); do
            rmdir "$cg" 2>/dev/null && break
            # The container's own sub-cgroups go first.
            find "$cg" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
            sleep 0.1
        done
    fi
    ;;
*)
    echo "container.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
