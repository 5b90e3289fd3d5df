/* Kernel-version drift, in one place. Each helper reads a field whose name or type
 * changed between kernels, using libbpf CO-RE "flavor" structs (the ___suffix is
 * ignored when matching against the running kernel's BTF) and bpf_core_field_exists,
 * which the loader resolves to a constant so the dead branch is removed before
 * verification.
 */
#ifndef CRYPTNONO_BPF_CORE_FIXES_H
#define CRYPTNONO_BPF_CORE_FIXES_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

/* Linux 6.15 renamed kernfs_node::parent to __parent ("kernfs: Rename
 * kernfs_node::parent to ::__parent."), when the parent became RCU-protected. */
struct kernfs_node___pre615 {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *kernfs_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node, __parent))
		return BPF_CORE_READ(kn, __parent);
	return BPF_CORE_READ((struct kernfs_node___pre615 *)kn, parent);
}

/* The same through a BTF-typed pointer: a plain load (see fpu_mxcsr_btf). */
static __always_inline struct kernfs_node *kernfs_parent_btf(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node, __parent))
		return kn->__parent;
	return ((struct kernfs_node___pre615 *)kn)->parent;
}

/* Linux 5.5 renamed task_struct::real_start_time to start_boottime ("time: Rename
 * tsk->real_start_time to ->start_boottime"). */
struct task_struct___pre55 {
	__u64 real_start_time;
} __attribute__((preserve_access_index));

static __always_inline __u64 task_start_boottime(struct task_struct *task)
{
	if (bpf_core_field_exists(struct task_struct, start_boottime))
		return BPF_CORE_READ(task, start_boottime);
	return BPF_CORE_READ((struct task_struct___pre55 *)task, real_start_time);
}

static __always_inline __u64 task_start_boottime_btf(struct task_struct *task)
{
	if (bpf_core_field_exists(struct task_struct, start_boottime))
		return task->start_boottime;
	return ((struct task_struct___pre55 *)task)->real_start_time;
}

#ifdef __TARGET_ARCH_x86
/* Linux 5.16 moved the saved FPU registers out of struct fpu ("x86/fpu: Provide struct
 * fpstate"): fpu->state became fpu->fpstate->regs. The xsave and fxsave layouts share
 * the legacy area, so i387.mxcsr is right whichever of them the CPU uses. */
struct fpu___pre516 {
	union fpregs_state state;
} __attribute__((preserve_access_index));

/* For BTF-typed pointers (tp_btf arguments): plain loads, which the verifier turns into
 * fault-tolerant ones. No helper call: this runs at every context switch. */
static __always_inline __u32 fpu_mxcsr_btf(struct fpu *fpu)
{
	if (bpf_core_field_exists(struct fpu, fpstate))
		return fpu->fpstate->regs.xsave.i387.mxcsr;
	return ((struct fpu___pre516 *)fpu)->state.xsave.i387.mxcsr;
}

/* For untyped pointers (the classic tracepoint's record): helper reads. */
static __always_inline __u32 fpu_mxcsr_probe(struct fpu *fpu)
{
	if (bpf_core_field_exists(struct fpu, fpstate))
		return BPF_CORE_READ(fpu, fpstate, regs.xsave.i387.mxcsr);
	return BPF_CORE_READ((struct fpu___pre516 *)fpu, state.xsave.i387.mxcsr);
}
#endif /* __TARGET_ARCH_x86 */

/* Linux 5.6 turned sock::sk_protocol from an 8-bit bitfield into a u16 ("net: Make
 * sk_protocol a 16-bit value"); the bitfield read handles both layouts. */
static __always_inline __u16 sock_protocol(const struct sock *sk)
{
	return (__u16)BPF_CORE_READ_BITFIELD_PROBED((struct sock *)sk, sk_protocol);
}

#endif /* CRYPTNONO_BPF_CORE_FIXES_H */
