// The two shapes an exec is seen in before it becomes a schema ExecEvent: a record from
// the BPF ring buffer (ExecRecord, a validated view, no copies) and a process found by
// a /proc sweep (ScannedProcess, owning its strings).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cryptnono.capnp.h"
#include "exec_event.h"

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

}  // namespace cryptnono::collector
