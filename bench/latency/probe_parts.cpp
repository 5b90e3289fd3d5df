// probe_parts: where the exec probe's time goes. Loads several builds of the collector's
// own bpf/exec.bpf.c, each compiled with some parts left out (-DEXEC_PARTS, see the top
// of that file), attaches all of them to sched_process_exec at once, starts execs at a
// steady pace (exec_storm --rate) and reads each program's run time from the kernel
// (BPF_ENABLE_STATS: run_time_ns / run_cnt). Every build sees the same execs, so the
// differences between them are what each part costs, in the same run.
//
// Nobody reads the rings: the kernel wakes a reader only when it has caught up, so after
// the first record none of these programs pays a wake-up (the figures are the probe's
// own work, as the "excluding the wake-up" asks). The rings are large enough for
// the run (--seconds x --rate records of a few hundred bytes), and the kernel ring is
// marked held (kernel_ring_on), as it is while an enforcer reads it. Every build's wake
// filter is on, planned from --banned as the enforcer plans it; the "wake" build is "full"
// with the filter's lookups (the other builds leave that part out, as before it existed),
// "wake_no_scan" reads only its header, "wake_no_bits" runs its loops without reading bits.
//
// Programs attached to one tracepoint run one after the other, so a later one finds the
// caches warm: each round attaches them in another order (rotated), and the figure of a
// build is the median of its rounds.
//
//   probe_parts --objects DIR [--banned CONFIG] [--rate 200] [--seconds 10] [--rounds 9] [--exe PATH]
//
// Prints one JSON line per build and round, then one summary line per build.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cryptnono/enforcer/config.h"
#include "cryptnono/enforcer/text.h"
#include "cryptnono/enforcer/wake_plan.h"

extern char** environ;

namespace {

struct Build {
  std::string name;
  bpf_object* obj = nullptr;
  bpf_program* prog = nullptr;
  bpf_link* link = nullptr;
  std::vector<double> ns_per_run;  // one per round
  uint64_t runs = 0;
};

bool prog_stats(bpf_program* prog, uint64_t& run_ns, uint64_t& runs) {
  bpf_prog_info info{};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0) return false;
  run_ns = info.run_time_ns;
  runs = info.run_cnt;
  return true;
}

std::string self_dir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}

// The builds, in the order the CMake file compiles them: probe_parts_<name>.bpf.o.
const char* const kBuilds[] = {"two_rings", "full", "wake", "wake_no_scan", "wake_no_bits", "no_ids", "no_cgroup", "no_filename", "no_argv", "no_kring", "no_rings", "bare"};

int run_storm(const std::string& storm, const std::string& exe, double rate, double seconds) {
  std::string r = fmt::format("{}", rate), s = fmt::format("{}", seconds);
  std::vector<std::string> args = {storm, "--workers", "1", "--rate", r, "--seconds", s, "--exe", exe};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  // Its JSON line goes to our stdout too: the rate it reached.
  if (posix_spawn(&pid, storm.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string objects;
  double rate = 200, seconds = 10;
  int rounds = 9;  // every build once in every attach position
  std::string exe;
  CLI::App app{"Times the parts of the exec probe against each other"};
  app.add_option("--objects", objects, "Directory of the probe_parts_*.bpf.o builds")->required();
  app.add_option("--rate", rate, "Execs per second")->capture_default_str();
  app.add_option("--seconds", seconds, "Seconds per round")->capture_default_str();
  app.add_option("--rounds", rounds, "Rounds (the attach order rotates)")->capture_default_str();
  app.add_option("--exe", exe, "Program the execs start (default: cnb-exit0 next to this binary)");
  std::string banned;
  app.add_option("--banned", banned,
                 "A cryptnono config whose banned strings the wake filter is planned from, as the enforcer plans it "
                 "(default: no strings; the lookups are made all the same)");
  CLI11_PARSE(app, argc, argv);
  // The wake filter every build's map gets (only the "wake" build reads it).
  cryptnono::enforcer::WakePlanner planner;
  if (!banned.empty()) {
    auto config = cryptnono::enforcer::load_config_files({banned});
    if (!config) {
      fprintf(stderr, "probe_parts: %s\n", config.error().message.c_str());
      return 1;
    }
    for (const auto& e : config->banned) planner.add(cryptnono::enforcer::casefold(e.value));
  }
  const cryptnono::enforcer::WakePlan plan = planner.finish();
  if (!plan.on) {
    fprintf(stderr, "probe_parts: wake filter %s\n", plan.describe().c_str());
    return 1;
  }
  auto filter_value = std::make_unique<wake_filter>();
  filter_value->magic = WAKE_FILTER_MAGIC;
  filter_value->on = 1;
  filter_value->gram = plan.gram;
  filter_value->stride = plan.stride;
  filter_value->strings = plan.strings;
  filter_value->bits_log2 = plan.bits_log2;
  std::memcpy(filter_value->bits, plan.bits.data(), plan.bits.size() * sizeof(uint64_t));
  fprintf(stderr, "probe_parts: wake filter %s\n", plan.describe().c_str());
  const std::string dir = self_dir();
  if (exe.empty()) exe = dir + "/cnb-exit0";
  const std::string storm = dir + "/exec_storm";
  libbpf_set_print([](enum libbpf_print_level level, const char* f, va_list ap) {
    return level == LIBBPF_WARN ? vfprintf(stderr, f, ap) : 0;
  });

  int cpus = libbpf_num_possible_cpus();
  std::vector<Build> builds;
  for (const char* name : kBuilds) {
    Build b;
    b.name = name;
    std::string path = objects + "/probe_parts_" + name + ".bpf.o";
    b.obj = bpf_object__open_file(path.c_str(), nullptr);
    if (b.obj == nullptr) {
      fprintf(stderr, "probe_parts: cannot open %s: %s\n", path.c_str(), strerror(errno));
      return 1;
    }
    // As the collector sizes them (exec_source.cpp): a scratch and a counter slot per
    // possible CPU; the rings keep their declared sizes (16 and 4 MiB).
    bpf_map* m = nullptr;
    bpf_object__for_each_map(m, b.obj) {
      std::string mname = bpf_map__name(m);
      if (mname == "scratch" || mname == "counters") bpf_map__set_max_entries(m, static_cast<__u32>(cpus));
      if (mname.size() > 4 && mname.compare(mname.size() - 4, 4, ".bss") == 0) {
        size_t size = 0;
        const void* initial = bpf_map__initial_value(m, &size);
        if (initial == nullptr || size < sizeof(uint32_t)) {
          fprintf(stderr, "probe_parts: %s: no .bss for kernel_ring_on\n", name);
          return 1;
        }
        std::vector<unsigned char> bss(static_cast<const unsigned char*>(initial),
                                       static_cast<const unsigned char*>(initial) + size);
        const uint32_t on = 1;  // kernel_ring_on: its only variable
        std::memcpy(bss.data(), &on, sizeof on);
        bpf_map__set_initial_value(m, bss.data(), bss.size());
      }
    }
    bpf_program* p = nullptr;
    bpf_object__for_each_program(p, b.obj) {
      bool btf = std::string(bpf_program__name(p)) == "exec_btf";
      bpf_program__set_autoload(p, btf);
      if (btf) b.prog = p;
    }
    if (b.prog == nullptr || bpf_object__load(b.obj) != 0) {
      fprintf(stderr, "probe_parts: loading %s failed: %s\n", path.c_str(), strerror(errno));
      return 1;
    }
    bpf_map* filter = bpf_object__find_map_by_name(b.obj, "wake_filter");
    const uint32_t zero = 0;
    if (filter == nullptr || bpf_map_update_elem(bpf_map__fd(filter), &zero, filter_value.get(), BPF_ANY) != 0) {
      fprintf(stderr, "probe_parts: writing %s's wake filter failed: %s\n", name, strerror(errno));
      return 1;
    }
    builds.push_back(std::move(b));
  }
  int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0) {
    fprintf(stderr, "probe_parts: BPF_ENABLE_STATS failed: %s\n", strerror(errno));
    return 1;
  }

  const size_t n = builds.size();
  for (int round = 0; round < rounds; ++round) {
    std::vector<uint64_t> ns0(n), runs0(n);
    for (size_t k = 0; k < n; ++k) {
      Build& b = builds[(k + static_cast<size_t>(round)) % n];
      b.link = bpf_program__attach(b.prog);
      if (b.link == nullptr) {
        fprintf(stderr, "probe_parts: attaching %s failed: %s\n", b.name.c_str(), strerror(errno));
        return 1;
      }
    }
    for (size_t i = 0; i < n; ++i) prog_stats(builds[i].prog, ns0[i], runs0[i]);
    if (run_storm(storm, exe, rate, seconds) != 0) {
      fprintf(stderr, "probe_parts: %s failed\n", storm.c_str());
      return 1;
    }
    for (size_t i = 0; i < n; ++i) {
      uint64_t ns1 = 0, runs1 = 0;
      prog_stats(builds[i].prog, ns1, runs1);
      Build& b = builds[i];
      const uint64_t runs = runs1 - runs0[i];
      const double per = runs ? static_cast<double>(ns1 - ns0[i]) / static_cast<double>(runs) : 0.0;
      b.ns_per_run.push_back(per);
      b.runs += runs;
      size_t position = (i + n - static_cast<size_t>(round) % n) % n;
      printf("{\"what\": \"probe-parts-round\", \"build\": \"%s\", \"round\": %d, \"attach_position\": %zu, "
             "\"runs\": %llu, \"ns_per_run\": %.1f}\n",
             b.name.c_str(), round, position, static_cast<unsigned long long>(runs), per);
      bpf_link__destroy(b.link);
      b.link = nullptr;
    }
    fflush(stdout);
  }
  close(stats_fd);
  for (auto& b : builds) {
    auto v = b.ns_per_run;
    std::sort(v.begin(), v.end());
    const double median = v.empty() ? 0 : v[v.size() / 2];
    printf("{\"what\": \"probe-parts\", \"build\": \"%s\", \"runs\": %llu, \"ns_per_run\": %.1f, \"min\": %.1f, "
           "\"max\": %.1f}\n",
           b.name.c_str(), static_cast<unsigned long long>(b.runs), median, v.empty() ? 0 : v.front(),
           v.empty() ? 0 : v.back());
    bpf_object__close(b.obj);
  }
  return 0;
}
