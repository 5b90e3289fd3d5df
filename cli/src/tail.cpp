#include "cryptnono/cli/tail.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include <kj/exception.h>

#include "cryptnono/fd.h"
#include "cryptnono/json_view.h"
#include "cryptnono/transport.h"

namespace cryptnono::cli {

namespace {

using Clock = std::chrono::steady_clock;

// Topics come off the wire: show them on stderr as printable ASCII only.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 64)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

}  // namespace

Result<void> validate(const TailConfig& config) {
  if (config.endpoints.empty()) return fail("give at least one endpoint, e.g. ipc:///run/cryptnono/execwhacker.sock");
  for (const auto& ep : config.endpoints) {
    if (ep.rfind("ipc://", 0) != 0 && ep.rfind("tcp://", 0) != 0 && ep.rfind("inproc://", 0) != 0) {
      return fail("'" + ep + "' is not an ipc://, tcp:// or inproc:// endpoint");
    }
  }
  if (!(config.timeout_seconds >= 0) || !std::isfinite(config.timeout_seconds)) {
    return fail("--timeout must be a number of seconds >= 0");
  }
  for (const auto& t : config.topics) {
    if (t.empty()) return fail("--topic must not be empty (leave it out to see every topic)");
  }
  return {};
}

Result<TailOutcome> run_tail(const TailConfig& config, zmq::context_t& ctx, int stop_fd, int out_fd,
                             spdlog::logger& logger) {
  if (auto ok = validate(config); !ok) return tl::unexpected(ok.error());
  // ZeroMQ subscriptions are prefixes: "" is every topic. Named topics are also matched
  // exactly below, so --topic stats does not print a "statsfoo" topic.
  std::vector<std::string> subscriptions = config.topics.empty() ? std::vector<std::string>{""} : config.topics;
  auto sub = Subscriber::connect(ctx, config.endpoints, subscriptions, 100'000, &config.security);
  if (!sub) return tl::unexpected(sub.error());

  const bool has_timeout = config.timeout_seconds > 0;
  const auto idle = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.timeout_seconds));
  auto deadline = Clock::now() + idle;
  TailOutcome outcome;
  Received message;
  std::string line;
  uint64_t malformed_reported = 0;
  for (;;) {
    long wait_ms = -1;
    if (has_timeout) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      wait_ms = std::max<long>(0, static_cast<long>(left));
    }
    auto woke = (*sub)->wait(stop_fd, wait_ms);
    if (woke == Subscriber::Wait::kFd) {
      outcome.end = TailEnd::kSignal;
      return outcome;
    }
    if (woke == Subscriber::Wait::kTimeout) {
      if (has_timeout && Clock::now() >= deadline) {
        outcome.end = TailEnd::kTimeout;
        return outcome;
      }
      continue;
    }
    while ((*sub)->try_receive(message)) {
      auto topic = message.topic();
      if (!config.topics.empty() &&
          std::find(config.topics.begin(), config.topics.end(), topic) == config.topics.end()) {
        continue;
      }
      Json out = Json::object();
      try {
        auto envelope = message.envelope();
        if (!envelope) throw std::runtime_error(envelope.error().message);
        out["topic"] = std::string(topic);
        Json body = envelope_json(*envelope);
        for (auto& [key, value] : body.items()) out[key] = std::move(value);
      } catch (const kj::Exception& e) {
        logger.warn("skipping a malformed message on topic '{}': {}", printable(topic), e.getDescription().cStr());
        continue;
      } catch (const std::exception& e) {
        logger.warn("skipping a malformed message on topic '{}': {}", printable(topic), e.what());
        continue;
      }
      if (auto ok = write_json_line(out_fd, out, line); !ok) return tl::unexpected(ok.error());
      ++outcome.printed;
      deadline = Clock::now() + idle;
      if (config.count > 0 && outcome.printed >= config.count) {
        outcome.end = TailEnd::kCount;
        return outcome;
      }
      // A steady stream must not hide a stop request: look at it between messages.
      if (readable_now(stop_fd)) {
        outcome.end = TailEnd::kSignal;
        return outcome;
      }
    }
    if (uint64_t m = (*sub)->malformed(); m > malformed_reported) {
      logger.warn("skipped {} message(s) that were not two frames of whole words", m - malformed_reported);
      malformed_reported = m;
    }
  }
}

int tail_exit_code(const TailOutcome& outcome) {
  if (outcome.end == TailEnd::kTimeout && outcome.printed == 0) return kTailExitNothing;
  return kTailExitOk;
}

}  // namespace cryptnono::cli

namespace cryptnono::cli {

Result<CurveKeyPair> write_key_pair(const std::string& path_prefix) {
  auto keys = generate_curve_key_pair();
  if (!keys) return keys;
  auto write = [](const std::string& path, const std::string& text, mode_t mode) -> Result<void> {
    // O_EXCL: never replace a key someone already distributed.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return fail(path + ": " + std::strerror(errno));
    UniqueFd owned(fd);
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      return fail(path + ": write failed: " + std::strerror(errno));
    return {};
  };
  if (auto ok = write(path_prefix + ".key", format_curve_key_file(*keys, true), 0600); !ok)
    return tl::unexpected(ok.error());
  if (auto ok = write(path_prefix + ".pub", format_curve_key_file(*keys, false), 0644); !ok)
    return tl::unexpected(ok.error());
  return keys;
}

}  // namespace cryptnono::cli
