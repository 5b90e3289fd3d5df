// Pieces the fpu and connect sources share (private to collector_lib): RAII for the
// ring buffer and for the read-only mapping of a per-CPU counters array, and the
// load-then-attach sequence with its tp_btf -> classic tracepoint fallback.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include <bpf/libbpf.h>

#include "cryptnono/result.h"

namespace cryptnono::collector::detail {

inline std::string errno_text(int err) { return std::string(std::strerror(err)); }

struct RingBufferDeleter {
  void operator()(ring_buffer* r) const { ring_buffer__free(r); }
};
using RingBufferPtr = std::unique_ptr<ring_buffer, RingBufferDeleter>;

// A read-only mmap of a BPF_F_MMAPABLE array with one `Slot` per possible CPU. Readable
// after every capability is dropped.
template <class Slot>
class MappedCounters {
 public:
  MappedCounters() = default;
  ~MappedCounters() {
    if (base_ != nullptr) munmap(const_cast<void*>(base_), bytes_);
  }
  MappedCounters(const MappedCounters&) = delete;
  MappedCounters& operator=(const MappedCounters&) = delete;

  Result<void> map(const bpf_map* m, const char* what) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    slots_ = bpf_map__max_entries(m);
    bytes_ = (slots_ * sizeof(Slot) + page - 1) / page * page;
    void* p = mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, bpf_map__fd(m), 0);
    if (p == MAP_FAILED) return fail(std::string("mapping the ") + what + " counters failed: " + errno_text(errno));
    base_ = p;
    return {};
  }
  size_t slots() const { return slots_; }
  // The kernel writes concurrently: each field is read once, as a volatile.
  const volatile Slot& operator[](size_t i) const { return static_cast<const volatile Slot*>(base_)[i]; }

 private:
  const void* base_ = nullptr;
  size_t bytes_ = 0;
  size_t slots_ = 0;
};

// What one attempt to load and attach a probe's program said.
struct AttemptError {
  int err = 0;  // positive errno
  std::string message;
};

}  // namespace cryptnono::collector::detail
