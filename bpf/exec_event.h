/* The ABI between bpf/exec.bpf.c and the collector: the ring-buffer record of one exec
 * and the per-CPU counters. This is the only header both sides include, so it holds
 * only fixed-width __u32/__u64 fields with explicit padding (no bool, no enum, no
 * pointers): the BPF target and x86-64 C++ must agree on every offset.
 *
 * A record is `struct exec_event` followed by `cgroup_len + filename_len + args_len`
 * bytes, in that order, with no separators and no NUL terminators:
 *
 *   [struct exec_event][cgroup name][filename][argv area (NUL-separated, as in the mm)]
 *
 * Records are variable length: the probe builds them in a per-CPU scratch slot
 * (`struct exec_scratch`) and copies only the used prefix into the ring buffer.
 */
#ifndef CRYPTNONO_BPF_EXEC_EVENT_H
#define CRYPTNONO_BPF_EXEC_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* TASK_COMM_LEN */
#define EXEC_COMM_LEN 16
/* cgroup path components kept, counted from the task's own cgroup upwards */
#define EXEC_CGROUP_DEPTH 4
/* one kernfs name read: NAME_MAX (255) + NUL */
#define EXEC_CGROUP_NAME_MAX 256
/* joined name: 4 names of at most 255 bytes + 3 '/' = 1023 < 1024 (a power of two, so
 * offsets into it can be masked for the verifier) */
#define EXEC_CGROUP_CAP 1024
/* bprm->filename read: PATH_MAX including the NUL (a power of two, as above) */
#define EXEC_FILENAME_CAP 4096
/* compile-time capacity of the argv copy: the largest --max-args-bytes accepted */
#define EXEC_ARGS_CAP (256u * 1024u)
/* the smallest --max-args-bytes accepted, and the default */
#define EXEC_ARGS_MIN (32u * 1024u)
#define EXEC_ARGS_DEFAULT (64u * 1024u)
/* bytes after the header in the scratch slot: every write stays below this bound
 * (cgroup < 1024, then filename < 4096, then argv <= EXEC_ARGS_CAP) */
#define EXEC_DATA_CAP (EXEC_CGROUP_CAP + EXEC_FILENAME_CAP + EXEC_ARGS_CAP)

/* flags */
#define EXEC_FLAG_ARGS_TRUNCATED 0x1u    /* args_len < args_full_len: cut at max_args */
#define EXEC_FLAG_ARGS_READ_ERROR 0x2u   /* reading the argv area failed; args_len is 0 */
#define EXEC_FLAG_FILENAME_CUT 0x4u      /* bprm->filename filled the whole read buffer */
#define EXEC_FLAG_FROM_TRACEPOINT 0x8u   /* produced by the classic-tracepoint fallback */
#define EXEC_FLAG_IN_KERNEL_RING 0x10u   /* written to the kernel ring (kernel_ring_on) */
#define EXEC_FLAG_WAKE 0x20u             /* the kernel ring's reader was woken for it (wake_filter.h) */

struct exec_event {
	__u64 start_boot_ns;  /* task->start_boottime: with pid, the identity of the process */
	__u64 exec_boot_ns;   /* bpf_ktime_get_boot_ns() when the tracepoint fired */
	__u64 cgroup_id;      /* bpf_get_current_cgroup_id(): the cgroup v2 id */
	__u32 pid;            /* task->pid (== tgid after exec) */
	__u32 tgid;
	__u32 ppid;           /* task->real_parent->tgid */
	__u32 uid;            /* real uid and gid */
	__u32 gid;
	__u32 mnt_ns;         /* mount and pid namespace inode numbers (0 if unreadable) */
	__u32 pid_ns;
	__u32 cpu;
	__u32 flags;          /* EXEC_FLAG_* */
	__u32 args_full_len;  /* mm->arg_end - mm->arg_start: the real length of argv */
	__u32 cgroup_len;     /* bytes of data holding the cgroup name */
	__u32 filename_len;   /* bytes of data holding the filename, after the cgroup name */
	__u32 args_len;       /* bytes of data holding argv, after the filename */
	__u32 _pad0;          /* always 0 */
	char comm[EXEC_COMM_LEN];
	/* The inode number pidfs gives the process (struct pid::ino, Linux 6.9+): what
	 * fstat() of a pidfd for it says, never reused while the system runs. 0 when the
	 * kernel has no pidfs. */
	__u64 pidfs_ino;
	/* The exec'd file as the kernel knows it: mm->exe_file's inode number and its
	 * superblock's device (s_dev, the kernel's MKDEV encoding: major << 20 | minor).
	 * 0 when unreadable. */
	__u64 exe_ino;
	__u32 exe_dev;
	__u32 _pad1;          /* always 0 */
};

/* The per-CPU scratch slot the probe builds a record in (too large for the stack). */
struct exec_scratch {
	struct exec_event ev;
	char data[EXEC_DATA_CAP];
};
/* The slot size needed for a given max_args: the map is created this size, so memory
 * follows --max-args-bytes instead of the compile-time capacity. */
#define EXEC_SLOT_BYTES(max_args) \
	(sizeof(struct exec_event) + EXEC_CGROUP_CAP + EXEC_FILENAME_CAP + (max_args))

/* Per-CPU counters: one array slot per possible CPU, read by user space through mmap.
 * Padded to a cache line so CPUs do not share one. */
struct exec_counters {
	__u64 events;            /* the probe ran */
	__u64 ringbuf_drops;     /* bpf_ringbuf_output failed (ring full): event lost */
	__u64 argv_read_errors;  /* reading argv from the new mm failed */
	__u64 truncated;         /* argv cut at max_args */
	__u64 kernel_ring_drops; /* the kernel ring (an enforcer's) was full: the collector's ring carries it */
	__u64 kernel_ring_woken; /* written to the kernel ring with a forced wake-up (EXEC_FLAG_WAKE) */
	__u64 _pad[2];
};

#ifdef __cplusplus
#define EXEC_STATIC_ASSERT static_assert
#else
#define EXEC_STATIC_ASSERT _Static_assert
#endif
EXEC_STATIC_ASSERT(sizeof(struct exec_event) == 120, "exec_event layout changed");
EXEC_STATIC_ASSERT(sizeof(struct exec_event) % 8 == 0, "exec_event must keep 8-byte alignment");
EXEC_STATIC_ASSERT(sizeof(struct exec_counters) == 64, "exec_counters layout changed");
EXEC_STATIC_ASSERT(sizeof(struct exec_scratch) == 120 + EXEC_DATA_CAP, "exec_scratch has padding");
EXEC_STATIC_ASSERT((EXEC_CGROUP_CAP & (EXEC_CGROUP_CAP - 1)) == 0, "masks need a power of two");
EXEC_STATIC_ASSERT((EXEC_FILENAME_CAP & (EXEC_FILENAME_CAP - 1)) == 0, "masks need a power of two");
EXEC_STATIC_ASSERT((EXEC_ARGS_CAP & (EXEC_ARGS_CAP - 1)) == 0, "masks need a power of two");
#undef EXEC_STATIC_ASSERT

#endif /* CRYPTNONO_BPF_EXEC_EVENT_H */
