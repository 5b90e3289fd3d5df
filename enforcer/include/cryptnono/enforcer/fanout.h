// The flowkiller's fan-out rule: how many distinct destinations (address, port) one
// process connected to within the last `window` nanoseconds. A network scanner (or a
// miner hopping between pool servers) reaches many destinations quickly; ordinary
// programs reach a handful.
//
// Memory is bounded: at most max_processes processes and max_destinations per process
// are remembered; beyond that the least recently active process (or the process's
// oldest destination) is evicted and counted. A process whose window is empty is
// forgotten. Time is passed in by the caller (CLOCK_BOOTTIME ns, never decreasing), so
// tests control it.
//
// Not thread-safe: used by the enforcer's event thread only.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <unordered_map>

#include "cryptnono/enforcer/address.h"

namespace cryptnono::enforcer {

struct ProcessKey {
  uint32_t tgid = 0;
  uint64_t start_boot_ns = 0;  // tgid + start time: a recycled pid is another process
  bool operator==(const ProcessKey& o) const { return tgid == o.tgid && start_boot_ns == o.start_boot_ns; }
};

struct Destination {
  Address address;
  uint16_t port = 0;
  bool operator==(const Destination& o) const { return port == o.port && address == o.address; }
};

struct ProcessKeyHash {
  size_t operator()(const ProcessKey& k) const;
};
struct DestinationHash {
  size_t operator()(const Destination& d) const;
};

struct FanoutLimits {
  uint64_t window_ns = 30'000'000'000ull;
  size_t max_processes = 4096;
  size_t max_destinations = 256;  // per process; must exceed the kill threshold
};

class FanoutTracker {
 public:
  explicit FanoutTracker(FanoutLimits limits) : limits_(limits) {}

  // Records a connect of `process` to `dest` at `now_ns` and returns how many distinct
  // destinations it reached within (now - window, now].
  size_t record(const ProcessKey& process, const Destination& dest, uint64_t now_ns);
  // Forgets a process (after it was killed or judged).
  void forget(const ProcessKey& process);
  // Drops the processes whose window is empty at `now_ns` (record() does this as well).
  void expire(uint64_t now_ns);

  size_t processes() const { return processes_.size(); }
  uint64_t process_evictions() const { return process_evictions_; }
  uint64_t destination_evictions() const { return destination_evictions_; }
  const FanoutLimits& limits() const { return limits_; }

 private:
  struct Seen {
    Destination dest;
    uint64_t last_ns = 0;
  };
  struct Process {
    // Destinations by last connect, oldest first; `index` points into it.
    std::list<Seen> order;
    std::unordered_map<Destination, std::list<Seen>::iterator, DestinationHash> index;
    std::list<ProcessKey>::iterator lru;  // this process's place in lru_
    uint64_t last_ns = 0;
  };

  void drop_old(Process& p, uint64_t now_ns);
  bool expired(uint64_t t, uint64_t now_ns) const { return now_ns >= limits_.window_ns && t <= now_ns - limits_.window_ns; }

  FanoutLimits limits_;
  std::unordered_map<ProcessKey, Process, ProcessKeyHash> processes_;
  std::list<ProcessKey> lru_;  // processes by last connect, least recent first
  uint64_t process_evictions_ = 0;
  uint64_t destination_evictions_ = 0;
};

}  // namespace cryptnono::enforcer
