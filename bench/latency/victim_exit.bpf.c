// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* When each victim of exec_latency begins to die, as the kernel sees it: the
 * sched_process_exit tracepoint fires in do_exit() as the process acts on its SIGKILL,
 * before its memory is torn down and before its parent can be woken. Only the children
 * of one process (parent_tgid, set before loading) are noted: pid -> CLOCK_BOOTTIME ns. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 parent_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} victim_exits SEC(".maps");

SEC("tp_btf/sched_process_exit")
int BPF_PROG(victim_exit, struct task_struct *p)
{
	__u64 now = bpf_ktime_get_boot_ns();
	__u32 pid = p->pid;

	/* The first thread of a victim to exit: victims are single-threaded. */
	if ((__u32)p->real_parent->tgid != parent_tgid || pid != (__u32)p->tgid)
		return 0;
	bpf_map_update_elem(&victim_exits, &pid, &now, BPF_NOEXIST);
	return 0;
}
