// Fuzzes the config parser (nlohmann SAX with line tracking) and the matcher build
// (Vectorscan literals, RE2 patterns) with arbitrary file contents. A bad file must come
// back as an error naming the file (the operator's only clue), never as a crash, a hang
// (RE2 is linear time) or an exception.
#include <cstdint>
#include <string>
#include <string_view>

#include "cryptnono/enforcer/text.h"
#include "fuzz_common.h"

using namespace cryptnono;
using namespace cryptnono::enforcer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = parse_config(text, "fuzz.json");
  if (!config) {
    if (config.error().message.rfind("fuzz.json:", 0) != 0) fuzz::fail("error does not name the file", config.error().message);
    return 0;
  }
  for (const auto& entry : config->banned)
    if (entry.line == 0 || entry.file != "fuzz.json") fuzz::fail("banned entry without its file and line", entry.value);
  auto matcher = Matcher::build(*config);
  if (!matcher) {
    if (matcher.error().message.empty()) fuzz::fail("matcher build failed without a reason");
    return 0;
  }
  // Whatever compiled must be usable: scan the file's own text.
  std::string folded = casefold(text);
  (void)(*matcher)->match(folded);
  return 0;
}
