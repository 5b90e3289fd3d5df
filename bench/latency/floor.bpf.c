// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The latency floor: the least a BPF-fed user-space killer can do. One record per exec
 * (time, pid, the first 64 bytes of the file name), reserved in the ring buffer and
 * submitted with the default wake-up policy, as the collector's probe does (the kernel
 * wakes the consumer when it has caught up). No argv, no cgroup: everything the real
 * probe does beyond this is cost the floor does not pay. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "floor_event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} floor_events SEC(".maps");

/* Index 0: records lost because the ring buffer was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} floor_drops SEC(".maps");

SEC("tp_btf/sched_process_exec")
int BPF_PROG(floor_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct floor_event *e = bpf_ringbuf_reserve(&floor_events, sizeof(*e), 0);
	__u32 zero = 0;

	if (!e) {
		__u64 *d = bpf_map_lookup_elem(&floor_drops, &zero);
		if (d)
			(*d)++;
		return 0;
	}
	e->exec_boot_ns = bpf_ktime_get_boot_ns();
	e->pid = BPF_CORE_READ(p, pid);
	e->_pad0 = 0;
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename)) < 0)
		e->filename[0] = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
