// matcher_bench: times the enforcer's real decision path on the inputs gen_inputs.py
// writes, and prints one JSON object per line (the shape ref_bench.py prints for the
// Python reference, so report.py can put them side by side).
//
// What is timed per call is exactly what the enforcer's event thread does for one exec
// event before it kills: Decider::decide() (shlex-join the exec'd file name and argv[1:],
// casefold, Vectorscan scan with the per-occurrence word rule, RE2 allowed patterns on a
// hit), with the rules loaded by load_rules() as cryptnono-enforcer loads them. The only
// stand-in is the Killer: on a hit it hands back a target whose kill() does nothing (the
// reference's kill is a no-op as well), so pidfd_open, the /proc start-time check and the
// signal itself are not in these figures (they are in the latency benchmark).
//
// Timing: see bench() below. The same method is used by ref_bench.py.
//
//   matcher_bench DATA [--banned 1000,10000,100000] [--allowed 0,5] [--cases a,b]
//                 [--reps 15] [--min-rep-ms 20] [--breakdown] [--layered N]
//   matcher_bench DATA --build-only N [--with-allowed]   # compile time and memory
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/fmt/fmt.h>

#include "cryptnono/enforcer/app.h"
#include "cryptnono/enforcer/config.h"
#include "cryptnono/enforcer/decider.h"
#include "cryptnono/enforcer/killer.h"
#include "cryptnono/enforcer/matcher.h"
#include "cryptnono/enforcer/text.h"

namespace {

using namespace cryptnono;
using namespace cryptnono::enforcer;
using Clock = std::chrono::steady_clock;

class NoopTarget : public Target {
 public:
  KillOutcome read_cmdline(std::string& out) override {
    out.clear();
    return {KillStatus::kOk, {}};
  }
  KillOutcome kill() override { return {KillStatus::kOk, {}}; }
};

// Every process "verifies" and every kill "succeeds", without touching any process.
class NoopKiller : public Killer {
 public:
  Opened open(pid_t, uint64_t, const EventIdentity&) override { return {{KillStatus::kOk, {}}, std::make_unique<NoopTarget>()}; }
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  std::string prefix = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) return std::stol(line.substr(prefix.size()));
  return 0;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double timer_overhead_ns() {
  std::vector<double> d(20000);
  for (auto& x : d) {
    auto a = Clock::now();
    auto b = Clock::now();
    x = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
  }
  std::nth_element(d.begin(), d.begin() + d.size() / 2, d.end());
  return d[d.size() / 2];
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(k, v.size() - 1)];
}

const char* action_name(schema::Action a) {
  switch (a) {
    case schema::Action::NO_MATCH: return "noMatch";
    case schema::Action::KILLED: return "killed";
    case schema::Action::SPARED: return "spared";
    case schema::Action::MISSED_KILL: return "missedKill";
    case schema::Action::WOULD_KILL: return "wouldKill";
    case schema::Action::ERROR: return "error";
  }
  return "?";
}

int build_only(const std::string& data, int n, bool with_allowed) {
  std::vector<std::string> paths = {data + "/banned-" + std::to_string(n) + ".json"};
  if (with_allowed) paths.push_back(data + "/allowed-5.json");
  long rss_before = status_kib("VmRSS");
  // Resets VmHWM to the current RSS, so the peak below is the load's own.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  auto t0 = Clock::now();
  auto config = load_config_files(paths);
  if (!config) {
    std::fprintf(stderr, "matcher_bench: %s\n", config.error().message.c_str());
    return 1;
  }
  double parse_s = seconds_since(t0);
  auto t1 = Clock::now();
  auto matcher = Matcher::build(*config);
  if (!matcher) {
    std::fprintf(stderr, "matcher_bench: %s\n", matcher.error().message.c_str());
    return 1;
  }
  double build_s = seconds_since(t1);
  config->banned.clear();
  config->banned.shrink_to_fit();
  malloc_trim(0);
  std::printf("%s\n", fmt::format(R"({{"impl": "cryptnono-cpp", "what": "build", "banned": {}, "allowed": {}, )"
                                  R"("parse_s": {:.4f}, "build_s": {:.4f}, "rss_before_kib": {}, )"
                                  R"("rss_after_kib": {}, "hwm_kib": {}, "database_kib": {}}})",
                                  n, (*matcher)->allowed_count(), parse_s, build_s, rss_before,
                                  status_kib("VmRSS"), status_kib("VmHWM"), (*matcher)->database_bytes() / 1024)
                          .c_str());
  return 0;
}

struct Stats {
  double median_ns, min_ns, max_ns, p99_ns;
  size_t calls_per_rep;
  size_t samples;
};

// Each repetition times `calls_per_rep` calls one by one (steady_clock; its median
// overhead is subtracted). Reported: the median over repetitions of each repetition's
// median call, the min-max of those medians (run-to-run spread), and the p99 of every call.
template <class Fn>
Stats bench(Fn&& fn, int reps, double min_rep_ms, double overhead) {
  fn();
  size_t n = 1;
  for (;;) {
    auto t0 = Clock::now();
    for (size_t i = 0; i < n; ++i) fn();
    if (seconds_since(t0) * 1e3 >= min_rep_ms || n >= (1u << 17)) break;
    n *= 2;
  }
  std::vector<double> medians;
  std::vector<double> all;
  all.reserve(n * static_cast<size_t>(reps));
  std::vector<double> rep(n);
  for (int r = 0; r < reps; ++r) {
    for (auto& x : rep) {
      auto t0 = Clock::now();
      fn();
      auto t1 = Clock::now();
      x = std::max(0.0, static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()) -
                            overhead);
    }
    medians.push_back(median(rep));
    all.insert(all.end(), rep.begin(), rep.end());
  }
  return {median(medians), *std::min_element(medians.begin(), medians.end()),
          *std::max_element(medians.begin(), medians.end()), percentile(std::move(all), 0.99), n, n * static_cast<size_t>(reps)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string data;
  std::string banned_list = "1000,10000,100000";
  std::string allowed_list = "0,5";
  std::string cases_list;
  int reps = 15;
  double min_rep_ms = 20;
  int build_n = 0;
  bool with_allowed = false;
  bool breakdown = false;
  int layer = 0;
  CLI::App app{"Times the enforcer's decision path (join + casefold + match) on generated inputs"};
  app.add_option("data", data, "Directory written by gen_inputs.py")->required();
  app.add_option("--banned", banned_list, "Banned-list sizes")->capture_default_str();
  app.add_option("--allowed", allowed_list, "Allowed-pattern counts (0 or 5)")->capture_default_str();
  app.add_option("--cases", cases_list, "Case names (default: every cases/*.argv)");
  app.add_option("--reps", reps, "Repetitions per case")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--min-rep-ms", min_rep_ms, "Minimum duration of one repetition")->capture_default_str();
  app.add_option("--build-only", build_n, "Only load and compile banned-N.json; print time and memory");
  app.add_flag("--with-allowed", with_allowed, "With --build-only: also load allowed-5.json");
  app.add_option("--layered", layer,
                 "Time a layered matcher: the last N banned strings compiled on their own (as after a live reload)")
      ->capture_default_str();
  app.add_flag("--breakdown", breakdown, "Also time each step alone: join, casefold, Vectorscan scan, allowed patterns");
  CLI11_PARSE(app, argc, argv);

  if (build_n > 0) return build_only(data, build_n, with_allowed);

  std::vector<std::string> cases = split(cases_list);
  if (cases.empty()) {
    for (const auto& e : std::filesystem::directory_iterator(data + "/cases"))
      if (e.path().extension() == ".argv") cases.push_back(e.path().stem().string());
    std::sort(cases.begin(), cases.end());
  }
  double overhead = timer_overhead_ns();
  NoopKiller killer;
  Decider decider(killer, /*dry_run=*/false);
  int failures = 0;

  for (const auto& nb : split(banned_list)) {
    for (const auto& na : split(allowed_list)) {
      std::vector<std::string> paths = {data + "/banned-" + nb + ".json"};
      if (na != "0") paths.push_back(data + "/allowed-" + na + ".json");
      auto rules = load_rules(paths);
      if (!rules) {
        std::fprintf(stderr, "matcher_bench: %s\n", rules.error().message.c_str());
        return 1;
      }
      Matcher* chosen = rules->matcher.get();
      std::unique_ptr<Matcher> layered;
      if (layer > 0) {
        // The state a live reload leaves until the background rebuild swaps in: the
        // config's last `layer` strings compiled on their own, on top of the rest.
        auto config = load_config_files(paths);
        if (!config || config->banned.size() <= static_cast<size_t>(layer)) {
          std::fprintf(stderr, "matcher_bench: --layered %d: cannot load a larger config\n", layer);
          return 1;
        }
        ExecwhackerConfig older = *config;
        older.banned.resize(older.banned.size() - static_cast<size_t>(layer));
        auto base = Matcher::build(older);
        if (!base) {
          std::fprintf(stderr, "matcher_bench: %s\n", base.error().message.c_str());
          return 1;
        }
        auto built = Matcher::build(*config, (*base)->base());
        if (!built || !(*built)->layered()) {
          std::fprintf(stderr, "matcher_bench: --layered %d: no layered matcher\n", layer);
          return 1;
        }
        layered = std::move(*built);
        chosen = layered.get();
      }
      Matcher& matcher = *chosen;
      for (const auto& name : cases) {
        std::string area = read_file(data + "/cases/" + name + ".argv");
        ExecView event;
        event.source = schema::Source::BPF;
        event.pid = event.tgid = 4242;
        event.argv = area;
        event.filename = std::string_view(area.data(), area.find('\0'));  // argv[0] is the exec'd file
        auto verdict = decider.decide(event, matcher).action;
        size_t bytes = decider.cmdline().size();
        const char* kind = name.find("-hit") != std::string::npos     ? "hit"
                           : name.find("-glued") != std::string::npos ? "glued"
                                                                      : "nohit";
        const char* expect = std::string_view(kind) == "hit" ? "killed" : "noMatch";
        if (std::string_view(action_name(verdict)) != expect) ++failures;
        uint64_t sink = 0;
        auto s = bench([&] { sink += static_cast<uint64_t>(decider.decide(event, matcher).action); }, reps,
                       min_rep_ms, overhead);
        asm volatile("" : : "r"(sink) : "memory");
        std::string steps;
        if (breakdown) {
          // Each step alone, on the same input, with the same repetitions.
          std::string joined, folded;
          auto join = bench([&] { join_exec_cmdline(event.filename, event.argv, joined); }, reps, min_rep_ms, overhead);
          auto fold = bench([&] { casefold(joined, folded); }, reps, min_rep_ms, overhead);
          // What decide() runs: both steps in one (one pass when the line is plain ASCII).
          std::string fused, scratch;
          auto join_fold = bench([&] { join_fold_exec_cmdline(event.filename, event.argv, fused, scratch); }, reps,
                                 min_rep_ms, overhead);
          if (fused != folded) {
            std::fprintf(stderr, "matcher_bench: %s: join_fold_exec_cmdline differs from join + casefold\n", name.c_str());
            ++failures;
          }
          auto scan = bench([&] { sink += static_cast<uint64_t>(matcher.find_banned(folded).banned); }, reps,
                            min_rep_ms, overhead);
          auto allow = bench([&] { sink += static_cast<uint64_t>(matcher.find_allowed(folded)); }, reps, min_rep_ms,
                             overhead);
          asm volatile("" : : "r"(sink) : "memory");
          steps = fmt::format(
              R"(, "join_ns": {:.1f}, "casefold_ns": {:.1f}, "join_fold_ns": {:.1f}, "scan_ns": {:.1f}, "allowed_ns": {:.1f})",
              join.median_ns, fold.median_ns, join_fold.median_ns, scan.median_ns, allow.median_ns);
        }
        std::printf("%s\n", fmt::format(R"({{"impl": "cryptnono-cpp", "banned": {}, "allowed": {}, "case": "{}", )"
                                        R"("size": "{}", "kind": "{}", "bytes": {}, "verdict": "{}", "expect": "{}", )"
                                        R"("median_ns": {:.1f}, "min_ns": {:.1f}, "max_ns": {:.1f}, "p99_ns": {:.1f}, )"
                                        R"("calls_per_rep": {}, "reps": {}, "samples": {}, "timer_overhead_ns": {}, "layered": {}{}}})",
                                        nb, matcher.allowed_count(), name, name.substr(0, name.find('-')), kind, bytes,
                                        action_name(verdict), expect, s.median_ns, s.min_ns, s.max_ns, s.p99_ns,
                                        s.calls_per_rep, reps, s.samples, overhead, layer, steps)
                                .c_str());
        std::fflush(stdout);
      }
    }
  }
  if (failures) std::fprintf(stderr, "matcher_bench: %d verdicts differ from the expected ones\n", failures);
  return failures ? 1 : 0;
}
