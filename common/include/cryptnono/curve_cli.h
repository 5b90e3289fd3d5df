// The CurveZMQ flags every binary accepts, in one place so they read the same everywhere.
#pragma once

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

}  // namespace cryptnono
