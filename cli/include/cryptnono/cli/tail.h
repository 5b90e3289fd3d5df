// `cryptnono tail`: attach to any stage's publisher endpoint(s) and print every message
// as one JSON line: {"topic": ..., <json_view of the envelope>}. For people and scripts
// watching a live pipeline; it is an ordinary subscriber, so it never slows a stage down
// (a slow tail only loses messages, which the publishers' sequence numbers reveal).
//
// Exit codes (see tail_exit_code):
//   0  stopped normally: --count messages printed, or SIGINT/SIGTERM, or --timeout passed
//      after at least one message was printed
//   1  runtime error (cannot connect, cannot write stdout)
//   2  bad command line
//   3  --timeout passed and not a single message was printed
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include "cryptnono/curve.h"
#include "cryptnono/result.h"

namespace cryptnono::cli {

struct TailConfig {
  std::vector<std::string> endpoints;
  std::vector<std::string> topics;  // exact topic names; empty: every topic
  uint64_t count = 0;               // stop after this many messages; 0: no limit
  double timeout_seconds = 0;       // stop after this long without a message; 0: never
  TransportSecurity security;       // CurveZMQ keys for tcp:// endpoints
};

enum class TailEnd { kCount, kSignal, kTimeout };

struct TailOutcome {
  uint64_t printed = 0;
  TailEnd end = TailEnd::kSignal;
};

inline constexpr int kTailExitOk = 0;
inline constexpr int kTailExitError = 1;
inline constexpr int kTailExitUsage = 2;
inline constexpr int kTailExitNothing = 3;

Result<void> validate(const TailConfig& config);

// Runs until --count, --timeout, or stop_fd becomes readable (not read). Lines go to
// out_fd, one write(2) each; malformed messages are reported on the logger and skipped.
Result<TailOutcome> run_tail(const TailConfig& config, zmq::context_t& ctx, int stop_fd, int out_fd,
                             spdlog::logger& logger);

int tail_exit_code(const TailOutcome& outcome);

// `cryptnono keygen PATH`: writes a new CurveZMQ key pair to PATH.key (mode 0600: the
// secret) and PATH.pub (mode 0644: give it to the peer). Refuses to overwrite.
Result<CurveKeyPair> write_key_pair(const std::string& path_prefix);

}  // namespace cryptnono::cli
