// cryptnono-exporter: decisions -> JSON lines on stdout, Prometheus /metrics, /healthz.
// Exit codes: 0 on SIGTERM/SIGINT or --check; 1 on a runtime error; 2 on bad flags.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <CLI/CLI.hpp>

#include "cryptnono/curve_cli.h"
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
  app.add_option("--cri-socket", config.cri_socket,
                 "CRI runtime socket for pod labels and image (containerd; CRI-O: unix:///run/crio/crio.sock; '' disables)")
      ->capture_default_str();
  app.add_option("--docker-socket", config.docker_socket,
                 "Docker API socket for Docker containers (Docker-in-Docker: the dind pod's socket; '' disables)")
      ->capture_default_str();
  app.add_option("--lookup-timeout-ms", config.lookup_timeout_ms, "Deadline of one container lookup")
      ->capture_default_str();
  app.add_option("--lookup-wait-ms", config.lookup_wait_ms,
                 "How long a decision line waits for its container lookup before it is written without it")
      ->capture_default_str();
  app.add_option("--cache-ttl", config.cache_ttl_s, "Seconds a looked-up container is remembered")->capture_default_str();
  app.add_option("--cache-size", config.cache_size, "Containers remembered")->capture_default_str();
  app.add_option("--max-pending", config.max_pending, "Decision lines that may wait for lookups at once")
      ->capture_default_str();
  app.add_flag("--metrics-namespace-label", config.metrics_namespace_label,
               "Also count kills and missed kills by pod namespace (one series per namespace)");
  cryptnono::CurveOptions curve;
  cryptnono::add_curve_options(app, curve);
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
  auto security = curve.load();
  if (!security) {
    std::fprintf(stderr, "cryptnono-exporter: %s\n", security.error().message.c_str());
    return 2;
  }
  config.security = std::move(*security);
  if (config.check) {
    std::printf("cryptnono-exporter: configuration ok (%zu endpoint(s), metrics on %s, prefix %s, cri %s, docker %s)\n",
                config.connect.size(), config.metrics_address.c_str(), config.metrics_prefix.c_str(),
                config.cri_socket.empty() ? "off" : config.cri_socket.c_str(),
                config.docker_socket.empty() ? "off" : config.docker_socket.c_str());
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
    auto enrich_metrics =
        std::make_shared<cryptnono::exporter::EnrichMetrics>(config.metrics_prefix, config.metrics_namespace_label);
    auto exporter = cryptnono::exporter::Exporter::create(
        config, ctx, STDOUT_FILENO, cryptnono::exporter::make_enricher(config, enrich_metrics, logger), logger,
        enrich_metrics);
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
