// Fuzzes the cmdline builder and the matcher with raw argument bytes (the attacker's
// whole input: any bytes, NUL-separated), and checks the verdict against a naive
// reference: find() over the same casefolded command line for each banned string, with
// the same word-boundary rule. Vectorscan and the naive scan must agree on whether a
// banned string occurs unglued, and a reported match must really be there. A matcher
// layered on an older database (as after a live reload) must agree with both.
#include <cstdint>
#include <string>
#include <string_view>

#include "cryptnono/enforcer/decider.h"
#include "cryptnono/enforcer/text.h"
#include "fuzz_common.h"

using namespace cryptnono;
using namespace cryptnono::enforcer;

namespace {

struct State {
  std::unique_ptr<Matcher> matcher = fuzz::make_matcher();
  std::unique_ptr<Matcher> layered = fuzz::make_layered_matcher();
  fuzz::InertKiller killer;
  Decider decider{killer, /*dry_run=*/false};
};

bool naive_unglued_hit(std::string_view folded, const Matcher& matcher) {
  for (size_t b = 0; b < matcher.banned_count(); ++b) {
    const std::string_view needle = matcher.banned(b);
    for (size_t pos = folded.find(needle); pos != std::string_view::npos; pos = folded.find(needle, pos + 1)) {
      if (!word_char_before(folded, pos) && !word_char_at(folded, pos + needle.size())) return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static State* state = new State();
  std::string_view input(reinterpret_cast<const char*>(data), size);

  // First byte: flags (truncated event; filename given); the rest is the argument area.
  uint8_t flags = size > 0 ? data[0] : 0;
  std::string_view area = size > 0 ? input.substr(1) : input;
  ExecView view;
  view.pid = view.tgid = 4242;
  view.start_boot_ns = 1;
  view.argv = area;
  view.filename = (flags & 2) ? std::string_view("/usr/bin/env") : std::string_view();
  view.argv_truncated = (flags & 1) != 0;
  // A truncated event makes the decider read the "full" cmdline: give it the area twice.
  state->killer.proc_argv.assign(area).append(area);

  const Verdict& verdict = state->decider.decide(view, *state->matcher);
  std::string_view folded = state->decider.cmdline();

  bool naive = naive_unglued_hit(folded, *state->matcher);
  bool found = verdict.action != schema::Action::NO_MATCH && verdict.action != schema::Action::ERROR;
  if (verdict.action == schema::Action::ERROR) fuzz::fail("matcher error", verdict.reason);
  if (naive != found) fuzz::fail(naive ? "naive scan found a banned string the matcher missed"
                                       : "matcher reported a banned string the naive scan does not see",
                                 folded);
  if (found && folded.find(verdict.matched) == std::string_view::npos)
    fuzz::fail("reported match is not in the command line", verdict.matched);
  if (verdict.action == schema::Action::SPARED && verdict.allowed_by.empty())
    fuzz::fail("spared without an allowed pattern", folded);

  // The same rules, layered on an older database, give the same answer.
  Matcher::Match layered = state->layered->match(folded);
  if (layered.scan_failed) fuzz::fail("layered matcher error", folded);
  if (layered.found() != found) fuzz::fail("the layered matcher disagrees with the whole one", folded);
  if (layered.found()) {
    std::string_view got = state->layered->banned(static_cast<size_t>(layered.banned));
    if (got == "ethminer") fuzz::fail("the layered matcher reported a dropped string", folded);
    if (folded.compare(layered.offset, got.size(), got) != 0)
      fuzz::fail("layered match is not where it says", got);
    if ((layered.allowed >= 0) != (verdict.action == schema::Action::SPARED))
      fuzz::fail("the layered matcher's allowed patterns disagree", folded);
  }
  return 0;
}
