/* The ABI between bpf/connect.bpf.c (the TCP connect probe) and the collector.
 *
 * One record per outgoing TCP connection attempt: a socket of family AF_INET or
 * AF_INET6 entering SYN_SENT (inet_sock_set_state), taken in the context of the process
 * that called connect(). A refused or unanswered connect is reported too: the state
 * change happens before any packet is sent.
 *
 * A record is `struct connect_event` followed by `task.cgroup_len` bytes of cgroup name.
 */
#ifndef CRYPTNONO_BPF_CONNECT_EVENT_H
#define CRYPTNONO_BPF_CONNECT_EVENT_H

#include "task_event.h"

/* Values of `family` (the kernel's AF_INET / AF_INET6). */
#define CONNECT_AF_INET 2u
#define CONNECT_AF_INET6 10u

/* flags */
#define CONNECT_FLAG_FROM_TRACEPOINT 0x1u  /* produced by the classic-tracepoint fallback */

struct connect_event {
	struct task_ident task;
	__u64 event_boot_ns;  /* when the socket entered SYN_SENT */
	__u32 family;         /* CONNECT_AF_INET or CONNECT_AF_INET6 (v4-mapped addresses stay v6) */
	__u32 dport;          /* destination port, host order */
	__u32 sport;          /* source port, host order (0 when not bound yet, the usual case) */
	__u32 flags;          /* CONNECT_FLAG_* */
	__u8 daddr[16];       /* network order; AF_INET uses the first 4 bytes, the rest are 0 */
	__u8 saddr[16];       /* same layout; often unspecified before the route is chosen */
};

/* Per-CPU scratch slot the record is built in before bpf_ringbuf_output. */
struct connect_scratch {
	struct connect_event ev;
	char data[TASK_CGROUP_SCRATCH];
};

/* Per-CPU counters, one cache line per CPU, read by user space through mmap. */
struct connect_counters {
	__u64 events;         /* TCP sockets seen entering SYN_SENT */
	__u64 ringbuf_drops;  /* bpf_ringbuf_output failed (ring full): record lost */
	__u64 _pad[6];
};

#ifdef __cplusplus
#define CONNECT_STATIC_ASSERT static_assert
#else
#define CONNECT_STATIC_ASSERT _Static_assert
#endif
CONNECT_STATIC_ASSERT(sizeof(struct connect_event) == 112, "connect_event layout changed");
CONNECT_STATIC_ASSERT(sizeof(struct connect_event) % 8 == 0, "connect_event must keep 8-byte alignment");
CONNECT_STATIC_ASSERT(sizeof(struct connect_scratch) == 112 + TASK_CGROUP_SCRATCH, "connect_scratch has padding");
CONNECT_STATIC_ASSERT(sizeof(struct connect_counters) == 64, "connect_counters layout changed");
#undef CONNECT_STATIC_ASSERT

#endif /* CRYPTNONO_BPF_CONNECT_EVENT_H */
