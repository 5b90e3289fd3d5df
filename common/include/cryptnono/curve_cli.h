// The flags shared by several binaries (CurveZMQ, extra endpoints, queue bound, opt-in
// scheduling), in one place so they read the same in every binary.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cryptnono/curve.h"

namespace cryptnono {

inline void add_curve_options(CLI::App& app, CurveOptions& options) {
  app.add_option("--curve-keys", options.keys_file,
                 "This program's CurveZMQ key pair file (public-key/secret-key lines, as made by "
                 "`cryptnono keygen`). Required for any tcp:// endpoint");
  app.add_option("--curve-authorized", options.authorized,
                 "Public key file, or directory of them, of the clients allowed to subscribe to a tcp:// "
                 "endpoint this program binds; repeatable. Anyone else gets nothing");
  app.add_option("--curve-server-key", options.server_key_file,
                 "Public key file of the tcp:// publisher this program connects to");
}

// --also-bind and --send-hwm, for the programs that publish (collector, enforcer).
inline void add_publisher_options(CLI::App& app, std::vector<std::string>& also_bind, int& send_hwm) {
  app.add_option("--also-bind", also_bind,
                 "Another endpoint to publish on (repeatable), e.g. tcp://0.0.0.0:5556 for remote subscribers "
                 "(needs --curve-keys and --curve-authorized)");
  app.add_option("--send-hwm", send_hwm,
                 "Messages queued for each subscriber before further ones are dropped for it (it sees a "
                 "sequence gap)")
      ->check(CLI::Range(100, 10'000'000))
      ->capture_default_str();
}

// --rt-priority and --cpus (cryptnono/sched.h), for the collector and the enforcer.
// `note`: what this program adds to the --rt-priority help ("" for nothing).
inline void add_scheduling_options(CLI::App& app, int& rt_priority, std::string& cpus, const std::string& note = "") {
  app.add_option("--rt-priority", rt_priority,
                 "Run every thread SCHED_FIFO at this priority (1..99; needs CAP_SYS_NICE); 0: the default policy" +
                     (note.empty() ? "" : ". " + note))
      ->capture_default_str();
  app.add_option("--cpus", cpus, "Pin every thread to these CPUs (a list like 1 or 0-1,3); empty: anywhere");
}

}  // namespace cryptnono
