#include "cryptnono/enforcer/app.h"

#include "cryptnono/enforcer/config.h"
#include "cryptnono/enforcer/embedded_config.h"

namespace cryptnono::enforcer {

Result<LoadedRules> load_rules(const std::vector<std::string>& paths) {
  LoadedRules rules;
  ExecwhackerConfig config;
  if (paths.empty()) {
    auto parsed = parse_config(embedded_default_config(), kEmbeddedConfigName);
    if (!parsed) return tl::unexpected(parsed.error());
    config = std::move(*parsed);
    rules.description = "the embedded default config";
  } else {
    auto loaded = load_config_files(paths, &rules.contents);
    if (!loaded) return tl::unexpected(loaded.error());
    config = std::move(*loaded);
    for (const auto& p : paths) {
      if (!rules.description.empty()) rules.description += ", ";
      rules.description += p;
    }
  }
  auto matcher = Matcher::build(config);
  if (!matcher) return tl::unexpected(matcher.error());
  rules.matcher = std::move(*matcher);
  rules.warnings = std::move(config.warnings);
  return rules;
}

std::string check_line(const LoadedRules& rules) {
  return "ok: " + std::to_string(rules.matcher->banned_count()) + " banned strings, " +
         std::to_string(rules.matcher->allowed_count()) + " allowed patterns from " + rules.description;
}

}  // namespace cryptnono::enforcer
