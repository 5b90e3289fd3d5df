// cryptnono-exporter: decisions -> JSON lines on stdout, Prometheus /metrics, /healthz.
// Exit codes: 0 on SIGTERM/SIGINT or --check; 1 on a runtime error; 2 on bad flags.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <CLI/CLI.hpp>

#include "cryptnono/exporter/exporter.h"
#include "cryptnono/log.h"

using cryptnono::exporter::Config;

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"cryptnono-exporter: writes one JSON line per enforcement decision and serves Prometheus metrics"};
  app.add_option("--connect", config.connect, "Publisher endpoint(s) to subscribe to (repeatable)")
      ->capture_default_str();
  app.add_option("--metrics-address", config.metrics_address, "HOST:PORT serving /metrics and /healthz")
      ->capture_default_str();
  app.add_option("--metrics-prefix", config.metrics_prefix, "Prefix of every metric name")->capture_default_str();
  app.add_flag("--log-no-match", config.log_no_match, "Also log decisions that matched nothing (one per exec)");
  app.add_option("--log-level", config.log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.add_flag("--check", config.check, "Validate the flags, print one line and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (auto ok = cryptnono::exporter::validate(config); !ok) {
    std::fprintf(stderr, "cryptnono-exporter: %s\n", ok.error().message.c_str());
    return 2;
  }
  if (config.check) {
    std::printf("cryptnono-exporter: configuration ok (%zu endpoint(s), metrics on %s, prefix %s)\n",
                config.connect.size(), config.metrics_address.c_str(), config.metrics_prefix.c_str());
    return 0;
  }

  // Block the stop signals before any thread exists (ZeroMQ's, civetweb's), so they are
  // only ever delivered through the signalfd the loop waits on.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (sigprocmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
    std::fprintf(stderr, "cryptnono-exporter: cannot block signals: %s\n", std::strerror(errno));
    return 1;
  }
  cryptnono::UniqueFd signal_fd(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (signal_fd.get() < 0) {
    std::fprintf(stderr, "cryptnono-exporter: cannot create signalfd: %s\n", std::strerror(errno));
    return 1;
  }
  // A closed stdout must surface as a write error (and exit 1), not kill us silently.
  signal(SIGPIPE, SIG_IGN);

  auto logger = cryptnono::make_logger("exporter", config.log_level);
  try {
    zmq::context_t ctx;
    auto exporter = cryptnono::exporter::Exporter::create(config, ctx, STDOUT_FILENO,
                                                          std::make_unique<cryptnono::exporter::NoopEnricher>(), logger);
    if (!exporter) {
      logger->error("{}", exporter.error().message);
      return 1;
    }
    logger->info("subscribed to {} endpoint(s); metrics on {} (port {})", config.connect.size(),
                 config.metrics_address, (*exporter)->metrics_port());
    auto ran = (*exporter)->run(signal_fd.get());
    if (!ran) {
      logger->error("{}", ran.error().message);
      return 1;
    }
    logger->info("stopping on signal");
    return 0;
  } catch (const std::exception& e) {
    logger->error("{}", e.what());
    return 1;
  }
}
