// One named spdlog logger per component, created in main() and passed down. Loggers
// write to stderr: stdout belongs to the exporter's JSON lines.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace cryptnono {

// level: "trace", "debug", "info", "warn", "error". Unknown names fall back to info.
std::shared_ptr<spdlog::logger> make_logger(const std::string& name, const std::string& level = "info");

}  // namespace cryptnono
