// Fuzzes what every subscriber does with a received message: decode it with the wire
// limits (traversal, nesting), render it as `cryptnono tail` and the exporter do, and,
// for an exec event, decide on it as the enforcer does (with a killer that kills
// nothing). Any bytes a peer can send must give an error or one valid JSON line.
#include <cstdint>
#include <string>
#include <string_view>

#include <kj/exception.h>

#include "cryptnono/enforcer/decider.h"
#include "cryptnono/json_view.h"
#include "cryptnono/transport.h"
#include "fuzz_common.h"

using namespace cryptnono;
using namespace cryptnono::enforcer;

namespace {

struct State {
  std::unique_ptr<Matcher> matcher = fuzz::make_matcher();
  fuzz::InertKiller killer;
  Decider decider{killer, /*dry_run=*/false};
  Received received;
  SequenceTracker tracker;
  std::string line;
};

constexpr std::string_view kTopics[] = {"exec", "decision", "stats", "fpu", "connect", "garbage"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static State* state = new State();
  if (size == 0) return 0;
  std::string_view topic = kTopics[data[0] % std::size(kTopics)];
  if (!state->received.assign(topic, data + 1, size - 1)) return 0;
  auto envelope = state->received.envelope();
  if (!envelope) return 0;
  try {
    state->tracker.observe(text_string(envelope->getPublisherId()), topic, envelope->getSequence());
    state->line.clear();
    dump_line(envelope_json(*envelope), state->line);
    fuzz::check_one_json_line(state->line);
    auto body = envelope->getBody();
    if (body.isExec()) {
      ExecView view = view_of(body.getExec());
      state->killer.proc_argv.assign(view.argv);
      (void)state->decider.decide(view, *state->matcher);
    }
  } catch (const kj::Exception&) {
    // A malformed message is refused lazily, while fields are read: that is the
    // documented outcome (callers on the wire path catch it), not a bug.
  }
  return 0;
}
