/* BPF-side helpers every probe uses to say who an event is about: the cgroup v2 name
 * of a task and the task identity block of the fpu and connect records. Only for
 * *.bpf.c files (needs vmlinux.h and the BPF helpers).
 */
#ifndef CRYPTNONO_BPF_TASK_BPF_H
#define CRYPTNONO_BPF_TASK_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "core_fixes.bpf.h"
#include "task_event.h"

/* include/linux/sched.h */
#define CRYPTNONO_PF_KTHREAD 0x00200000

/* `btf` (a constant at every call): `task` is a BTF-typed pointer (a tp_btf argument, or
 * bpf_get_current_task_btf()), so the pointer chain is read with plain loads, which the
 * verifier turns into fault-tolerant ones, instead of a helper call per field. */

/* Writes the last TASK_CGROUP_DEPTH components of the task's cgroup v2 path
 * (task->cgroups->dfl_cgrp, the hierarchy bpf_get_current_cgroup_id() names),
 * "/"-joined, to data[0..]; returns the length, < TASK_CGROUP_CAP. Kernfs node names
 * are read leaf-first and written top-first. `data` must have TASK_CGROUP_SCRATCH
 * writable bytes: the verifier checks each write against that bound. */
static __always_inline __u32 read_cgroup_name(struct task_struct *task, char *data, const bool btf)
{
	struct kernfs_node *kn = btf ? task->cgroups->dfl_cgrp->kn : BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	const char *names[TASK_CGROUP_DEPTH] = {};
	int depth = 0;
	__u32 off = 0;

#pragma unroll
	for (int i = 0; i < TASK_CGROUP_DEPTH; i++) {
		struct kernfs_node *parent;

		if (!kn)
			break;
		parent = btf ? kernfs_parent_btf(kn) : kernfs_parent(kn);
		/* The root has no parent and an empty name: not a path component. */
		if (!parent)
			break;
		names[i] = btf ? kn->name : BPF_CORE_READ(kn, name);
		depth++;
		kn = parent;
	}

#pragma unroll
	for (int j = 0; j < TASK_CGROUP_DEPTH; j++) {
		int i = TASK_CGROUP_DEPTH - 1 - j;
		long n;

		if (i >= depth)
			continue;
		/* off <= 3 * 256 here (earlier names are <= 255 bytes plus '/'), so the
		 * TASK_CGROUP_CAP - 1 mask never changes it; it proves to the verifier that
		 * the write of up to TASK_CGROUP_NAME_MAX bytes stays in the slot. */
		n = bpf_probe_read_kernel_str(data + (off & (TASK_CGROUP_CAP - 1)), TASK_CGROUP_NAME_MAX, names[i]);
		if (n <= 1)
			continue;
		off += n - 1;
		data[off & (TASK_CGROUP_CAP - 1)] = '/';
		off++;
	}
	/* Drop the trailing '/'; the result is <= 4 * 255 + 3 = 1023. */
	return off ? (off - 1) & (TASK_CGROUP_CAP - 1) : 0;
}

/* Fills every field of `id` for `task`, which must be the current task (uid, comm and
 * cgroup id come from current-task helpers), and writes its cgroup name to `cgroup`
 * (TASK_CGROUP_SCRATCH bytes). The start time is the group leader's: the thread that
 * fired may be any thread of the process, and the process is what user space kills. */
static __always_inline void fill_task_ident(struct task_ident *id, struct task_struct *task, char *cgroup)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	id->start_boot_ns = task_start_boottime(BPF_CORE_READ(task, group_leader));
	id->cgroup_id = bpf_get_current_cgroup_id();
	id->pid = (__u32)pid_tgid;
	id->tgid = (__u32)(pid_tgid >> 32);
	id->ppid = BPF_CORE_READ(task, real_parent, tgid);
	id->uid = (__u32)bpf_get_current_uid_gid();
	id->cpu = bpf_get_smp_processor_id();
	/* Fills all 16 bytes (NUL-padded), or zeroes them on failure. */
	bpf_get_current_comm(id->comm, sizeof(id->comm));
	id->cgroup_len = read_cgroup_name(task, cgroup, false);
}

#endif /* CRYPTNONO_BPF_TASK_BPF_H */
