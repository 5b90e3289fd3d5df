#include "cryptnono/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace cryptnono {

std::shared_ptr<spdlog::logger> make_logger(const std::string& name, const std::string& level) {
  auto logger = spdlog::get(name);
  if (!logger) logger = spdlog::stderr_color_mt(name);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
  auto lvl = spdlog::level::from_str(level);
  logger->set_level(lvl == spdlog::level::off && level != "off" ? spdlog::level::info : lvl);
  return logger;
}

}  // namespace cryptnono
