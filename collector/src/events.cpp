#include "cryptnono/collector/events.h"

#include <cstring>

namespace cryptnono::collector {

namespace {

capnp::Data::Reader bytes(std::string_view s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

// Text fields need a NUL after the bytes; the views into the ring buffer have none, so
// the text is laid out with init + copy (no intermediate string).
template <class Builder>
void set_text(capnp::Text::Builder (Builder::*init)(unsigned int), Builder& out, std::string_view s) {
  auto t = (out.*init)(static_cast<unsigned int>(s.size()));
  if (!s.empty()) std::memcpy(t.begin(), s.data(), s.size());
}

std::string_view comm_of(const char (&comm)[TASK_COMM_LEN_]) { return std::string_view(comm, strnlen(comm, sizeof comm)); }

// Copies the fixed header and finds the cgroup name after it; the shared part of both
// probes' records.
template <class Record>
std::optional<Record> parse_task_record(const void* data, size_t size) {
  if (data == nullptr || size < sizeof(Record::header)) return std::nullopt;
  Record rec;
  std::memcpy(&rec.header, data, sizeof rec.header);
  const uint32_t cg = rec.header.task.cgroup_len;
  if (cg >= TASK_CGROUP_CAP || cg > size - sizeof rec.header) return std::nullopt;
  rec.cgroup_name = std::string_view(static_cast<const char*>(data) + sizeof rec.header, cg);
  return rec;
}

}  // namespace

std::string_view FpuRecord::comm() const { return comm_of(header.task.comm); }
std::string_view ConnectRecord::comm() const { return comm_of(header.task.comm); }

std::optional<FpuRecord> parse_fpu_record(const void* data, size_t size) {
  auto rec = parse_task_record<FpuRecord>(data, size);
  // The probe writes exactly one record, when the count reaches the threshold.
  if (rec && (rec->header.threshold < FPU_THRESHOLD_MIN || rec->header.count < rec->header.threshold))
    return std::nullopt;
  return rec;
}

std::optional<ConnectRecord> parse_connect_record(const void* data, size_t size) {
  auto rec = parse_task_record<ConnectRecord>(data, size);
  if (rec && rec->header.family != CONNECT_AF_INET && rec->header.family != CONNECT_AF_INET6) return std::nullopt;
  if (rec && (rec->header.dport > 0xffff || rec->header.sport > 0xffff)) return std::nullopt;
  return rec;
}

void fill_fpu_event(schema::FpuEvent::Builder out, const FpuRecord& rec) {
  const auto& h = rec.header;
  out.setPid(h.task.pid);
  out.setTgid(h.task.tgid);
  out.setPpid(h.task.ppid);
  out.setUid(h.task.uid);
  out.setStartBootNs(h.task.start_boot_ns);
  set_text(&schema::FpuEvent::Builder::initComm, out, rec.comm());
  out.setCgroupId(h.task.cgroup_id);
  set_text(&schema::FpuEvent::Builder::initCgroupName, out, rec.cgroup_name);
  out.setMxcsr(h.mxcsr);
  out.setCount(h.count);
  out.setThreshold(h.threshold);
  out.setFirstBootNs(h.first_boot_ns);
  out.setEventBootNs(h.event_boot_ns);
  out.setCpu(h.task.cpu);
}

void fill_connect_event(schema::ConnectEvent::Builder out, const ConnectRecord& rec) {
  const auto& h = rec.header;
  out.setPid(h.task.pid);
  out.setTgid(h.task.tgid);
  out.setPpid(h.task.ppid);
  out.setUid(h.task.uid);
  out.setStartBootNs(h.task.start_boot_ns);
  set_text(&schema::ConnectEvent::Builder::initComm, out, rec.comm());
  out.setCgroupId(h.task.cgroup_id);
  set_text(&schema::ConnectEvent::Builder::initCgroupName, out, rec.cgroup_name);
  out.setFamily(rec.ipv6() ? schema::AddressFamily::IPV6 : schema::AddressFamily::IPV4);
  const size_t n = rec.address_bytes();
  out.setDestination(capnp::Data::Reader(h.daddr, n));
  // Ports were range-checked by parse_connect_record.
  out.setDestinationPort(static_cast<uint16_t>(h.dport));
  out.setSourceAddress(capnp::Data::Reader(h.saddr, n));
  out.setSourcePort(static_cast<uint16_t>(h.sport));
  out.setEventBootNs(h.event_boot_ns);
  out.setCpu(h.task.cpu);
}

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
  out.setInKernelRing(rec.in_kernel_ring());
  out.setPidfsIno(h.pidfs_ino);
  out.setExeIno(h.exe_ino);
  out.setExeDev(h.exe_dev);
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
