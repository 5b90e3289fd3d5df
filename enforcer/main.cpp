// cryptnono-enforcer: one detector per process. execwhacker subscribes to exec events and
// kills the processes whose command line holds a banned string (cryptnono's rules);
// monero kills the processes the collector's FPU probe reports; flowkiller judges TCP
// connects (banned destinations, destination fan-out). Each publishes one decision per
// event.
#include <malloc.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "cryptnono/caps.h"
#include "cryptnono/clock.h"
#include "cryptnono/curve_cli.h"
#include "cryptnono/enforcer/app.h"
#include "cryptnono/enforcer/enforcer.h"
#include "cryptnono/enforcer/execwhacker.h"
#include "cryptnono/enforcer/flowkiller.h"
#include "cryptnono/enforcer/monero.h"
#include "cryptnono/enforcer/watcher.h"
#include "cryptnono/log.h"
#include "cryptnono/proc.h"
#include "cryptnono/sched.h"

using namespace cryptnono;
using namespace cryptnono::enforcer;

namespace {

int die(const std::string& message) {
  std::fprintf(stderr, "cryptnono-enforcer: %s\n", message.c_str());
  return 1;
}

UniqueFd make_signalfd(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  return UniqueFd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
}

// The agent's own processes are never killed (see PidfdKiller): its programs, found next
// to this one, and, inside a Kubernetes pod, every process of the pod.
void protect_own_processes(PidfdKiller& killer, spdlog::logger& log) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto dir = self.parent_path();
    std::vector<std::string> programs;
    for (const char* name : {"cryptnono-collector", "cryptnono-enforcer", "cryptnono-exporter", "cryptnono"})
      programs.push_back((dir / name).string());
    killer.protect_executables(programs);
    log.info("the agent's programs are recognised by {}",
             killer.exe_identity_trusted() ? "the file an exec event names (stat agrees with the kernel here)"
                                           : "a stat of /proc/<pid>/exe at each kill");
  }
  // In a pod the v2 cgroup is ".../pod<uid>[.slice]/<container>": the pod is the parent.
  auto cgroup = ProcReader("/proc").cgroup(getpid());
  if (!cgroup) return;
  auto slash = cgroup->rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  std::string parent = cgroup->substr(0, slash);
  auto leaf = parent.substr(parent.rfind('/') + 1);
  bool pod = leaf.rfind("pod", 0) == 0 || leaf.find("-pod") != std::string::npos;
  if (!pod) return;
  killer.protect_cgroup_prefix(parent + "/");
  log.info("never killed: the agent's programs in {} and every process of its pod ({})", self.parent_path().string(),
           parent);
}

}  // namespace

int main(int argc, char** argv) {
  // Blocks of 256 KiB and more (a database, its tables, a reload's temporary vectors)
  // get mappings of their own, returned to the system when freed. glibc's default
  // threshold rises each time such a block is freed, after which the next ones land in
  // the heap, where a reload leaves them interleaved with long-lived data and the heap
  // cannot shrink (steady RSS after full-list reloads: 70 MiB instead of ~55).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  enforcer::Config config;
  CLI::App app{"cryptnono-enforcer: kills cryptominers (one detector per process)"};
  app.add_option("--detector", config.detector,
                 "execwhacker (banned command strings), monero (FPU rounding-mode probe) or flowkiller "
                 "(banned destinations, destination fan-out)")
      ->check(CLI::IsMember({"execwhacker", "monero", "flowkiller"}))
      ->capture_default_str();
  app.add_option("--config", config.configs,
                 "execwhacker: cryptnono config file (JSON); repeat to merge several. Default: the embedded test "
                 "config");
  app.add_option("--connect", config.connect, "Collector endpoint to subscribe to; repeatable")->capture_default_str();
  app.add_option("--direct", config.direct,
                 "The collector's direct socket (a low-latency lane next to ZeroMQ, which still carries every "
                 "event): a path, 'auto' (next to the first ipc:// --connect: collector.sock -> collector.direct) "
                 "or 'off'")
      ->capture_default_str();
  app.add_option("--kernel-ring", config.kernel_ring,
                 "Take the collector's kernel ring over the direct socket when it offers one (execwhacker): execs "
                 "come straight from the exec probe, one wake-up after the exec (true/false)")
      ->capture_default_str();
  app.add_option("--bind", config.bind, "Endpoint to publish decisions and stats on (default: "
                                        "ipc:///run/cryptnono/<detector>.sock)");
  auto* banned_opt =
      app.add_option("--banned-ips,--banned-ipv4-file-globs", config.banned_ips,
                     "flowkiller: glob of files of banned destinations (IPv4/IPv6 addresses and CIDR networks, one "
                     "per line, # comments); repeatable; reloaded on change and on SIGHUP");
  auto& fk = config.flowkiller;
  auto* threshold_opt =
      app.add_option("--unique-destinations-threshold", fk.unique_destinations_threshold,
                     "flowkiller: kill a process that reaches more than this many unique (address, port) "
                     "destinations within the lookback")
          ->check(CLI::Range(1u, 1'000'000u))
          ->capture_default_str();
  auto* lookback_opt = app.add_option("--lookback-duration-seconds", fk.lookback_seconds,
                                      "flowkiller: the fan-out window in seconds")
                           ->check(CLI::Range(0.001, 86400.0))
                           ->capture_default_str();
  auto* all_opt = app.add_flag("--count-all-destinations", fk.count_all_destinations,
                               "flowkiller: count loopback, private and other non-public destinations in the fan-out "
                               "too (for tests)");
  auto* procs_opt = app.add_option("--max-tracked-processes", fk.max_tracked_processes,
                                   "flowkiller: processes whose destinations are remembered (least recently active "
                                   "evicted first)")
                        ->check(CLI::Range(size_t{1}, size_t{10'000'000}))
                        ->capture_default_str();
  auto* dests_opt = app.add_option("--max-destinations-per-process", fk.max_destinations_per_process,
                                   "flowkiller: destinations remembered per process (oldest evicted first); must "
                                   "exceed --unique-destinations-threshold")
                        ->check(CLI::Range(size_t{2}, size_t{10'000'000}))
                        ->capture_default_str();
  app.add_flag("--dry-run", config.dry_run, "Decide and publish would-kill decisions, but kill nothing");
  app.add_option("--node", config.node, "Node name (default: $NODE_NAME, else the hostname)");
  app.add_option("--no-match-batch-ms", config.no_match_batch_ms,
                 "Publish no-match decisions (benign processes) in batches, at most this many ms after their event, "
                 "to spare every stage a wake-up per benign exec; other decisions go out at once (0: every decision "
                 "at once)")
      ->check(CLI::Range(0u, 1000u))
      ->capture_default_str();
  app.add_option("--wake-filter", config.wake_filter,
                 "While holding the collector's kernel ring, tell the exec probe which execs cannot hold a banned "
                 "string (a Bloom filter of the banned strings' grams): those do not wake the enforcer one by one but "
                 "are judged in batches (--ring-batch-ms), the others at once (false: every exec wakes it)")
      ->capture_default_str();
  app.add_option("--ring-batch-ms", config.ring_batch_ms,
                 "With the wake filter: the execs it rules out are judged at most this many ms after the first of "
                 "their batch")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  app.add_option("--kill-decision-delay-ms", config.kill_decision_delay_ms,
                 "Publish a killed decision this many ms after the kill, so that waking the decision's subscribers "
                 "does not compete with the dying process for the CPUs (0: at once)")
      ->check(CLI::Range(0u, 1000u))
      ->capture_default_str();
  app.add_option("--exit-wait-us", config.exit_wait_us,
                 "After SIGKILL, wait up to this many µs for the process to exit before doing anything else: the "
                 "enforcer sleeps, so a dying process on its CPU gets the CPU at once, and the decision says when it "
                 "was seen gone (exitedBootNs; 0: do not wait)")
      ->check(CLI::Range(0u, 1'000'000u))
      ->capture_default_str();
  app.add_option("--stats-interval", config.stats_interval_seconds, "Seconds between stats messages")
      ->check(CLI::Range(0.01, 86400.0))
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  add_publisher_options(app, config.also_bind, config.send_hwm);
  app.add_option("--wait-for-subscriber", config.wait_for_subscriber_seconds,
                 "At start, seconds to wait for a first decision subscriber (the exporter) before taking events, "
                 "so the kills of the start-up sweep are logged (0: do not wait)")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  add_curve_options(app, config.curve);
  add_scheduling_options(app, config.rt_priority, config.cpus, "Config reloads still compile in the normal policy");
  app.add_flag("--check", config.check, "Load and compile the configs, print one line and exit");
  CLI11_PARSE(app, argc, argv);
  auto security = config.curve.load();
  if (!security) return die(security.error().message);
  {
    std::vector<std::string> endpoints = config.also_bind;
    endpoints.push_back(config.bind);
    if (auto ok = check_publish_endpoints(endpoints, *security); !ok) return die(ok.error().message);
  }

  // Flags of another detector are mistakes (a chart wiring the wrong container), not noise.
  if (config.detector != "execwhacker" && !config.configs.empty())
    return die("--config is only for --detector execwhacker");
  if (config.detector != "flowkiller") {
    for (auto* opt : {banned_opt, threshold_opt, lookback_opt, all_opt, procs_opt, dests_opt})
      if (opt->count() > 0) return die(opt->get_name() + " is only for --detector flowkiller");
  } else if (auto bad = validate(fk); !bad.empty()) {
    return die(bad);
  }
  if (auto ok = validate_scheduling(config.rt_priority, config.cpus); !ok) return die(ok.error().message);
  if (config.bind.empty()) config.bind = default_bind(config.detector);
  fk.dry_run = config.dry_run;

  // Signals become fds: blocked in every thread (so before ZeroMQ and the watcher start
  // their threads), then read by the event loop (SIGTERM, SIGINT) and the config watcher
  // (SIGHUP). Blocked before the config is compiled (100,000 strings take seconds), so a
  // SIGTERM meanwhile still ends in a clean exit 0; --check keeps the default actions.
  UniqueFd stop_fd, hup_fd;
  if (!config.check) {
    sigset_t blocked;
    sigemptyset(&blocked);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&blocked, s);
    if (pthread_sigmask(SIG_BLOCK, &blocked, nullptr) != 0) return die("cannot block signals");
    stop_fd = make_signalfd({SIGTERM, SIGINT});
    hup_fd = make_signalfd({SIGHUP});
    if (!stop_fd || !hup_fd) return die(std::string("signalfd: ") + std::strerror(errno));
  }

  const bool execwhacker = config.detector == "execwhacker";
  const bool flowkiller = config.detector == "flowkiller";
  uint64_t load_start = boot_ns();
  Result<LoadedRules> rules = LoadedRules{};
  // Long lists compile in two halves at once (about half the start-up time on two idle
  // cores); the config watcher then rebuilds them as one database in the background.
  const bool watched = execwhacker && !config.configs.empty() && !config.check;
  if (execwhacker)
    rules = load_rules(config.configs, watched ? Matcher::Compile::kTwoHalves : Matcher::Compile::kOnce);
  if (!rules) return die(rules.error().message);
  Result<LoadedBanned> banned = LoadedBanned{};
  if (flowkiller) banned = load_banned(config.banned_ips);
  if (!banned) return die(banned.error().message);
  double load_ms = static_cast<double>(boot_ns() - load_start) / 1e6;
  if (config.check) {
    if (execwhacker) {
      for (const auto& w : rules->warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
      std::printf("%s\n", check_line(*rules).c_str());
    } else if (flowkiller) {
      // Bad lines are reported, not fatal: the enforcer would run with the good ones.
      for (const auto& w : banned->warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
      for (const auto& e : banned->list.errors) std::fprintf(stderr, "warning: %s\n", e.c_str());
      std::printf("%s\n", check_line(*banned, fk).c_str());
    } else {
      std::printf("ok: monero: kills the processes the FPU probe reports (rule %s)\n", kMoneroRule);
    }
    return 0;
  }

  auto log = make_logger("enforcer", config.log_level);
  if (execwhacker) {
    for (const auto& w : rules->warnings) log->warn("{}", w);
    if (config.configs.empty())
      log->info("no --config given: using the embedded default config ({} banned string)",
                rules->matcher->banned_count());
    else
      log->info("loaded {}: {} banned strings, {} allowed patterns (compiled in {:.0f} ms{})", rules->description,
                rules->matcher->banned_count(), rules->matcher->allowed_count(), load_ms,
                rules->matcher->layered() ? ", in two halves at once; the whole database is rebuilt in the background"
                                          : "");
  }
  if (flowkiller) {
    for (const auto& w : banned->warnings) log->warn("{}", w);
    for (const auto& e : banned->list.errors) log->warn("bad line skipped: {}", e);
    log->info("loaded {} banned destinations from {} files ({} bad lines) in {:.0f} ms", banned->set->size(),
              banned->list.files.size(), banned->list.errors.size(), load_ms);
  }

  // Opt-in scheduling (--rt-priority, --cpus), after the start-up compile (seconds of
  // CPU that must not run real-time) and while CAP_SYS_NICE is still effective. Every
  // thread that exists gets it; ZeroMQ's I/O threads and the config watcher, started
  // below, inherit it from this thread (the watcher then leaves SCHED_FIFO: a reload
  // compiles for seconds). The drop that follows takes CAP_SYS_NICE away.
  if (config.rt_priority > 0 || !config.cpus.empty()) {
    if (auto ok = apply_scheduling(config.rt_priority, config.cpus); !ok) return die(ok.error().message);
    log->info("scheduling: {} (every thread)", describe_scheduling());
  }

  // Keep only CAP_KILL (signalling other users' processes); nothing else the enforcer does
  // needs a capability (binding an ipc:// socket or a port above 1023 does not).
  // Capabilities are per thread: this must happen before ZeroMQ starts its I/O threads and
  // before the config watcher starts, so that every thread inherits the reduced set.
  // Without any capabilities (a test as a normal user) this still sets no_new_privs.
  std::vector<cap_value_t> keep;
  if (has_capability(CAP_KILL)) keep.push_back(CAP_KILL);
  if (auto dropped = drop_capabilities(keep); !dropped) return die(dropped.error().message);
  log->info("capabilities now: {}", effective_capabilities());

  EnforcerOptions options;
  options.connect = config.connect;
  if (config.direct == "auto") {
    for (const auto& ep : config.connect)
      if (options.direct.empty()) options.direct = direct_path_for(ep);
  } else if (config.direct != "off") {
    options.direct = config.direct;
  }
  options.kernel_ring = config.kernel_ring;
  options.bind = config.bind;
  options.node = config.node.empty() ? node_name() : config.node;
  options.dry_run = config.dry_run;
  options.stats_interval_ms = static_cast<uint32_t>(config.stats_interval_seconds * 1000.0);
  options.no_match_batch_ms = config.no_match_batch_ms;
  options.kill_decision_delay_ms = config.kill_decision_delay_ms;
  options.wake_filter = config.wake_filter;
  options.ring_batch_ms = config.ring_batch_ms;
  options.also_bind = config.also_bind;
  options.send_hwm = config.send_hwm;
  options.security = std::move(*security);
  options.wait_for_subscriber_ms = static_cast<uint32_t>(config.wait_for_subscriber_seconds * 1000.0);

  // The start-up config (100,000 strings each with its file name, the files' bytes) has
  // been compiled and mostly freed: give the heap back to the system.
  malloc_trim(0);

  zmq::context_t ctx;
  PidfdKiller killer(ProcReader("/proc"), getpid());
  killer.wait_for_exit_us(config.exit_wait_us);
  protect_own_processes(killer, *log);
  std::unique_ptr<Detector> detector;
  std::shared_ptr<const Matcher::Compiled> serving_base;  // what reloads may build on
  bool serving_is_layered = false;
  if (execwhacker) {
    serving_base = rules->matcher->base();
    serving_is_layered = rules->matcher->layered();
    detector = std::make_unique<ExecwhackerDetector>(killer, config.dry_run, std::move(rules->matcher));
  } else if (flowkiller) {
    detector = std::make_unique<FlowkillerDetector>(killer, fk, banned->set);
  } else {
    detector = std::make_unique<MoneroDetector>(killer, config.dry_run);
  }
  auto enforcer = Enforcer::create(ctx, options, std::move(detector), log);
  if (!enforcer) return die(enforcer.error().message);

  std::unique_ptr<ConfigWatcher> watcher;
  std::unique_ptr<FileWatcher> banned_watcher;
  if (flowkiller && !config.banned_ips.empty()) {
    Enforcer* e = enforcer->get();
    auto apply = [e, log](const FileSnapshot& snapshot, const char* why) -> Result<void> {
      auto loaded = build_banned(snapshot);
      for (const auto& err : loaded.list.errors) log->warn("bad line skipped: {}", err);
      log->info("banned destinations reloaded ({}): {} from {} files ({} bad lines)", why, loaded.set->size(),
                loaded.list.files.size(), loaded.list.errors.size());
      e->install_update([set = loaded.set](Detector& d) { static_cast<FlowkillerDetector&>(d).set_banned(set); });
      return {};
    };
    auto started = FileWatcher::start(WatchSpec{config.banned_ips, true}, std::move(banned->snapshot),
                                      std::move(apply), [e] { e->count_reload_failure(); }, log, hup_fd.get());
    if (!started) return die(started.error().message);
    banned_watcher = std::move(*started);
  }
  if (execwhacker && !config.configs.empty()) {
    Enforcer* e = enforcer->get();
    ConfigWatcher::Callbacks callbacks{[e](std::unique_ptr<Matcher> m) { e->install(std::move(m)); },
                                       [e] { e->count_reload_failure(); },
                                       [e](std::unique_ptr<Matcher> m) { e->install(std::move(m), true); }};
    auto started = ConfigWatcher::start(config.configs, std::move(rules->contents), std::move(serving_base),
                                        serving_is_layered, std::move(callbacks), log, hup_fd.get());
    if (!started) return die(started.error().message);
    watcher = std::move(*started);
  }

  (*enforcer)->run(stop_fd.get());
  watcher.reset();
  banned_watcher.reset();
  log->info("stopped");
  return 0;
}
