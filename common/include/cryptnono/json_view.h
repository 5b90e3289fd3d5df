// Wire messages as JSON, for people and log pipelines: `cryptnono tail` prints every
// envelope with it, and the exporter writes its cryptnono-style decision lines with it.
//
// The one promise: whatever bytes a message holds (NUL, invalid UTF-8, quotes,
// backslashes, newlines, megabytes of it), write_json_line / dump_line produce exactly ONE
// line of valid JSON. They rely on nlohmann::json's own serializer with
// error_handler_t::replace: control characters are escaped (\n, \u0000, ...), and every
// byte sequence that is not valid UTF-8 becomes U+FFFD, so a consumer never sees a raw
// newline or an undecodable string. Bytes fields are therefore lossy for non-UTF-8 input;
// `cryptnono tail` is for reading, not for byte-exact forensics.
//
// Objects are nlohmann::ordered_json so keys keep the schema's (or cryptnono's) order.
// All functions are pure and thread-safe.
#pragma once

#include <string>
#include <string_view>

#include <capnp/common.h>
#include <nlohmann/json.hpp>

#include "cryptnono.capnp.h"
#include "cryptnono/result.h"

namespace cryptnono {

using Json = nlohmann::ordered_json;

// Every field of the envelope, keys named exactly as in schema/cryptnono.capnp (camelCase),
// nested the schema's way: {"node":..,"publisherId":..,...,"body":{"decision":{...}}}.
// Built by Cap'n Proto reflection over the schema, so a field added to the schema shows
// up here without a code change. Data fields (argv, filename, cmdline) are strings of
// their raw bytes; ExecEvent.argv is also given as "argvList", the arguments split at NUL.
// Enums are their schema names ("missedKill", "bpf"); unknown enum values their number.
// Cap'n Proto readers are lazy: a malformed message throws kj::Exception from here, so
// callers on the wire path catch it.
Json envelope_json(schema::Envelope::Reader envelope);
Json exec_json(schema::ExecEvent::Reader exec);
Json decision_json(schema::Decision::Reader decision);
Json stats_json(schema::Stats::Reader stats);

// The raw bytes of a Data / Text field as a std::string (no decoding; dumping fixes
// UTF-8). text_string keeps bytes after an embedded NUL, which cStr() would cut.
std::string bytes_string(capnp::Data::Reader data);
std::string text_string(capnp::Text::Reader text);

// NUL-separated arguments -> ["arg0", "arg1", ...]. The terminating NUL of the last
// argument is optional (a truncated argv ends mid-argument); empty arguments are kept.
Json argv_array(std::string_view argv);

// cryptnono's action vocabulary (log field `action`): "killed", "spared", "missed-kill",
// "would-kill", "error", and "no-match" for noMatch. Unknown values: "unknown".
std::string_view action_name(schema::Action action);

// "bpf" / "scan" ("unknown" otherwise).
std::string_view source_name(schema::Source source);

// Compact one-line dump, invalid UTF-8 replaced by U+FFFD, with a trailing '\n'.
// Appends to `out` (callers reuse the buffer).
void dump_line(const Json& value, std::string& out);
std::string dump_line(const Json& value);

// dump_line, then write the whole line to fd with write(2) (retrying on EINTR and
// partial writes), so each line reaches the reader as soon as it is made: there is no
// stdio buffer to flush. `scratch` is reused between calls.
Result<void> write_json_line(int fd, const Json& value, std::string& scratch);

}  // namespace cryptnono
