// The two shapes an exec is seen in before it becomes a schema ExecEvent: a record from
// the BPF ring buffer (ExecRecord, a validated view, no copies) and a process found by
// a /proc sweep (ScannedProcess, owning its strings). Also the records of the monero
// (fpu) and connect probes, and their conversion to FpuEvent / ConnectEvent.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cryptnono.capnp.h"
#include "connect_event.h"
#include "exec_event.h"
#include "fpu_event.h"

namespace cryptnono::collector {

// A ring-buffer record whose lengths were checked against the record size. The
// string_views point into the ring buffer: valid only inside the callback.
struct ExecRecord {
  exec_event header{};            // copied: the ring buffer gives no alignment promise to C++
  std::string_view cgroup_name;
  std::string_view filename;
  std::string_view argv;          // NUL-separated, as in the new mm (argv[0] included)

  std::string_view comm() const;  // header.comm up to its NUL
  bool truncated() const { return (header.flags & EXEC_FLAG_ARGS_TRUNCATED) != 0; }
  // The probe wrote it to the kernel ring an enforcer holds (bpf/exec.bpf.c), and this
  // copy was read from there.
  bool in_kernel_ring() const { return (header.flags & EXEC_FLAG_IN_KERNEL_RING) != 0; }
};

// nullopt when the record is shorter than its header says (an ABI mismatch).
std::optional<ExecRecord> parse_exec_record(const void* data, size_t size);

struct ScannedProcess {
  pid_t pid = 0;
  pid_t ppid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t start_boot_ns = 0;     // start ticks * (1e9 / hz): tick precision
  std::string comm;
  std::string filename;           // /proc/<pid>/exe, empty when not readable
  std::string argv;               // /proc/<pid>/cmdline bytes, as the process shows them now
  bool argv_truncated = false;
  uint32_t argv_full_length = 0;  // bytes read (a lower bound when truncated)
  std::string cgroup_name;        // last four components of the cgroup path
};

// Fill a schema ExecEvent (source bpf / scan). Every field is set.
void fill_exec_event(schema::ExecEvent::Builder out, const ExecRecord& rec);
void fill_exec_event(schema::ExecEvent::Builder out, const ScannedProcess& proc);

// A monero-probe record (struct fpu_event + cgroup name), checked against its size. The
// view points into the ring buffer: valid only inside the callback.
struct FpuRecord {
  fpu_event header{};  // copied, for alignment
  std::string_view cgroup_name;

  std::string_view comm() const;
};

// A connect-probe record (struct connect_event + cgroup name), checked against its size.
struct ConnectRecord {
  connect_event header{};
  std::string_view cgroup_name;

  std::string_view comm() const;
  bool ipv6() const { return header.family == CONNECT_AF_INET6; }
  // The meaningful address bytes: 4 for IPv4, 16 for IPv6.
  size_t address_bytes() const { return ipv6() ? 16 : 4; }
};

// nullopt when the record is shorter than its header says, or a field is outside what
// the probe can produce (an ABI mismatch): the cgroup length, the address family.
std::optional<FpuRecord> parse_fpu_record(const void* data, size_t size);
std::optional<ConnectRecord> parse_connect_record(const void* data, size_t size);

// Fill a schema FpuEvent / ConnectEvent. Every field is set.
void fill_fpu_event(schema::FpuEvent::Builder out, const FpuRecord& rec);
void fill_connect_event(schema::ConnectEvent::Builder out, const ConnectRecord& rec);

}  // namespace cryptnono::collector
