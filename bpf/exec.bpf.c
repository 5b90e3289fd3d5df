// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The exec probe: one record per successful exec, taken at sched_process_exec, when
 * the new program's mm is installed and its argument area is final. Reading argv
 * there, as one bounded copy of mm->arg_start..arg_end, sees exactly what the new
 * program was started with; walking argv pointers at syscall entry would race with
 * other threads rewriting them, and would see nothing for failed execs anyway.
 *
 * No policy here: the probe records and counts; user space decides.
 *
 * Two entry points share the body: tp_btf (BTF-typed arguments, no tracefs needed)
 * and the classic tracepoint as a fallback for kernels where tp_btf does not load.
 * User space turns autoload off for the one it does not use.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "core_fixes.bpf.h"
#include "exec_event.h"
#include "task.bpf.h"
#include "wake_filter.h"

/* Parts of the probe that bench/latency/probe_parts.cpp times one against another by
 * compiling this file with some of them left out (-DEXEC_PARTS=...). The collector's
 * build leaves EXEC_PARTS undefined: every part, always. */
#define EXEC_PART_IDS 0x1u      /* start time, ppid, namespaces, pidfs inode, exe file */
#define EXEC_PART_CGROUP 0x2u   /* the cgroup path walk */
#define EXEC_PART_FILENAME 0x4u /* bprm->filename */
#define EXEC_PART_ARGV 0x8u     /* the argument area */
#define EXEC_PART_KRING 0x10u   /* the copy to the kernel ring (when held) */
#define EXEC_PART_EVENTS 0x20u  /* the copy to the collector's ring */
#define EXEC_PART_TWO_RINGS 0x40u /* bench only: a held exec to both rings, as before 2026-11-29 */
#define EXEC_PART_WAKE 0x80u    /* the wake filter (wake_filter.h); without it every exec wakes */
/* bench only, with EXEC_PART_WAKE: where the filter's time goes */
#define EXEC_PART_WAKE_NO_SCAN 0x100u /* reads the filter's header, looks nothing up */
#define EXEC_PART_WAKE_NO_BITS 0x200u /* runs the loops, reads no bit of the filter */
#ifndef EXEC_PARTS
#define EXEC_PARTS 0xbfu
#endif
#define EXEC_HAS(part) ((EXEC_PARTS & (part)) != 0)

/* The cgroup reader (task.bpf.h) writes up to TASK_CGROUP_SCRATCH bytes at the start of
 * data and returns < TASK_CGROUP_CAP; the filename offset below relies on both. */
_Static_assert(EXEC_CGROUP_CAP == TASK_CGROUP_CAP, "one cgroup bound for every probe");
_Static_assert(EXEC_DATA_CAP >= TASK_CGROUP_SCRATCH, "cgroup reads stay in the slot");

/* GPL-compatible: bpf_probe_read_* and bpf_get_current_task are GPL-only helpers. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Load-time bound on the argv bytes copied per event (--max-args-bytes). User space
 * sets it between open and load, within [EXEC_ARGS_MIN, EXEC_ARGS_CAP]; the verifier
 * sees it as a constant because .rodata is frozen before the programs load. */
const volatile __u32 max_args = EXEC_ARGS_DEFAULT;

/* Sized at load from --ringbuf-bytes (a power of two, as the kernel requires). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* The kernel ring: a second ring buffer that the collector hands to one enforcer (its
 * fd, over the direct socket: common/include/cryptnono/direct.h), so that enforcer hears
 * of an exec with one wake-up, as a bare ring-buffer consumer does, instead of waiting
 * for the collector to read, encode and forward it. Written only while an enforcer holds
 * it (kernel_ring_on, set by the collector through the mmap of .bss). Sized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} kernel_ring SEC(".maps");

/* 1 while an enforcer holds the kernel ring. Written by user space only. */
__u32 kernel_ring_on = 0;

/* The kernel ring holder's wake filter (wake_filter.h): which execs wake it at once.
 * Mmapable so the holder writes it after dropping every capability (its fd rides with the
 * ring's); the collector turns it off before each grant. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wake_filter);
} wake_filter SEC(".maps");

/* One scratch slot per possible CPU (max_entries set at load). A plain array indexed by
 * the CPU rather than a PERCPU_ARRAY: per-CPU map values are limited to 32 KiB
 * (PCPU_MIN_UNIT_SIZE) and a slot can reach ~261 KiB. Programs of this kind do not nest
 * on one CPU (tracing programs run with migration disabled and recursion protection),
 * so a slot is never shared by two running programs.
 *
 * The value size is declared without a BTF type so user space can shrink it at load
 * to what max_args needs (EXEC_SLOT_BYTES(max_args)): the verifier checks every write
 * against the real value size, using max_args as the constant it is in frozen .rodata. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct exec_scratch));
} scratch SEC(".maps");

/* One counter slot per possible CPU (max_entries set at load), mmapable so the
 * collector reads it after dropping every capability (map lookups through bpf() need
 * CAP_BPF on kernels that restrict unprivileged bpf). Plain increments suffice: only
 * programs running on that CPU write a slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_counters);
} counters SEC(".maps");

/* Inode number of the pid namespace the task is in (what /proc/<pid>/ns/pid names):
 * thread_pid->numbers[thread_pid->level].ns. */
static __always_inline __u32 task_pid_ns_inum(struct task_struct *task, const bool btf)
{
	struct pid *pid = btf ? task->thread_pid : BPF_CORE_READ(task, thread_pid);
	unsigned int level;
	struct upid upid = {};
	const char *numbers;

	if (!pid)
		return 0;
	level = btf ? pid->level : BPF_CORE_READ(pid, level);
	numbers = (const char *)pid + bpf_core_field_offset(struct pid, numbers);
	/* level <= MAX_PID_NS_LEVEL (32); the mask only bounds a corrupt read. */
	if (bpf_probe_read_kernel(&upid, sizeof(upid), numbers + (__u64)(level & 63) * sizeof(struct upid)))
		return 0;
	/* upid is on the stack now, not a BTF-typed pointer: a helper read either way. */
	return BPF_CORE_READ(upid.ns, ns.inum);
}

/* The pidfs inode number of the task's struct pid (see exec_event.h), 0 before pidfs.
 * At sched_process_exec the task is its thread group's leader (de_thread has run), so
 * this names the process, the same struct pid pidfd_open(tgid) finds. */
static __always_inline __u64 task_pidfs_ino(struct task_struct *task, const bool btf)
{
	struct pid *pid;

	if (!bpf_core_field_exists(struct pid, ino))
		return 0;
	pid = btf ? task->thread_pid : BPF_CORE_READ(task, thread_pid);
	if (!pid)
		return 0;
	return btf ? pid->ino : BPF_CORE_READ(pid, ino);
}

/* One wake filter lookup (bpf_loop callback): the word at the i-th stride offset of the
 * scanned bytes. Sets `hit` and stops at a byte >= 0x80 or a gram the filter has. */
struct wake_scan {
	const unsigned char *text; /* the filename, or the arguments after argv[0], in the slot */
	const struct wake_filter *filter;
	__u32 len;
	__u32 gram;
	__u32 stride;
	__u32 log2;
	__u32 hit;
};

static long wake_scan_step(__u64 i, void *ctx)
{
	struct wake_scan *s = ctx;
	/* i < WAKE_SCAN_CHECKS and stride <= WAKE_STRIDE_MAX: off < 4096, which the mask
	 * tells the verifier; the 8-byte read then stays in the slot (see wake_now). */
	__u32 off = ((__u32)i * s->stride) & (WAKE_SCAN_CHECKS * WAKE_STRIDE_MAX - 1);
	__u64 w, g;
	__u32 b1, b2;

	if (off >= s->len)
		return 1;
	w = *(const __u64 *)(s->text + off);
	/* Bytes past the end are the next part's or the previous exec's: not looked at. */
	if (s->len - off < 8)
		w = wake_low_bytes(w, s->len - off);
	if (w & 0x8080808080808080ULL) {
		s->hit = 1;
		return 1;
	}
	if (s->len - off < s->gram || EXEC_HAS(EXEC_PART_WAKE_NO_BITS))
		return 0;
	g = wake_low_bytes(wake_lower_word(w), s->gram);
	/* log2 <= WAKE_FILTER_BITS_LOG2 (checked by wake_now): the masks change nothing but
	 * tell the verifier the words read are in the map. The second word is read only when
	 * the first bit is set: one cache line per lookup, mostly. */
	b1 = wake_bit1(g, s->log2) & ((1u << WAKE_FILTER_BITS_LOG2) - 1);
	if (!((s->filter->bits[b1 >> 6] >> (b1 & 63)) & 1))
		return 0;
	b2 = wake_bit2(g, s->log2) & ((1u << WAKE_FILTER_BITS_LOG2) - 1);
	if ((s->filter->bits[b2 >> 6] >> (b2 & 63)) & 1) {
		s->hit = 1;
		return 1;
	}
	return 0;
}

/* Finds the NUL that ends argv[0] (bpf_loop callback): 8 bytes per step. */
struct nul_scan {
	const unsigned char *text;
	__u32 len;
	__u32 at; /* the NUL's offset; len when there is none */
};

static long nul_scan_step(__u64 i, void *ctx)
{
	struct nul_scan *s = ctx;
	__u32 off = ((__u32)i * 8) & (WAKE_SCAN_CHECKS * WAKE_STRIDE_MAX - 1);
	__u64 w;
	int k;

	if (off >= s->len)
		return 1;
	w = *(const __u64 *)(s->text + off);
	for (k = 0; k < 8; k++) {
		if (off + k >= s->len)
			return 1;
		if (((w >> (8 * k)) & 0xff) == 0) {
			s->at = off + k;
			return 1;
		}
	}
	return 0;
}

/* What wake_now() says. */
#define WAKE_NOT 0    /* nothing banned can be in it: the batch timer will do */
#define WAKE_NOW 1    /* it might hold a banned string: wake the holder whatever is queued */
#define WAKE_NO_FILTER 2 /* the filter is off: every exec is judged at once, as before it */

/* Whether the kernel ring's reader must judge this exec at once (wake_filter.h): yes unless
 * the holder's filter is on, was stable throughout, and none of the bytes it joins into its
 * command line (the `fn_len` bytes of filename at `fn`, then the arguments after argv[0] in
 * the `args_len` bytes that follow; all of argv without a filename) might be part of a
 * banned string. */
static __always_inline int wake_now(const unsigned char *fn, __u32 fn_len, __u32 args_len, __u32 flags)
{
	__u32 zero = 0, seq, checks;
	const struct wake_filter *f;
	struct wake_scan scan = {};
	struct nul_scan nul = {};
	const unsigned char *args = fn + fn_len;
	__u32 skip = 0;

	if (!EXEC_HAS(EXEC_PART_WAKE))
		return WAKE_NO_FILTER;
	f = bpf_map_lookup_elem(&wake_filter, &zero);
	if (!f)
		return WAKE_NO_FILTER;
	seq = *(volatile const __u32 *)&f->seq;
	if (seq & 1)
		return WAKE_NOW;
	if (!*(volatile const __u32 *)&f->on)
		return WAKE_NO_FILTER;
	if (flags & (EXEC_FLAG_ARGS_TRUNCATED | EXEC_FLAG_ARGS_READ_ERROR | EXEC_FLAG_FILENAME_CUT))
		return WAKE_NOW;
	scan.gram = *(volatile const __u32 *)&f->gram;
	scan.stride = *(volatile const __u32 *)&f->stride;
	scan.log2 = *(volatile const __u32 *)&f->bits_log2;
	if (scan.gram < WAKE_GRAM_MIN || scan.gram > WAKE_GRAM_MAX || scan.stride < 1 || scan.stride > WAKE_STRIDE_MAX ||
	    scan.stride > scan.gram || scan.log2 < WAKE_FILTER_BITS_LOG2_MIN || scan.log2 > WAKE_FILTER_BITS_LOG2)
		return WAKE_NOW;
	if (EXEC_HAS(EXEC_PART_WAKE_NO_SCAN))
		return WAKE_NOT;
	/* With a filename, argv[0] is not part of the command line: skipped. */
	if (fn_len > 0 && args_len > 0) {
		if (args_len > WAKE_SCAN_CHECKS * WAKE_STRIDE_MAX)
			return WAKE_NOW;
		nul.text = args;
		nul.len = args_len;
		nul.at = args_len;
		bpf_loop((args_len + 7) / 8, nul_scan_step, &nul, 0);
		skip = nul.at < args_len ? nul.at + 1 : args_len;
	}
	skip &= WAKE_SCAN_CHECKS * WAKE_STRIDE_MAX - 1;
	checks = (fn_len + scan.stride - 1) / scan.stride + (args_len - skip + scan.stride - 1) / scan.stride;
	if (checks > WAKE_SCAN_CHECKS)
		return WAKE_NOW;
	scan.filter = f;
	scan.text = fn;
	scan.len = fn_len;
	bpf_loop((fn_len + scan.stride - 1) / scan.stride, wake_scan_step, &scan, 0);
	if (!scan.hit) {
		scan.text = args + skip;
		scan.len = args_len - skip;
		bpf_loop((scan.len + scan.stride - 1) / scan.stride, wake_scan_step, &scan, 0);
	}
	/* The lookups above are loads, and loads are not reordered with loads on the
	 * architectures this builds for; the barrier keeps the compiler from it. */
	asm volatile("" ::: "memory");
	if (*(volatile const __u32 *)&f->seq != seq)
		return WAKE_NOW;
	return scan.hit ? WAKE_NOW : WAKE_NOT;
}

/* A field (chain) of a task-side pointer: a plain load when `btf` (see read_cgroup_name
 * in task.bpf.h), else a CO-RE helper read. `btf` is a constant in both programs, so the
 * other arm is compiled out before the verifier sees it. */
#define EXEC_READ(btf, direct, ...) ((btf) ? (direct) : BPF_CORE_READ(__VA_ARGS__))

static __always_inline int handle_exec(struct task_struct *task, const char *filename, __u32 flags, const bool btf)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct exec_counters *cnt = bpf_map_lookup_elem(&counters, &cpu);
	struct exec_scratch *buf = bpf_map_lookup_elem(&scratch, &cpu);
	struct exec_event *ev;
	struct mm_struct *mm;
	unsigned long arg_start, arg_end;
	__u64 full, want, limit, uid_gid, size;
	__u32 cg_len, fn_len = 0, args_len = 0;
	long n;

	/* Both maps have one slot per possible CPU, so these lookups only fail if user
	 * space sized them wrongly; there is nowhere to count that. */
	if (!cnt || !buf)
		return 0;
	cnt->events++;
	ev = &buf->ev;

	ev->exec_boot_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->pid = EXEC_READ(btf, task->pid, task, pid);
	ev->tgid = EXEC_READ(btf, task->tgid, task, tgid);
	uid_gid = bpf_get_current_uid_gid();
	ev->uid = (__u32)uid_gid;
	ev->gid = (__u32)(uid_gid >> 32);
	ev->cpu = cpu;
	ev->_pad0 = 0;
	/* The new mm, read once: its exe_file (set by this exec, begin_new_exec) here, its
	 * argument area below. */
	mm = EXEC_READ(btf, task->mm, task, mm);
	if (EXEC_HAS(EXEC_PART_IDS)) {
		struct inode *exe = mm ? EXEC_READ(btf, mm->exe_file->f_inode, mm, exe_file, f_inode) : NULL;

		ev->start_boot_ns = btf ? task_start_boottime_btf(task) : task_start_boottime(task);
		ev->ppid = EXEC_READ(btf, task->real_parent->tgid, task, real_parent, tgid);
		ev->mnt_ns = EXEC_READ(btf, task->nsproxy->mnt_ns->ns.inum, task, nsproxy, mnt_ns, ns.inum);
		ev->pid_ns = task_pid_ns_inum(task, btf);
		ev->pidfs_ino = task_pidfs_ino(task, btf);
		ev->exe_ino = exe ? EXEC_READ(btf, exe->i_ino, exe, i_ino) : 0;
		ev->exe_dev = exe ? EXEC_READ(btf, exe->i_sb->s_dev, exe, i_sb, s_dev) : 0;
		ev->_pad1 = 0;
	}
	/* Fills all EXEC_COMM_LEN bytes (NUL-padded), or zeroes them on failure. */
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));

	cg_len = EXEC_HAS(EXEC_PART_CGROUP) ? read_cgroup_name(task, buf->data, btf) : 0;

	/* filename follows the cgroup name: cg_len < EXEC_CGROUP_CAP. */
	n = EXEC_HAS(EXEC_PART_FILENAME) ? bpf_probe_read_kernel_str(buf->data + cg_len, EXEC_FILENAME_CAP, filename) : 0;
	if (n > 0) {
		/* n counts the NUL and is <= EXEC_FILENAME_CAP, so the mask keeps n - 1. */
		fn_len = (n - 1) & (EXEC_FILENAME_CAP - 1);
		if (n == EXEC_FILENAME_CAP)
			flags |= EXEC_FLAG_FILENAME_CUT;
	}

	/* argv: one copy of the new mm's argument area, cut at max_args. */
	if (btf && !mm) {
		arg_start = arg_end = 0;
	} else {
		arg_start = EXEC_READ(btf, mm->arg_start, mm, arg_start);
		arg_end = EXEC_READ(btf, mm->arg_end, mm, arg_end);
	}
	full = arg_end > arg_start ? arg_end - arg_start : 0;
	limit = max_args < EXEC_ARGS_CAP ? max_args : EXEC_ARGS_CAP;
	want = full;
	if (want > limit) {
		want = limit;
		flags |= EXEC_FLAG_ARGS_TRUNCATED;
	}
	if (want > 0 && EXEC_HAS(EXEC_PART_ARGV)) {
		/* 1 <= want <= EXEC_ARGS_CAP, so this leaves it unchanged and tells the
		 * verifier the copy is at most EXEC_ARGS_CAP bytes, which fits after
		 * cg_len (< EXEC_CGROUP_CAP) + fn_len (< EXEC_FILENAME_CAP). */
		__u32 len = ((want - 1) & (EXEC_ARGS_CAP - 1)) + 1;

		if (bpf_probe_read_user(buf->data + cg_len + fn_len, len, (const void *)arg_start) == 0) {
			args_len = len;
		} else {
			flags |= EXEC_FLAG_ARGS_READ_ERROR | EXEC_FLAG_ARGS_TRUNCATED;
			cnt->argv_read_errors++;
		}
	}
	if (flags & EXEC_FLAG_ARGS_TRUNCATED)
		cnt->truncated++;

	ev->args_full_len = full > 0xffffffffULL ? 0xffffffffU : (__u32)full;
	ev->cgroup_len = cg_len;
	ev->filename_len = fn_len;
	ev->args_len = args_len;

	/* <= sizeof(struct exec_scratch): see EXEC_DATA_CAP. Default flags: the kernel
	 * wakes the consumer only when it has caught up, so bursts cost one wake-up. */
	size = sizeof(*ev) + cg_len + fn_len + args_len;
	/* While an enforcer holds the kernel ring, the exec goes there alone: its reader is
	 * the one waiting to kill, and the collector follows that ring read-only on a timer
	 * (KernelRingFollower) for its own subscribers, so the probe pays one ring write per
	 * exec, not two, and wakes one thread. The flag tells both. An exec the kernel ring
	 * has no room for stays unflagged and goes to the collector's ring, which wakes the
	 * collector to forward it the usual way. */
	ev->flags = flags;
	if (EXEC_HAS(EXEC_PART_KRING) && *(volatile __u32 *)&kernel_ring_on) {
		/* An exec that might be banned wakes the holder whatever is queued before it;
		 * another one wakes it only if the ring was empty (the ring's default), which
		 * tells the holder a batch has begun (wake_filter.h). */
		int wake = wake_now((const unsigned char *)buf->data + cg_len, fn_len, args_len, flags);

		ev->flags = flags | EXEC_FLAG_IN_KERNEL_RING | (wake != WAKE_NOT ? EXEC_FLAG_WAKE : 0);
		if (bpf_ringbuf_output(&kernel_ring, buf, size, wake == WAKE_NOW ? BPF_RB_FORCE_WAKEUP : 0) == 0) {
			if (wake == WAKE_NOW)
				cnt->kernel_ring_woken++;
			if (EXEC_HAS(EXEC_PART_TWO_RINGS))
				bpf_ringbuf_output(&events, buf, size, BPF_RB_NO_WAKEUP);
			return 0;
		}
		ev->flags = flags;
		cnt->kernel_ring_drops++;
	}
	if (EXEC_HAS(EXEC_PART_EVENTS) && bpf_ringbuf_output(&events, buf, size, 0))
		cnt->ringbuf_drops++;
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return handle_exec(p, bprm->filename, 0, true);
}

SEC("tracepoint/sched/sched_process_exec")
int exec_tp(struct trace_event_raw_sched_process_exec *ctx)
{
	/* __data_loc field: the low 16 bits are the string's offset in the record. */
	unsigned int loc = ctx->__data_loc_filename;
	const char *filename = (const char *)ctx + (loc & 0xffff);

	return handle_exec((struct task_struct *)bpf_get_current_task(), filename, EXEC_FLAG_FROM_TRACEPOINT, false);
}
