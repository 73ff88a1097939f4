"""The sandbox's seccomp filter: system calls no candidate program or scorer needs, refused with EPERM.

Built with libseccomp (PyPI `pyseccomp`, ctypes over the system's libseccomp2) and handed to bubblewrap as compiled
BPF (`bwrap --seccomp FD`), which installs it just before it runs the sandboxed command; every process started in the
sandbox inherits it and cannot remove it. libseccomp's filter kills a process that calls in through another
architecture's syscall table (x86_64's int 0x80 into the i386 numbers), so the denials cannot be dodged that way.

What is refused, and why (the namespaces, rlimits and read-only file system of tasks/verify/sandbox_host.py hold
without it; this closes what they leave open):
- tracing other processes: `ptrace` (the sandbox's pid 1 is bwrap's own process, of the same uid),
  `process_vm_readv/writev`, `pidfd_getfd`, `kcmp`;
- memory the address-space limit does not count: `memfd_create` / `memfd_secret` (an fd's pages are not part of
  RLIMIT_AS: 880 MB held under a 512 MB limit), System V shared memory, message queues and semaphores (they also
  outlive the process that made them, a way to leave state for a later verdict);
- kernel attack surface no program here needs: `bpf`, `perf_event_open`, `userfaultfd`, `io_uring_*` (its requests
  are not seen by seccomp), the keyring (`keyctl`, `add_key`, `request_key`), kernel modules, kexec, swap, reboot,
  accounting, `syslog`, `iopl`/`ioperm`, file handles (`open_by_handle_at`), `fanotify_init`;
- the mount table and namespaces: `mount`, `umount2`, `pivot_root`, the new mount API (`open_tree`, `move_mount`,
  `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr`), `chroot`, `setns`, `unshare`.
"""

from __future__ import annotations

import errno
import os
from functools import lru_cache

DENIED_SYSCALLS: tuple[str, ...] = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "memfd_create", "memfd_secret", "shmget", "shmat", "shmctl", "msgget", "semget",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "swapon", "swapoff", "reboot", "acct", "syslog", "iopl", "ioperm", "name_to_handle_at",
    "open_by_handle_at", "fanotify_init", "lookup_dcookie", "quotactl", "uselib", "vhangup",
    "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "chroot", "setns", "unshare",
)


@lru_cache(maxsize=1)
def filter_bpf() -> bytes:
    """The compiled filter (BPF program bytes). Raises RuntimeError when libseccomp is not usable here."""
    try:
        import pyseccomp
    except (ImportError, OSError, RuntimeError) as error:  # pyseccomp loads libseccomp.so.2 at import
        raise RuntimeError(f"libseccomp unavailable ({error}): pip install pyseccomp, apt install libseccomp2") \
            from None
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:  # every name must resolve: an unknown one would leave a hole silently
        rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
    read, write = os.pipe()
    try:
        with os.fdopen(write, "wb", closefd=True) as sink:
            rules.export_bpf(sink)
        return os.read(read, 1 << 20)
    finally:
        os.close(read)


def filter_fd() -> int:
    """A fresh fd holding the compiled filter, positioned at its start, for `bwrap --seccomp FD` (bwrap reads it to
    the end, so each run gets its own). The caller closes it."""
    fd = os.memfd_create("cotforge-seccomp", 0)
    os.write(fd, filter_bpf())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
