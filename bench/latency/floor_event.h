/* The floor probe's ring-buffer record (bench/latency/floor.bpf.c <-> floor_consumer.cpp).
 * Fixed-width fields only, explicit padding, as bpf/exec_event.h. */
#ifndef CRYPTNONO_BENCH_FLOOR_EVENT_H
#define CRYPTNONO_BENCH_FLOOR_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define FLOOR_FILENAME_LEN 64

struct floor_event {
	__u64 exec_boot_ns;  /* bpf_ktime_get_boot_ns() in sched_process_exec */
	__u32 pid;
	__u32 _pad0;
	char filename[FLOOR_FILENAME_LEN];  /* bprm->filename, NUL-terminated, cut at 63 */
};

#ifdef __cplusplus
static_assert(sizeof(struct floor_event) == 80, "floor_event layout changed");
#else
_Static_assert(sizeof(struct floor_event) == 80, "floor_event layout changed");
#endif

#endif
