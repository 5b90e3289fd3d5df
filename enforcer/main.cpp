// cryptnono-enforcer: subscribes to exec events, kills the processes whose command line
// holds a banned string (cryptnono's execwhacker rules), publishes one decision per event.
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>

#include <CLI/CLI.hpp>

#include "cryptnono/caps.h"
#include "cryptnono/clock.h"
#include "cryptnono/enforcer/app.h"
#include "cryptnono/enforcer/enforcer.h"
#include "cryptnono/enforcer/watcher.h"
#include "cryptnono/log.h"
#include "cryptnono/proc.h"

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

}  // namespace

int main(int argc, char** argv) {
  enforcer::Config config;
  CLI::App app{"cryptnono-enforcer: kills processes whose command line holds a banned string"};
  app.add_option("--detector", config.detector, "Detector to run")
      ->check(CLI::IsMember({"execwhacker"}))
      ->capture_default_str();
  app.add_option("--config", config.configs,
                 "cryptnono config file (JSON); repeat to merge several. Default: the embedded test config");
  app.add_option("--connect", config.connect, "Collector endpoint to subscribe to; repeatable")->capture_default_str();
  app.add_option("--bind", config.bind, "Endpoint to publish decisions and stats on")->capture_default_str();
  app.add_flag("--dry-run", config.dry_run, "Decide and publish would-kill decisions, but kill nothing");
  app.add_option("--node", config.node, "Node name (default: $NODE_NAME, else the hostname)");
  app.add_option("--stats-interval", config.stats_interval_seconds, "Seconds between stats messages")
      ->check(CLI::Range(0.01, 86400.0))
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_flag("--check", config.check, "Load and compile the configs, print one line and exit");
  CLI11_PARSE(app, argc, argv);

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

  uint64_t load_start = boot_ns();
  auto rules = load_rules(config.configs);
  if (!rules) return die(rules.error().message);
  double load_ms = static_cast<double>(boot_ns() - load_start) / 1e6;
  if (config.check) {
    for (const auto& w : rules->warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::printf("%s\n", check_line(*rules).c_str());
    return 0;
  }

  auto log = make_logger("enforcer", config.log_level);
  for (const auto& w : rules->warnings) log->warn("{}", w);
  if (config.configs.empty())
    log->info("no --config given: using the embedded default config ({} banned string)", rules->matcher->banned_count());
  else
    log->info("loaded {}: {} banned strings, {} allowed patterns (compiled in {:.0f} ms)", rules->description,
              rules->matcher->banned_count(), rules->matcher->allowed_count(), load_ms);

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
  options.bind = config.bind;
  options.node = config.node.empty() ? node_name() : config.node;
  options.dry_run = config.dry_run;
  options.stats_interval_ms = static_cast<uint32_t>(config.stats_interval_seconds * 1000.0);

  zmq::context_t ctx;
  PidfdKiller killer(ProcReader("/proc"), getpid());
  auto enforcer = Enforcer::create(ctx, options, killer, std::move(rules->matcher), log);
  if (!enforcer) return die(enforcer.error().message);

  std::unique_ptr<ConfigWatcher> watcher;
  if (!config.configs.empty()) {
    Enforcer* e = enforcer->get();
    ConfigWatcher::Callbacks callbacks{[e](std::unique_ptr<Matcher> m) { e->install(std::move(m)); },
                                       [e] { e->count_reload_failure(); }};
    auto started = ConfigWatcher::start(config.configs, std::move(rules->contents), std::move(callbacks), log,
                                        hup_fd.get());
    if (!started) return die(started.error().message);
    watcher = std::move(*started);
  }

  (*enforcer)->run(stop_fd.get());
  watcher.reset();
  log->info("stopped");
  return 0;
}
