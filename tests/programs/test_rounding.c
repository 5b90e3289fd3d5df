/* cryptnono-test-rounding: looks like a RandomX miner to the monero probe, or (with
 * --default) like an ordinary FP-heavy program that must never be reported.
 *
 *   cryptnono-test-rounding [--default] [SECONDS]
 *
 *   (no flag)   sets the rounding mode to upward (fesetround(FE_UPWARD): MXCSR rounding
 *               control 10b, bits 13-14 != 0), then loops: a little floating-point work,
 *               usleep(1000). Each sleep switches it out with the non-default mode in its
 *               saved FPU state: ~500-1000 such switches per second.
 *   --default   the negative case: round-to-nearest (the default), heavier FP work per
 *               iteration, the same usleep(1000) loop.
 *   SECONDS     how long to run (default 10; 0 = until killed). Fractions are accepted.
 *
 * Prints "ready <pid> mxcsr=0x<hex>\n" (flushed) once the mode is set, "done <iterations>\n"
 * at the end, and exits 0. Exit 2 on a usage error, 1 if the mode could not be set.
 */
#include <fenv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static unsigned read_mxcsr(void) { return _mm_getcsr(); }
#else
static unsigned read_mxcsr(void) { return 0; }
#endif

static double now_seconds(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Kept in memory so the compiler cannot drop or constant-fold the work. */
static volatile double sink;

static void fp_work(int rounds) {
	double acc = sink;
	for (int i = 1; i <= rounds; i++)
		acc = acc * 1.0000001 + 1.0 / (double)i;
	sink = acc;
}

static int usage(const char *prog) {
	fprintf(stderr, "usage: %s [--default] [SECONDS]\n", prog);
	return 2;
}

int main(int argc, char **argv) {
	int default_mode = 0;
	double seconds = 10;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--default") == 0) {
			default_mode = 1;
		} else {
			char *end = NULL;
			seconds = strtod(argv[i], &end);
			if (end == argv[i] || *end != '\0' || seconds < 0)
				return usage(argv[0]);
		}
	}

	if (!default_mode && fesetround(FE_UPWARD) != 0) {
		fprintf(stderr, "fesetround(FE_UPWARD) failed\n");
		return 1;
	}
	printf("ready %d mxcsr=0x%x\n", (int)getpid(), read_mxcsr());
	fflush(stdout);

	const double end = now_seconds() + seconds;
	unsigned long iterations = 0;
	while (seconds == 0 || now_seconds() < end) {
		/* The negative case does ~50x more FP work per switch. */
		fp_work(default_mode ? 5000 : 100);
		usleep(1000);
		iterations++;
	}
	printf("done %lu\n", iterations);
	return 0;
}
