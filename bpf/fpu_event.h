/* The ABI between bpf/fpu.bpf.c (the monero probe) and the collector.
 *
 * The probe watches the x86 FPU state saved at each context switch. MXCSR bits 13-14
 * are the SSE rounding control; ordinary programs leave it at 0 (round to nearest),
 * RandomX (Monero's proof of work) switches rounding modes constantly, so its saved
 * state shows a non-default mode at a large share of its switches. The probe counts
 * those switches per process identity (tgid + the group leader's start time) and writes
 * ONE record when the count reaches the load-time threshold; never again for that
 * identity while it stays in the probe's table (an LRU of FPU_TRACKED_MAX processes).
 *
 * A record is `struct fpu_event` followed by `task.cgroup_len` bytes of cgroup name.
 */
#ifndef CRYPTNONO_BPF_FPU_EVENT_H
#define CRYPTNONO_BPF_FPU_EVENT_H

#include "task_event.h"

/* MXCSR rounding control (RC), bits 13-14: 0 = round to nearest (the default). */
#define FPU_MXCSR_RC_MASK 0x6000u
/* --fpu-threshold: default and accepted range */
#define FPU_THRESHOLD_DEFAULT 64u
#define FPU_THRESHOLD_MIN 1u
#define FPU_THRESHOLD_MAX 1000000u
/* processes tracked at once (LRU: the least recently switched-out one is forgotten) */
#define FPU_TRACKED_MAX 16384u

/* flags */
#define FPU_FLAG_FROM_TRACEPOINT 0x1u  /* produced by the classic-tracepoint fallback */

struct fpu_event {
	struct task_ident task;
	__u64 first_boot_ns;  /* first switch of this identity with a non-default rounding mode */
	__u64 event_boot_ns;  /* the switch that made count reach threshold */
	__u32 mxcsr;          /* saved MXCSR at that switch */
	__u32 count;          /* switches seen with a non-default rounding mode (== threshold) */
	__u32 threshold;      /* the probe's threshold */
	__u32 flags;          /* FPU_FLAG_* */
};

/* Per-CPU scratch slot the record is built in before bpf_ringbuf_output. */
struct fpu_scratch {
	struct fpu_event ev;
	char data[TASK_CGROUP_SCRATCH];
};

/* Per-CPU counters, one cache line per CPU, read by user space through mmap. Switches
 * with the default rounding mode are not counted: the probe does nothing for them. */
struct fpu_counters {
	__u64 nondefault;     /* switches of user tasks with a non-default rounding mode */
	__u64 published;      /* records written to the ring buffer */
	__u64 ringbuf_drops;  /* bpf_ringbuf_output failed (ring full): record lost */
	__u64 map_errors;     /* the identity could not be inserted into the table */
	__u64 _pad[4];
};

#ifdef __cplusplus
#define FPU_STATIC_ASSERT static_assert
#else
#define FPU_STATIC_ASSERT _Static_assert
#endif
FPU_STATIC_ASSERT(sizeof(struct fpu_event) == 88, "fpu_event layout changed");
FPU_STATIC_ASSERT(sizeof(struct fpu_event) % 8 == 0, "fpu_event must keep 8-byte alignment");
FPU_STATIC_ASSERT(sizeof(struct fpu_scratch) == 88 + TASK_CGROUP_SCRATCH, "fpu_scratch has padding");
FPU_STATIC_ASSERT(sizeof(struct fpu_counters) == 64, "fpu_counters layout changed");
#undef FPU_STATIC_ASSERT

#endif /* CRYPTNONO_BPF_FPU_EVENT_H */
