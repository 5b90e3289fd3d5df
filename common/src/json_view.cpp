#include "cryptnono/json_view.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <capnp/dynamic.h>
#include <capnp/schema.h>

namespace cryptnono {

namespace {

Json struct_json(capnp::DynamicStruct::Reader value);

Json value_json(capnp::DynamicValue::Reader value) {
  switch (value.getType()) {
    case capnp::DynamicValue::BOOL:
      return value.as<bool>();
    case capnp::DynamicValue::INT:
      return value.as<int64_t>();
    case capnp::DynamicValue::UINT:
      return value.as<uint64_t>();
    case capnp::DynamicValue::FLOAT:
      return value.as<double>();  // NaN and infinities dump as null
    case capnp::DynamicValue::TEXT:
      return text_string(value.as<capnp::Text>());
    case capnp::DynamicValue::DATA:
      return bytes_string(value.as<capnp::Data>());
    case capnp::DynamicValue::LIST: {
      // Bounded: a few bytes on the wire can declare millions of zero-sized elements
      // (Cap'n Proto charges them to the traversal limit, which legitimately large argv
      // fields need high), and rendering them all would stall a reader for seconds. No
      // list in the schema legitimately comes near this.
      constexpr unsigned kMaxListElements = 4096;
      auto list = value.as<capnp::DynamicList>();
      Json out = Json::array();
      unsigned shown = std::min(list.size(), kMaxListElements);
      for (unsigned i = 0; i < shown; ++i) out.push_back(value_json(list[i]));
      if (list.size() > shown) out.push_back("(" + std::to_string(list.size() - shown) + " more elements not shown)");
      return out;
    }
    case capnp::DynamicValue::ENUM: {
      auto e = value.as<capnp::DynamicEnum>();
      KJ_IF_MAYBE(enumerant, e.getEnumerant()) { return std::string(enumerant->getProto().getName().cStr()); }
      return e.getRaw();  // a value from a newer schema than ours
    }
    case capnp::DynamicValue::STRUCT:
      return struct_json(value.as<capnp::DynamicStruct>());
    case capnp::DynamicValue::UNKNOWN:
    case capnp::DynamicValue::VOID:
    case capnp::DynamicValue::CAPABILITY:
    case capnp::DynamicValue::ANY_POINTER:
      break;
  }
  return nullptr;
}

void add_field(Json& out, capnp::DynamicStruct::Reader value, capnp::StructSchema::Field field) {
  std::string name = field.getProto().getName().cStr();
  auto field_value = value.get(field);
  out[name] = value_json(field_value);
  // argv is NUL-separated: also give it split, which is what people want to read.
  if (name == "argv" && value.getSchema() == capnp::Schema::from<schema::ExecEvent>()) {
    auto bytes = field_value.as<capnp::Data>();
    out["argvList"] = argv_array(std::string_view(reinterpret_cast<const char*>(bytes.begin()), bytes.size()));
  }
}

Json struct_json(capnp::DynamicStruct::Reader value) {
  Json out = Json::object();
  auto schema = value.getSchema();
  for (auto field : schema.getNonUnionFields()) add_field(out, value, field);
  // Only the active member of a union is meaningful; an unknown member (newer schema)
  // is simply left out.
  KJ_IF_MAYBE(active, value.which()) { add_field(out, value, *active); }
  return out;
}

}  // namespace

Json envelope_json(schema::Envelope::Reader envelope) { return struct_json(capnp::toDynamic(envelope)); }
Json exec_json(schema::ExecEvent::Reader exec) { return struct_json(capnp::toDynamic(exec)); }
Json decision_json(schema::Decision::Reader decision) { return struct_json(capnp::toDynamic(decision)); }
Json stats_json(schema::Stats::Reader stats) { return struct_json(capnp::toDynamic(stats)); }

std::string bytes_string(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}

std::string text_string(capnp::Text::Reader text) { return std::string(text.begin(), text.size()); }

Json argv_array(std::string_view argv) {
  Json out = Json::array();
  while (!argv.empty()) {
    size_t nul = argv.find('\0');
    if (nul == std::string_view::npos) {
      out.push_back(std::string(argv));  // truncated: the last argument has no NUL
      break;
    }
    out.push_back(std::string(argv.substr(0, nul)));
    argv.remove_prefix(nul + 1);
  }
  return out;
}

std::string_view action_name(schema::Action action) {
  switch (action) {
    case schema::Action::NO_MATCH:
      return "no-match";
    case schema::Action::KILLED:
      return "killed";
    case schema::Action::SPARED:
      return "spared";
    case schema::Action::MISSED_KILL:
      return "missed-kill";
    case schema::Action::WOULD_KILL:
      return "would-kill";
    case schema::Action::ERROR:
      return "error";
  }
  return "unknown";
}

std::string_view source_name(schema::Source source) {
  switch (source) {
    case schema::Source::BPF:
      return "bpf";
    case schema::Source::SCAN:
      return "scan";
  }
  return "unknown";
}

void dump_line(const Json& value, std::string& out) {
  // indent -1: compact, so the only line break is the one we add. ensure_ascii false keeps
  // valid UTF-8 readable; replace turns invalid sequences into U+FFFD instead of throwing.
  out += value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out.push_back('\n');
}

std::string dump_line(const Json& value) {
  std::string out;
  dump_line(value, out);
  return out;
}

Result<void> write_json_line(int fd, const Json& value, std::string& scratch) {
  scratch.clear();
  dump_line(value, scratch);
  const char* p = scratch.data();
  size_t left = scratch.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(std::string("cannot write JSON line: ") + std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return {};
}

}  // namespace cryptnono
