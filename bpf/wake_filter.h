/* The wake filter: which execs are worth waking the enforcer for at once.
 *
 * Why: waking a sleeping reader costs the exec'ing process ≈ 16 µs here, and a woken
 * enforcer runs on the exec'ing process's CPU (BENCHMARKS.md): at the machine's highest exec
 * rate, one wake-up per exec is most of what the agent costs the node. Almost no exec
 * contains a banned string, so the probe decides which ones might, and only those wake
 * the enforcer at once; the others wait in the kernel ring until the enforcer's batch timer
 * (the first of a batch still wakes it, to arm that timer).
 *
 * How: the enforcer that holds the kernel ring writes, for every banned string, `stride`
 * grams (`gram` bytes each, cut from one run of plain characters of the casefolded string)
 * into a Bloom filter of two bits per gram, sized to the strings (2^bits_log2 bits: a few
 * strings make a filter of a few cache lines). The probe lowercases the exec's filename and
 * its arguments after argv[0] (the enforcer's command line is the filename, then argv[1:])
 * as they sit in its scratch slot, and looks up the gram at every stride-th offset of each.
 * If an occurrence of a banned string is in the enforcer's command line, one of its grams is
 * at such an offset (the run is at least gram + stride - 1 bytes and lies within one of the
 * two), so the lookup hits: the filter never misses a banned string; a false hit only costs
 * a wake-up.
 *
 * What keeps it sound:
 *  - "Plain" bytes are those the enforcer's command line carries unchanged from argv: ASCII
 *    except NUL, space (the separator) and the two quotes (shlex.join adds and rewrites
 *    them). A gram never holds any other byte.
 *  - Any byte >= 0x80 wakes: casefolding non-ASCII text can produce ASCII letters
 *    (U+212A KELVIN SIGN folds to 'k').
 *  - A truncated or unreadable argv or filename wakes (the enforcer reads /proc then), as
 *    does anything longer than WAKE_SCAN_CHECKS lookups.
 *  - The holder rewrites the filter under a sequence count (odd while writing); the probe
 *    reads it before and after its lookups and wakes if it moved or was odd.
 *  - A filter that is off (a fresh map, a new holder, an enforcer without one) wakes for
 *    every exec, as before the filter.
 *
 * Shared by bpf/exec.bpf.c and the enforcer (C++): fixed-width fields only, and the hash
 * in one place so both sides compute the same bits.
 */
#ifndef CRYPTNONO_BPF_WAKE_FILTER_H
#define CRYPTNONO_BPF_WAKE_FILTER_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* At most 2^24 bits (2 MiB): 100,000 strings at 4 grams each set 4.7% of the bits, so one
 * lookup of an unrelated gram hits with p = 0.047^2 = 0.2%. At least 2^12 (512 bytes). */
#define WAKE_FILTER_BITS_LOG2 24
#define WAKE_FILTER_BITS_LOG2_MIN 12
#define WAKE_FILTER_WORDS (1u << (WAKE_FILTER_BITS_LOG2 - 6))
#define WAKE_GRAM_MIN 4
#define WAKE_GRAM_MAX 8
#define WAKE_STRIDE_MAX 4
/* Lookups per exec at most: 4 KiB of filename and argv at stride 4; more wakes. */
#define WAKE_SCAN_CHECKS 1024
#define WAKE_FILTER_MAGIC 0x46574e43u /* "CNWF" */

struct wake_filter {
	__u32 magic;  /* WAKE_FILTER_MAGIC, written by the collector when it creates the map */
	__u32 seq;    /* odd while a writer changes the fields below */
	__u32 on;     /* 1: look up grams; 0: every exec wakes */
	__u32 gram;   /* bytes per gram, WAKE_GRAM_MIN..WAKE_GRAM_MAX */
	__u32 stride; /* offsets looked up: every stride-th, 1..WAKE_STRIDE_MAX */
	__u32 strings; /* banned strings written (for logs) */
	__u32 bits_log2; /* the filter is bits[0 .. 2^bits_log2 / 64): WAKE_FILTER_BITS_LOG2_MIN..WAKE_FILTER_BITS_LOG2 */
	__u32 _pad;
	__u64 bits[WAKE_FILTER_WORDS];
};

#ifdef __cplusplus
#define WAKE_INLINE inline
#else
#define WAKE_INLINE static __always_inline
#endif

/* ASCII A-Z to a-z in a word of eight bytes below 0x80 (callers wake on any other). */
WAKE_INLINE __u64 wake_lower_word(__u64 w)
{
	const __u64 high = 0x8080808080808080ULL;
	__u64 ge_a = w + 0x3f3f3f3f3f3f3f3fULL; /* high bit set where the byte is >= 'A' */
	__u64 gt_z = w + 0x2525252525252525ULL; /* high bit set where the byte is > 'Z' */

	return w | (((ge_a & ~gt_z) & high) >> 2);
}

/* The low `bytes` bytes of a little-endian word (1..8). */
WAKE_INLINE __u64 wake_low_bytes(__u64 w, __u32 bytes)
{
	return bytes >= 8 ? w : (w & ((1ULL << (bytes * 8)) - 1));
}

/* The two bit numbers of a gram (lowercased, in the low bytes of `g`, the rest zero) in a
 * filter of 2^log2 bits. */
WAKE_INLINE __u32 wake_bit1(__u64 g, __u32 log2)
{
	return (__u32)((g * 0x9e3779b97f4a7c15ULL) >> (64 - log2));
}

WAKE_INLINE __u32 wake_bit2(__u64 g, __u32 log2)
{
	__u64 h = (g ^ (g >> 29)) * 0xbf58476d1ce4e5b9ULL;

	return (__u32)((h ^ (h >> 31)) >> (64 - log2));
}

WAKE_INLINE int wake_plain_byte(unsigned char c)
{
	return c != 0 && c < 0x80 && c != ' ' && c != '\'' && c != '"';
}

#undef WAKE_INLINE

#ifdef __cplusplus
/* The writers' side of the sequence count (user space: the holder and the collector, each
 * through its mmap of the map). Between begin and end the count is odd, and the probe wakes
 * the holder for whatever it looks at. */
inline __u32 wake_filter_write_begin(struct wake_filter *f)
{
	const __u32 seq = __atomic_load_n(&f->seq, __ATOMIC_RELAXED) | 1u;
	__atomic_store_n(&f->seq, seq, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return seq;
}

inline void wake_filter_write_end(struct wake_filter *f, __u32 seq)
{
	__atomic_store_n(&f->seq, seq + 1, __ATOMIC_RELEASE);
}
#endif

#endif /* CRYPTNONO_BPF_WAKE_FILTER_H */
