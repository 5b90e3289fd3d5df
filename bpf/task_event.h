/* The part of the ABI shared by the fpu and connect probes (bpf/fpu.bpf.c,
 * bpf/connect.bpf.c) and the collector: who a record is about. Included through
 * fpu_event.h and connect_event.h, which embed `struct task_ident` first in their
 * records. Fixed-width fields only, explicit padding, as in exec_event.h.
 *
 * A record of either probe is its fixed struct followed by `task.cgroup_len` bytes of
 * cgroup name (no NUL), built in a per-CPU scratch slot and copied to the ring buffer
 * without the unused tail.
 */
#ifndef CRYPTNONO_BPF_TASK_EVENT_H
#define CRYPTNONO_BPF_TASK_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* TASK_COMM_LEN */
#define TASK_COMM_LEN_ 16
/* cgroup path components kept, counted from the task's own cgroup upwards; the same
 * bounds as the exec probe's (EXEC_CGROUP_*), so every topic names cgroups alike */
#define TASK_CGROUP_DEPTH 4
/* one kernfs name read: NAME_MAX (255) + NUL */
#define TASK_CGROUP_NAME_MAX 256
/* joined name: 4 * 255 + 3 '/' = 1023 < 1024, a power of two so offsets can be masked */
#define TASK_CGROUP_CAP 1024
/* scratch bytes the cgroup reader may touch: a masked offset (< 1024) plus one whole
 * name read (256) */
#define TASK_CGROUP_SCRATCH (TASK_CGROUP_CAP + TASK_CGROUP_NAME_MAX)

struct task_ident {
	__u64 start_boot_ns;  /* group_leader->start_boottime: with tgid, the process identity */
	__u64 cgroup_id;      /* bpf_get_current_cgroup_id(): the cgroup v2 id */
	__u32 pid;            /* the thread the probe fired for */
	__u32 tgid;
	__u32 ppid;           /* real_parent->tgid */
	__u32 uid;            /* real uid */
	__u32 cpu;
	__u32 cgroup_len;     /* bytes of cgroup name after the fixed record, < TASK_CGROUP_CAP */
	char comm[TASK_COMM_LEN_];  /* NUL-padded thread name */
};

#ifdef __cplusplus
#define TASK_STATIC_ASSERT static_assert
#else
#define TASK_STATIC_ASSERT _Static_assert
#endif
TASK_STATIC_ASSERT(sizeof(struct task_ident) == 56, "task_ident layout changed");
TASK_STATIC_ASSERT((TASK_CGROUP_CAP & (TASK_CGROUP_CAP - 1)) == 0, "masks need a power of two");
#undef TASK_STATIC_ASSERT

#endif /* CRYPTNONO_BPF_TASK_EVENT_H */
