/* cryptnono-test-connect: makes outgoing TCP connection attempts, for the connect probe
 * and the flowkiller detector. No listener is needed: a refused connect (RST) or one
 * that is never answered still takes the socket through SYN_SENT, which is what the
 * probe reports.
 *
 *   cryptnono-test-connect [--delay-ms N] [--timeout-ms N] [--repeat N] [--sleep S] DEST...
 *
 *   DEST          HOST:PORT, IPv4 (127.0.0.1:5555), IPv6 in brackets ([::1]:5555), or a
 *                 name getaddrinfo resolves (localhost:5555: its first TCP address).
 *   --delay-ms    pause between two connects (default 0)
 *   --timeout-ms  how long to wait for each connect's outcome (default 200; the socket
 *                 is closed after it either way)
 *   --repeat      go through the DEST list this many times (default 1)
 *   --sleep       then sleep this many seconds before exiting (default 0), so a test can
 *                 see it killed; fractions are accepted
 *
 * Prints "ready <pid>\n" first, then one line per attempt, "connect <DEST> <outcome>"
 * (connected, refused, timeout, or an errno name), then "done\n"; exits 0. Exit 2 on a
 * usage error or an unresolvable DEST.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int usage(const char *prog) {
	fprintf(stderr, "usage: %s [--delay-ms N] [--timeout-ms N] [--repeat N] [--sleep S] HOST:PORT...\n", prog);
	return 2;
}

static void sleep_seconds(double s) {
	if (s <= 0)
		return;
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* "[v6]:port" or "host:port" (the last colon splits) -> resolved address. */
static int resolve(const char *dest, struct sockaddr_storage *out, socklen_t *len) {
	char host[256];
	const char *port;
	if (dest[0] == '[') {
		const char *close = strchr(dest, ']');
		if (close == NULL || close[1] != ':' || (size_t)(close - dest - 1) >= sizeof host)
			return -1;
		memcpy(host, dest + 1, (size_t)(close - dest - 1));
		host[close - dest - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(dest, ':');
		if (colon == NULL || (size_t)(colon - dest) >= sizeof host)
			return -1;
		memcpy(host, dest, (size_t)(colon - dest));
		host[colon - dest] = '\0';
		port = colon + 1;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
		return -1;
	memcpy(out, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static const char *attempt(const struct sockaddr_storage *addr, socklen_t len, int timeout_ms) {
	static char buf[64];
	int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return strerror(errno);
	const char *outcome = "connected";
	if (connect(fd, (const struct sockaddr *)addr, len) != 0) {
		if (errno != EINPROGRESS) {
			outcome = errno == ECONNREFUSED ? "refused" : strerror(errno);
		} else {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int err = 0;
			socklen_t err_len = sizeof err;
			if (poll(&p, 1, timeout_ms) <= 0) {
				outcome = "timeout";
			} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) == 0 && err != 0) {
				outcome = err == ECONNREFUSED ? "refused" : (snprintf(buf, sizeof buf, "%s", strerror(err)), buf);
			}
		}
	}
	close(fd);
	return outcome;
}

int main(int argc, char **argv) {
	long delay_ms = 0, timeout_ms = 200, repeat = 1;
	double sleep_after = 0;
	int first = 1;
	for (; first < argc && strncmp(argv[first], "--", 2) == 0; first += 2) {
		if (first + 1 >= argc)
			return usage(argv[0]);
		char *end = NULL;
		const char *flag = argv[first], *value = argv[first + 1];
		if (strcmp(flag, "--sleep") == 0) {
			sleep_after = strtod(value, &end);
		} else {
			long v = strtol(value, &end, 10);
			if (v < 0)
				return usage(argv[0]);
			if (strcmp(flag, "--delay-ms") == 0)
				delay_ms = v;
			else if (strcmp(flag, "--timeout-ms") == 0)
				timeout_ms = v;
			else if (strcmp(flag, "--repeat") == 0)
				repeat = v;
			else
				return usage(argv[0]);
		}
		if (end == value || *end != '\0')
			return usage(argv[0]);
	}
	if (first >= argc)
		return usage(argv[0]);

	/* Everything is resolved before the first connect, so a bad DEST fails fast. */
	int n = argc - first;
	struct sockaddr_storage *addrs = calloc((size_t)n, sizeof *addrs);
	socklen_t *lens = calloc((size_t)n, sizeof *lens);
	if (addrs == NULL || lens == NULL)
		return 1;
	for (int i = 0; i < n; i++) {
		if (resolve(argv[first + i], &addrs[i], &lens[i]) != 0) {
			fprintf(stderr, "cannot resolve %s (want HOST:PORT or [V6]:PORT)\n", argv[first + i]);
			return 2;
		}
	}

	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	for (long r = 0; r < repeat; r++) {
		for (int i = 0; i < n; i++) {
			if ((r > 0 || i > 0) && delay_ms > 0)
				sleep_seconds((double)delay_ms / 1000.0);
			printf("connect %s %s\n", argv[first + i], attempt(&addrs[i], lens[i], (int)timeout_ms));
			fflush(stdout);
		}
	}
	sleep_seconds(sleep_after);
	printf("done\n");
	free(addrs);
	free(lens);
	return 0;
}
