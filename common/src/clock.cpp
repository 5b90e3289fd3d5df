#include "cryptnono/clock.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace cryptnono {

std::string format_timestamp(uint64_t wall_ns) {
  time_t secs = static_cast<time_t>(wall_ns / 1'000'000'000ull);
  unsigned micros = static_cast<unsigned>((wall_ns % 1'000'000'000ull) / 1000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(buf + n, sizeof buf - n, ".%06uZ", micros);
  return buf;
}

std::string node_name() {
  if (const char* env = std::getenv("NODE_NAME"); env != nullptr && *env != '\0') return env;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) return "unknown";
  return host;
}

}  // namespace cryptnono
