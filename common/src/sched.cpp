#include "cryptnono/sched.h"

#include <dirent.h>
#include <sys/types.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <vector>

#include <spdlog/fmt/fmt.h>

namespace cryptnono {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A CPU number: decimal digits only (no sign, no hex), below CPU_SETSIZE.
Result<int> parse_cpu(std::string_view text, std::string_view item) {
  if (text.empty()) return fail(fmt::format("'{}': a CPU number is missing", item));
  for (char c : text)
    if (c < '0' || c > '9') return fail(fmt::format("'{}': not a CPU number or a range like 0-3", item));
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value >= CPU_SETSIZE)
    return fail(fmt::format("'{}': CPU numbers go up to {}", item, CPU_SETSIZE - 1));
  return value;
}

// The tids of this process now. /proc/self is the thread group's directory whichever
// thread reads it.
Result<std::vector<pid_t>> list_threads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return fail(std::string("cannot list /proc/self/task: ") + std::strerror(errno));
  std::vector<pid_t> tids;
  while (dirent* entry = readdir(dir)) {
    pid_t tid = 0;
    const char* name = entry->d_name;
    auto [end, ec] = std::from_chars(name, name + std::strlen(name), tid);
    if (ec == std::errc() && *end == '\0' && tid > 0) tids.push_back(tid);
  }
  closedir(dir);
  return tids;
}

bool same_set(const cpu_set_t& a, const cpu_set_t& b) { return CPU_EQUAL(&a, &b) != 0; }

// One thread. ESRCH (the thread ended after it was listed) is success: there is nothing
// left to schedule.
Result<void> apply_to_thread(pid_t tid, int rt_priority, const cpu_set_t* cpus) {
  if (cpus != nullptr) {
    if (sched_setaffinity(tid, sizeof *cpus, cpus) != 0) {
      if (errno == ESRCH) return {};
      if (errno == EINVAL)
        return fail(fmt::format("--cpus {}: none of these CPUs is available to this process (offline, or "
                                "outside its cgroup cpuset)",
                                format_cpu_list(*cpus)));
      return fail(fmt::format("sched_setaffinity(thread {}): {}", tid, std::strerror(errno)));
    }
    // The kernel silently keeps only the requested CPUs that are online and in the
    // cpuset: a pinning the operator did not ask for is refused instead.
    cpu_set_t got;
    CPU_ZERO(&got);
    if (sched_getaffinity(tid, sizeof got, &got) != 0) {
      if (errno == ESRCH) return {};
      return fail(fmt::format("sched_getaffinity(thread {}): {}", tid, std::strerror(errno)));
    }
    if (!same_set(got, *cpus))
      return fail(fmt::format("--cpus {}: only CPUs {} of them are available to this process (the others are "
                              "offline or outside its cgroup cpuset)",
                              format_cpu_list(*cpus), format_cpu_list(got)));
  }
  if (rt_priority > 0) {
    sched_param param{};
    param.sched_priority = rt_priority;
    if (sched_setscheduler(tid, SCHED_FIFO, &param) != 0) {
      if (errno == ESRCH) return {};
      if (errno == EPERM)
        return fail(fmt::format("SCHED_FIFO needs CAP_SYS_NICE (or an RLIMIT_RTPRIO of at least {}): "
                                "sched_setscheduler(thread {}, SCHED_FIFO, {}): {}; in Kubernetes add the SYS_NICE "
                                "capability (the chart does when scheduling.rtPriority > 0); with "
                                "CONFIG_RT_GROUP_SCHED the cgroup also needs a cpu.rt_runtime_us budget",
                                rt_priority, tid, rt_priority, std::strerror(errno)));
      return fail(fmt::format("sched_setscheduler(thread {}, SCHED_FIFO, {}): {}", tid, rt_priority,
                              std::strerror(errno)));
    }
  }
  return {};
}

}  // namespace

Result<cpu_set_t> parse_cpu_list(std::string_view list) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (trim(list).empty()) return fail("empty CPU list (expected e.g. 1 or 0-1,3)");
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view item = trim(list.substr(start, comma - start));
    if (item.empty()) return fail(fmt::format("'{}': empty item in the CPU list", list));
    size_t dash = item.find('-');
    if (dash == std::string_view::npos) {
      auto cpu = parse_cpu(item, item);
      if (!cpu) return tl::unexpected(cpu.error());
      CPU_SET(*cpu, &set);
    } else {
      auto first = parse_cpu(trim(item.substr(0, dash)), item);
      if (!first) return tl::unexpected(first.error());
      auto last = parse_cpu(trim(item.substr(dash + 1)), item);
      if (!last) return tl::unexpected(last.error());
      if (*last < *first) return fail(fmt::format("'{}': a range must go upwards", item));
      for (int c = *first; c <= *last; ++c) CPU_SET(c, &set);
    }
    start = comma + 1;
  }
  return set;
}

std::string format_cpu_list(const cpu_set_t& set) {
  std::string out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    int last = c;
    while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &set)) ++last;
    if (!out.empty()) out += ',';
    out += last == c ? std::to_string(c) : fmt::format("{}-{}", c, last);
    c = last;
  }
  return out;
}

Result<void> validate_scheduling(int rt_priority, const std::string& cpus) {
  if (rt_priority != 0 && (rt_priority < kMinRtPriority || rt_priority > kMaxRtPriority))
    return fail(fmt::format("--rt-priority: must be 0 (off) or {}..{} (SCHED_FIFO), not {}", kMinRtPriority,
                            kMaxRtPriority, rt_priority));
  if (!cpus.empty()) {
    auto parsed = parse_cpu_list(cpus);
    if (!parsed) return fail("--cpus: " + parsed.error().message);
  }
  return {};
}

Result<void> apply_scheduling(int rt_priority, const std::string& cpus) {
  if (auto ok = validate_scheduling(rt_priority, cpus); !ok) return ok;
  if (rt_priority == 0 && cpus.empty()) return {};
  cpu_set_t set;
  const cpu_set_t* wanted = nullptr;
  if (!cpus.empty()) {
    set = *parse_cpu_list(cpus);
    wanted = &set;
  }
  // A thread not yet changed may start another one while we go: list again until a pass
  // finds nothing new. Threads started by an already changed thread inherit the
  // settings; the bound only guards against a process that creates threads forever.
  std::set<pid_t> done;
  for (int pass = 0; pass < 100; ++pass) {
    auto tids = list_threads();
    if (!tids) return tl::unexpected(tids.error());
    bool found_new = false;
    for (pid_t tid : *tids) {
      if (!done.insert(tid).second) continue;
      found_new = true;
      if (auto ok = apply_to_thread(tid, rt_priority, wanted); !ok) return ok;
    }
    if (!found_new) return {};
  }
  return fail("threads kept appearing while the scheduling was applied");
}

Result<void> leave_realtime_scheduling() {
  int policy = sched_getscheduler(0);  // 0: the calling thread
  if (policy < 0) return fail(std::string("sched_getscheduler: ") + std::strerror(errno));
  if (policy != SCHED_FIFO && policy != SCHED_RR) return {};
  // Lowering to SCHED_OTHER needs no privilege (sched(7)); the nice value is kept.
  sched_param param{};
  param.sched_priority = 0;
  if (sched_setscheduler(0, SCHED_OTHER, &param) != 0)
    return fail(std::string("sched_setscheduler(SCHED_OTHER): ") + std::strerror(errno));
  return {};
}

std::string describe_scheduling() {
  std::string out;
  int policy = sched_getscheduler(0);
  sched_param param{};
  sched_getparam(0, &param);
  switch (policy) {
    case SCHED_FIFO: out = fmt::format("SCHED_FIFO {}", param.sched_priority); break;
    case SCHED_RR: out = fmt::format("SCHED_RR {}", param.sched_priority); break;
    case SCHED_OTHER: out = "SCHED_OTHER"; break;
    case SCHED_BATCH: out = "SCHED_BATCH"; break;
    case SCHED_IDLE: out = "SCHED_IDLE"; break;
    default: out = fmt::format("policy {}", policy); break;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) out += ", CPUs " + format_cpu_list(set);
  return out;
}

}  // namespace cryptnono
