#include "cryptnono/collector/events.h"

#include <cstring>

namespace cryptnono::collector {

namespace {

capnp::Data::Reader bytes(std::string_view s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

// Text fields need a NUL after the bytes; the views into the ring buffer have none, so
// the text is laid out with init + copy (no intermediate string).
void set_text(capnp::Text::Builder (schema::ExecEvent::Builder::*init)(unsigned int), schema::ExecEvent::Builder& out,
              std::string_view s) {
  auto t = (out.*init)(static_cast<unsigned int>(s.size()));
  if (!s.empty()) std::memcpy(t.begin(), s.data(), s.size());
}

}  // namespace

std::string_view ExecRecord::comm() const {
  return std::string_view(header.comm, strnlen(header.comm, sizeof header.comm));
}

std::optional<ExecRecord> parse_exec_record(const void* data, size_t size) {
  if (data == nullptr || size < sizeof(exec_event)) return std::nullopt;
  ExecRecord rec;
  std::memcpy(&rec.header, data, sizeof(exec_event));
  const auto& h = rec.header;
  // Checked in 64 bits so hostile lengths cannot wrap.
  uint64_t body = static_cast<uint64_t>(h.cgroup_len) + h.filename_len + h.args_len;
  if (h.cgroup_len >= EXEC_CGROUP_CAP || h.filename_len >= EXEC_FILENAME_CAP || h.args_len > EXEC_ARGS_CAP ||
      body > size - sizeof(exec_event))
    return std::nullopt;
  const char* p = static_cast<const char*>(data) + sizeof(exec_event);
  rec.cgroup_name = std::string_view(p, h.cgroup_len);
  rec.filename = std::string_view(p + h.cgroup_len, h.filename_len);
  rec.argv = std::string_view(p + h.cgroup_len + h.filename_len, h.args_len);
  return rec;
}

void fill_exec_event(schema::ExecEvent::Builder out, const ExecRecord& rec) {
  const auto& h = rec.header;
  out.setSource(schema::Source::BPF);
  out.setPid(h.pid);
  out.setTgid(h.tgid);
  out.setPpid(h.ppid);
  out.setUid(h.uid);
  out.setGid(h.gid);
  out.setStartBootNs(h.start_boot_ns);
  out.setExecBootNs(h.exec_boot_ns);
  set_text(&schema::ExecEvent::Builder::initComm, out, rec.comm());
  out.setFilename(bytes(rec.filename));
  out.setArgv(bytes(rec.argv));
  out.setArgvTruncated(rec.truncated());
  out.setArgvFullLength(h.args_full_len);
  out.setCgroupId(h.cgroup_id);
  set_text(&schema::ExecEvent::Builder::initCgroupName, out, rec.cgroup_name);
  out.setMntNs(h.mnt_ns);
  out.setPidNs(h.pid_ns);
  out.setCpu(h.cpu);
}

void fill_exec_event(schema::ExecEvent::Builder out, const ScannedProcess& p) {
  out.setSource(schema::Source::SCAN);
  out.setPid(static_cast<uint32_t>(p.pid));
  out.setTgid(static_cast<uint32_t>(p.pid));
  out.setPpid(static_cast<uint32_t>(p.ppid));
  out.setUid(p.uid);
  out.setGid(p.gid);
  out.setStartBootNs(p.start_boot_ns);
  out.setExecBootNs(0);
  set_text(&schema::ExecEvent::Builder::initComm, out, p.comm);
  out.setFilename(bytes(p.filename));
  out.setArgv(bytes(p.argv));
  out.setArgvTruncated(p.argv_truncated);
  out.setArgvFullLength(p.argv_full_length);
  out.setCgroupId(0);
  set_text(&schema::ExecEvent::Builder::initCgroupName, out, p.cgroup_name);
  out.setMntNs(0);
  out.setPidNs(0);
  out.setCpu(0);
}

}  // namespace cryptnono::collector
