/* vectorscan_check: does the installed Vectorscan report every literal it should?
 * A differential test of hs_compile_lit_multi against a planted occurrence: random sets of
 * 1-60 literals of 1-8 bytes (the first is 8 bytes long, as the matcher's anchors are),
 * random texts of 8-300 bytes at random buffer addresses with the first literal planted at
 * a random place, scanned with PAD zero bytes after the text. Prints how many scans did
 * not report the planted occurrence. Debian 12's 5.4.9 misses some with PAD 0 (about 5
 * in 100,000) and none with PAD 64, which is what the enforcer's matcher scans with.
 * VBMI 1 builds the databases for AVX512VBMI (which 5.4.9 here cannot scan with: no scratch).
 *
 *   vectorscan_check [TRIALS=3000] [PAD=64] [VBMI=0]     (each trial: one set, 20 texts)
 */
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long planted_end;
static int reported;

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx) {
	(void)from;
	(void)flags;
	(void)ctx;
	if (id == 0 && to == planted_end)
		reported = 1;
	return 0;
}

static unsigned long long state = 0x9e3779b97f4a7c15ULL;
static unsigned long long next(void) {
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

int main(int argc, char **argv) {
	const int trials = argc > 1 ? atoi(argv[1]) : 3000;
	const int pad = argc > 2 ? atoi(argv[2]) : 64;
	const int vbmi = argc > 3 ? atoi(argv[3]) : 0;
	static const char hex[] = "0123456789abcdef";
	static const char text_bytes[] = " /-_abcdefghijklmnopqrstuvwxyz0123456789'";
	char *buffer = aligned_alloc(4096, 4096);
	long scans = 0, missed = 0, compile_errors = 0;
	if (buffer == NULL || pad < 0 || pad > 1024)
		return 2;
	for (int t = 0; t < trials; ++t) {
		char literals[60][9];
		const char *exprs[60];
		unsigned flags[60], ids[60];
		size_t lens[60];
		const int count = 1 + (int)(next() % 60);
		const int other_len = 1 + (int)(next() % 8);
		for (int i = 0; i < count; ++i) {
			const int len = i == 0 ? 8 : other_len;
			for (int k = 0; k < len; ++k)
				literals[i][k] = hex[next() % 16];
			literals[i][len] = 0;
			exprs[i] = literals[i];
			flags[i] = 0;
			ids[i] = (unsigned)i;
			lens[i] = (size_t)len;
		}
		hs_platform_info_t platform;
		hs_populate_platform(&platform);
		if (vbmi)
			platform.cpu_features |= HS_CPU_FEATURES_AVX512VBMI;
		else
			platform.cpu_features &= ~(unsigned long long)HS_CPU_FEATURES_AVX512VBMI;
		hs_database_t *db = NULL;
		hs_compile_error_t *error = NULL;
		if (hs_compile_lit_multi(exprs, flags, ids, lens, (unsigned)count, HS_MODE_BLOCK, &platform, &db, &error) !=
		    HS_SUCCESS) {
			hs_free_compile_error(error);
			++compile_errors;
			continue;
		}
		hs_scratch_t *scratch = NULL;
		const hs_error_t rc = hs_alloc_scratch(db, &scratch);
		if (rc != HS_SUCCESS) {
			/* 5.4.9 here: a database built for AVX512VBMI gets HS_DB_PLATFORM_ERROR (-6). */
			printf("{\"what\": \"vectorscan-check\", \"version\": \"%s\", \"pad\": %d, \"vbmi\": %d, "
			       "\"scratch_error\": %d}\n",
			       hs_version(), pad, vbmi, (int)rc);
			return 1;
		}
		for (int r = 0; r < 20; ++r) {
			const int len = 8 + (int)(next() % 300);
			char *text = buffer + next() % 64;
			for (int k = 0; k < len; ++k)
				text[k] = text_bytes[next() % (sizeof text_bytes - 1)];
			const int at = (int)(next() % (unsigned long long)(len - 7));
			memcpy(text + at, literals[0], 8);
			memset(text + len, 0, (size_t)pad);
			planted_end = (unsigned long long)at + 8;
			reported = 0;
			++scans;
			hs_scan(db, text, (unsigned)(len + pad), 0, scratch, on_match, NULL);
			missed += !reported;
		}
		hs_free_scratch(scratch);
		hs_free_database(db);
	}
	printf("{\"what\": \"vectorscan-check\", \"version\": \"%s\", \"pad\": %d, \"vbmi\": %d, \"scans\": %ld, "
	       "\"missed\": %ld, \"compile_errors\": %ld}\n",
	       hs_version(), pad, vbmi, scans, missed, compile_errors);
	return 0;
}
