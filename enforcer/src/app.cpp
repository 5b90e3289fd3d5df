#include "cryptnono/enforcer/app.h"

#include <cstdio>

#include "cryptnono/enforcer/config.h"
#include "cryptnono/enforcer/embedded_config.h"

namespace cryptnono::enforcer {

Result<LoadedRules> load_rules(const std::vector<std::string>& paths, Matcher::Compile compile) {
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
  auto matcher = Matcher::build(config, nullptr, nullptr, compile);
  if (!matcher) return tl::unexpected(matcher.error());
  rules.matcher = std::move(*matcher);
  rules.warnings = std::move(config.warnings);
  return rules;
}

std::string check_line(const LoadedRules& rules) {
  return "ok: " + std::to_string(rules.matcher->banned_count()) + " banned strings, " +
         std::to_string(rules.matcher->allowed_count()) + " allowed patterns from " + rules.description;
}

std::string default_bind(const std::string& detector) { return "ipc:///run/cryptnono/" + detector + ".sock"; }

LoadedBanned build_banned(FileSnapshot snapshot) {
  LoadedBanned out;
  for (size_t i = 0; i < snapshot.paths.size(); ++i) {
    parse_banned_text(snapshot.contents[i], snapshot.paths[i], out.list);
    out.list.files.push_back(snapshot.paths[i]);
  }
  out.set = std::make_shared<const BannedSet>(out.list);
  out.snapshot = std::move(snapshot);
  return out;
}

Result<LoadedBanned> load_banned(const std::vector<std::string>& patterns) {
  WatchSpec spec{patterns, true};
  auto expanded = expand_globs(patterns);
  auto snapshot = read_snapshot(spec);
  if (!snapshot) return tl::unexpected(snapshot.error());
  auto out = build_banned(std::move(*snapshot));
  out.warnings = std::move(expanded.warnings);
  return out;
}

std::string check_line(const LoadedBanned& banned, const FlowkillerOptions& options) {
  size_t bad = banned.list.errors.size();
  char lookback[32];
  std::snprintf(lookback, sizeof lookback, "%g", options.lookback_seconds);
  return "ok: flowkiller: " + std::to_string(banned.set->size()) + " banned destinations from " +
         std::to_string(banned.list.files.size()) + " files (" + std::to_string(bad) + " bad line" +
         (bad == 1 ? "" : "s") + "); fan-out: more than " + std::to_string(options.unique_destinations_threshold) +
         " unique " + (options.count_all_destinations ? "" : "public ") + "destinations in " + lookback + " s";
}

}  // namespace cryptnono::enforcer
