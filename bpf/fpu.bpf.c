// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The monero probe: x86_fpu_regs_deactivated fires when a task's FPU registers are
 * saved at a context switch (switch_fpu() in arch/x86/include/asm/fpu/sched.h, called
 * from __switch_to() before `current` changes, so the current task is the one being
 * switched out and the fpu argument is its own). The saved MXCSR tells its SSE
 * rounding mode; RandomX keeps changing it, ordinary programs never leave the default.
 *
 * This runs at every context switch of every task that used the FPU, so the common
 * case (default rounding) is two loads and a branch: no map, no helper call. Only a
 * switch with a non-default mode counts towards the process's total in an LRU table,
 * and the one switch that makes it reach `threshold` writes one record (see
 * fpu_event.h). No policy here: user space decides what a record means.
 *
 * Two entry points share the body, as in exec.bpf.c: tp_btf (no tracefs needed) and
 * the classic tracepoint (its record carries the fpu pointer) as a fallback. The
 * count uses an atomic fetch-and-add (-mcpu=v3, Linux 5.12+), so exactly one CPU sees
 * the threshold crossed even when threads of one process switch out together.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "core_fixes.bpf.h"
#include "fpu_event.h"
#include "task.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* --fpu-threshold, set between open and load (FPU_THRESHOLD_MIN..FPU_THRESHOLD_MAX). */
const volatile __u32 threshold = FPU_THRESHOLD_DEFAULT;

/* Records are rare (one per offending process): a small ring. Sized by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} events SEC(".maps");

/* The identity a count belongs to: pids are recycled, (tgid, leader start time) is not. */
struct fpu_key {
	__u64 start_boot_ns;
	__u32 tgid;
	__u32 _pad;  /* always 0: hashed with the rest */
};

struct fpu_state {
	__u64 first_boot_ns;
	__u32 count;  /* stops at threshold */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FPU_TRACKED_MAX);
	__type(key, struct fpu_key);
	__type(value, struct fpu_state);
} tracked SEC(".maps");

/* Record under construction (~1.4 KiB: too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fpu_scratch);
} scratch SEC(".maps");

/* One slot per possible CPU (max_entries set at load), mmapable so the collector reads
 * it without privileges; see exec.bpf.c. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fpu_counters);
} counters SEC(".maps");

/* The rare path: a user task was switched out with a non-default rounding mode. */
static __noinline int count_nondefault(__u32 mxcsr, __u32 flags)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 zero = 0, seen;
	struct fpu_counters *cnt;
	struct fpu_scratch *buf;
	struct fpu_state *st;
	struct fpu_key key;
	__u64 now, size;

	/* switch_fpu() already skips kernel threads and io workers; this guards the other
	 * callers of the tracepoint, whatever a kernel adds. */
	if (BPF_CORE_READ(task, flags) & CRYPTNONO_PF_KTHREAD)
		return 0;
	cnt = bpf_map_lookup_elem(&counters, &cpu);
	if (!cnt)
		return 0;
	cnt->nondefault++;

	key.start_boot_ns = task_start_boottime(BPF_CORE_READ(task, group_leader));
	key.tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
	key._pad = 0;
	now = bpf_ktime_get_boot_ns();
	st = bpf_map_lookup_elem(&tracked, &key);
	if (!st) {
		struct fpu_state init = {.first_boot_ns = now, .count = 0, ._pad = 0};

		/* -EEXIST: another CPU inserted it first; its entry is as good. */
		bpf_map_update_elem(&tracked, &key, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&tracked, &key);
		if (!st) {
			cnt->map_errors++;
			return 0;
		}
	}
	/* Past the threshold: published already, nothing more to do. The read is racy,
	 * the fetch-and-add below is not: only the CPU that moves count from
	 * threshold - 1 to threshold writes the record. */
	if (st->count >= threshold)
		return 0;
	seen = __sync_fetch_and_add(&st->count, 1) + 1;
	if (seen != threshold)
		return 0;

	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return 0;
	fill_task_ident(&buf->ev.task, task, buf->data);
	buf->ev.first_boot_ns = st->first_boot_ns;
	buf->ev.event_boot_ns = now;
	buf->ev.mxcsr = mxcsr;
	buf->ev.count = seen;
	buf->ev.threshold = threshold;
	buf->ev.flags = flags;
	/* cgroup_len < TASK_CGROUP_CAP: the mask keeps it and bounds the copy. */
	size = sizeof(buf->ev) + (buf->ev.task.cgroup_len & (TASK_CGROUP_CAP - 1));
	if (bpf_ringbuf_output(&events, buf, size, 0))
		cnt->ringbuf_drops++;
	else
		cnt->published++;
	return 0;
}

SEC("tp_btf/x86_fpu_regs_deactivated")
int BPF_PROG(fpu_btf, struct fpu *fpu)
{
	__u32 mxcsr = fpu_mxcsr_btf(fpu);

	if (!(mxcsr & FPU_MXCSR_RC_MASK))
		return 0;
	return count_nondefault(mxcsr, 0);
}

SEC("tracepoint/x86_fpu/x86_fpu_regs_deactivated")
int fpu_tp(struct trace_event_raw_x86_fpu *ctx)
{
	__u32 mxcsr = fpu_mxcsr_probe(ctx->fpu);

	if (!(mxcsr & FPU_MXCSR_RC_MASK))
		return 0;
	return count_nondefault(mxcsr, FPU_FLAG_FROM_TRACEPOINT);
}
