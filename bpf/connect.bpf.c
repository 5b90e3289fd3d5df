// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The connect probe: one record per TCP socket (AF_INET or AF_INET6) entering
 * SYN_SENT. tcp_v4_connect()/tcp_v6_connect() set that state inside connect() (or a
 * TCP Fast Open sendmsg()), in the caller's context, once the destination and the
 * route are known and before the SYN leaves, so the current task is the connecting
 * process and a connect that is refused or never answered is still seen.
 *
 * inet_sock_set_state fires for every state change of every TCP (and SCTP, DCCP)
 * socket; the filter on newstate comes first and costs nothing else.
 *
 * Two entry points share the body, as in exec.bpf.c: tp_btf reads the socket, the
 * classic tracepoint (sock/inet_sock_set_state) already carries family, ports and
 * addresses in its record.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "connect_event.h"
#include "core_fixes.bpf.h"
#include "task.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Sized at load by user space (a power of two). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct connect_scratch);
} scratch SEC(".maps");

/* One slot per possible CPU (max_entries set at load), mmapable; see exec.bpf.c. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct connect_counters);
} counters SEC(".maps");

/* The per-CPU slot, with the counters counted; NULL only if user space sized the
 * counters map wrongly (nowhere to count that). */
static __always_inline struct connect_scratch *begin_record(struct connect_counters **cnt)
{
	__u32 cpu = bpf_get_smp_processor_id(), zero = 0;
	struct connect_scratch *buf;

	*cnt = bpf_map_lookup_elem(&counters, &cpu);
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!*cnt || !buf)
		return 0;
	(*cnt)->events++;
	return buf;
}

/* Fills the identity and sends; the caller filled family, ports and addresses. */
static __always_inline int finish_record(struct connect_scratch *buf, struct connect_counters *cnt, __u32 flags)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 size;

	fill_task_ident(&buf->ev.task, task, buf->data);
	buf->ev.event_boot_ns = bpf_ktime_get_boot_ns();
	buf->ev.flags = flags;
	/* cgroup_len < TASK_CGROUP_CAP: the mask keeps it and bounds the copy. */
	size = sizeof(buf->ev) + (buf->ev.task.cgroup_len & (TASK_CGROUP_CAP - 1));
	if (bpf_ringbuf_output(&events, buf, size, 0))
		cnt->ringbuf_drops++;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(connect_btf, const struct sock *sk, int oldstate, int newstate)
{
	struct connect_counters *cnt;
	struct connect_scratch *buf;
	__u16 family;

	if (newstate != TCP_SYN_SENT)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if ((family != CONNECT_AF_INET && family != CONNECT_AF_INET6) || sock_protocol(sk) != IPPROTO_TCP)
		return 0;
	buf = begin_record(&cnt);
	if (!buf)
		return 0;

	buf->ev.family = family;
	buf->ev.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	buf->ev.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	__builtin_memset(buf->ev.daddr, 0, sizeof(buf->ev.daddr));
	__builtin_memset(buf->ev.saddr, 0, sizeof(buf->ev.saddr));
	if (family == CONNECT_AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)buf->ev.daddr, sk, __sk_common.skc_daddr);
		BPF_CORE_READ_INTO((__u32 *)buf->ev.saddr, sk, __sk_common.skc_rcv_saddr);
	} else {
		BPF_CORE_READ_INTO(&buf->ev.daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&buf->ev.saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	}
	return finish_record(buf, cnt, 0);
}

SEC("tracepoint/sock/inet_sock_set_state")
int connect_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct connect_counters *cnt;
	struct connect_scratch *buf;
	__u16 family;

	if (ctx->newstate != TCP_SYN_SENT || ctx->protocol != IPPROTO_TCP)
		return 0;
	family = ctx->family;
	if (family != CONNECT_AF_INET && family != CONNECT_AF_INET6)
		return 0;
	buf = begin_record(&cnt);
	if (!buf)
		return 0;

	buf->ev.family = family;
	/* The tracepoint stores both ports in host order already. */
	buf->ev.dport = ctx->dport;
	buf->ev.sport = ctx->sport;
	__builtin_memset(buf->ev.daddr, 0, sizeof(buf->ev.daddr));
	__builtin_memset(buf->ev.saddr, 0, sizeof(buf->ev.saddr));
	/* Helper copies: the verifier refuses loads through a ctx pointer moved to a field
	 * ("dereference of modified ctx ptr"), which is what a 16-byte memcpy becomes. */
	if (family == CONNECT_AF_INET) {
		bpf_probe_read_kernel(buf->ev.daddr, 4, ctx->daddr);
		bpf_probe_read_kernel(buf->ev.saddr, 4, ctx->saddr);
	} else {
		bpf_probe_read_kernel(buf->ev.daddr, 16, ctx->daddr_v6);
		bpf_probe_read_kernel(buf->ev.saddr, 16, ctx->saddr_v6);
	}
	return finish_record(buf, cnt, CONNECT_FLAG_FROM_TRACEPOINT);
}
