// cryptnono: operator tools for the pipeline. Subcommands: tail, keygen (check and replay
// come later, each its own subcommand).
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <CLI/CLI.hpp>

#include "cryptnono/cli/tail.h"
#include "cryptnono/curve_cli.h"
#include "cryptnono/fd.h"
#include "cryptnono/log.h"

namespace {

int run_tail_command(cryptnono::cli::TailConfig& config, const cryptnono::CurveOptions& curve) {
  using namespace cryptnono::cli;
  if (auto ok = validate(config); !ok) {
    std::fprintf(stderr, "cryptnono tail: %s\n", ok.error().message.c_str());
    return kTailExitUsage;
  }
  auto security = curve.load();
  if (!security) {
    std::fprintf(stderr, "cryptnono tail: %s\n", security.error().message.c_str());
    return kTailExitUsage;
  }
  config.security = std::move(*security);
  // Blocked before ZeroMQ starts its threads, so SIGINT/SIGTERM only reach the signalfd.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (sigprocmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
    std::fprintf(stderr, "cryptnono tail: cannot block signals: %s\n", std::strerror(errno));
    return kTailExitError;
  }
  cryptnono::UniqueFd signal_fd(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd) {
    std::fprintf(stderr, "cryptnono tail: cannot create signalfd: %s\n", std::strerror(errno));
    return kTailExitError;
  }
  auto logger = cryptnono::make_logger("tail", "info");
  try {
    zmq::context_t ctx;
    auto outcome = run_tail(config, ctx, signal_fd.get(), STDOUT_FILENO, *logger);
    if (!outcome) {
      logger->error("{}", outcome.error().message);
      return kTailExitError;
    }
    return tail_exit_code(*outcome);
  } catch (const std::exception& e) {
    logger->error("{}", e.what());
    return kTailExitError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cryptnono: tools for the cryptnono pipeline"};
  app.require_subcommand(1);

  cryptnono::cli::TailConfig tail_config;
  auto* tail = app.add_subcommand("tail", "Print every message published on stage endpoint(s), one JSON line each");
  tail->add_option("endpoints", tail_config.endpoints,
                   "Endpoint(s) of collector/enforcer publishers, e.g. ipc:///run/cryptnono/execwhacker.sock")
      ->required();
  tail->add_option("--topic", tail_config.topics, "Only this topic (repeatable): exec, fpu, connect, decision, stats; default all");
  tail->add_option("--count", tail_config.count, "Stop after N messages (0: no limit)")->capture_default_str();
  tail->add_option("--timeout", tail_config.timeout_seconds,
                   "Stop after SEC seconds without a message (0: never)")
      ->capture_default_str();
  cryptnono::CurveOptions tail_curve;
  cryptnono::add_curve_options(*tail, tail_curve);
  tail->footer(
      "Exit codes: 0 done (--count reached, SIGINT/SIGTERM, or --timeout after >= 1 message); "
      "1 runtime error; 2 bad command line; 3 --timeout passed with no message at all.");

  std::string keygen_path;
  auto* keygen = app.add_subcommand("keygen",
                                    "Make a CurveZMQ key pair for tcp:// endpoints: PATH.key (secret, 0600) and "
                                    "PATH.pub (public, 0644)");
  keygen->add_option("path", keygen_path, "Path prefix of the two files, e.g. /etc/cryptnono/keys/forensics")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : cryptnono::cli::kTailExitUsage;
  }
  if (*tail) return run_tail_command(tail_config, tail_curve);
  if (*keygen) {
    auto keys = cryptnono::cli::write_key_pair(keygen_path);
    if (!keys) {
      std::fprintf(stderr, "cryptnono keygen: %s\n", keys.error().message.c_str());
      return 1;
    }
    std::printf("wrote %s.key (secret) and %s.pub (public key %s)\n", keygen_path.c_str(), keygen_path.c_str(),
                keys->public_key.c_str());
    return 0;
  }
  return cryptnono::cli::kTailExitUsage;
}
